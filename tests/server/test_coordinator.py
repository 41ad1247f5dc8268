"""RoundCoordinator on its own, no HTTP: the run's state machine, duplicates and conflicts,
deadlines on an injected clock, and resuming from a checkpoint."""

import io
import threading

import numpy as np
import pytest

from contract import wire
from contract.errors import MalformedRequest, RoundConflict, TrainingFinished
from contract.messages import Phase
from server_component.checkpoint import load_checkpoint
from server_component.coordinator import RoundCoordinator
from tests.support.live_aggregator import small_weights


def init(coordinator, client_id=0, weights=None):
    message = wire.Message(weights or small_weights(), {wire.META_CLIENT_ID: str(client_id)})
    return coordinator.submit_init(message)


def update(coordinator, client_id, round_, n=10, offset=None):
    meta = wire.UpdateMeta(client_id, round_, n, {"val_auc": 0.5 + client_id / 10})
    weights = small_weights(client_id if offset is None else offset)
    return coordinator.submit_update(wire.Message(weights, meta.to_metadata()))


def decoded(body) -> dict[str, np.ndarray]:
    return wire.decode(body).tensors


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_phases_of_a_run_from_init_to_done():
    c = RoundCoordinator(2, 2)
    status = c.status()
    assert (status.phase, status.model_version, status.round) == (Phase.WAITING, -1, 0)
    assert c.wait_for_model(0, timeout=0) is None  # no init yet: nothing to serve
    assert init(c) is True
    assert init(c, client_id=1, weights=small_weights(5)) is False  # later inits: ignored
    np.testing.assert_array_equal(decoded(c.wait_for_model(0, timeout=0))["w000"], 1.0)
    assert c.status().round == 1
    for round_ in (1, 2):
        for cid in (0, 1):
            assert update(c, cid, round_) == "accepted"
    status = c.status()
    assert (status.phase, status.model_version) == (Phase.PUBLISHED, 2)
    assert [r.round for r in c.history] == [1, 2]
    with pytest.raises(RoundConflict, match="superseded"):
        c.wait_for_model(1, timeout=0)
    with pytest.raises(TrainingFinished):
        c.wait_for_model(3, timeout=0)
    with pytest.raises(TrainingFinished):
        update(c, 0, 3)
    c.submit_done(0, {"test_auc": 0.8}, 10)
    assert not c.wait_until_complete(timeout=0)
    c.submit_done(1, {"test_auc": 0.9}, 30)
    assert c.wait_until_complete(timeout=0)
    assert c.status().phase == Phase.DONE and c.status().done == [0, 1]
    assert c.final_metrics() == pytest.approx({"test_auc": 0.875})


class HeaderOnlyFile(io.BytesIO):
    """A spooled body that fails the test if anything past its safetensors header is read."""

    def __init__(self, body: bytes) -> None:
        super().__init__(body)
        self.header_end = 8 + int.from_bytes(body[:8], "little")

    def read(self, size=-1):
        end = len(self.getbuffer()) if size is None or size < 0 else self.tell() + size
        assert end <= self.header_end, "a later init's tensors were read"
        return super().read(size)

    def readinto(self, buffer):
        raise AssertionError("a later init's tensors were read")


def test_later_inits_are_answered_from_their_header_without_reading_the_model():
    """Every client offers its model at start: only the adopted one may cost model memory."""
    c = RoundCoordinator(3, 1)
    assert init(c) is True
    partition = {"examples": 7, "labels": [3, 4]}
    body = wire.encode(small_weights(9), wire.InitMeta(2, partition=partition).to_metadata())
    later = wire.StreamedMessage(HeaderOnlyFile(body), len(body))
    assert c.submit_init(later) is False
    assert c.run_info.partitions[2] == partition  # what it says about its data is kept
    np.testing.assert_array_equal(decoded(c.wait_for_model(0, timeout=0))["w000"], 1.0)


def test_a_round_averages_by_examples_and_records_who_reported():
    c = RoundCoordinator(2, 1)
    init(c)
    update(c, 0, 1, n=1)
    update(c, 1, 1, n=3)
    np.testing.assert_allclose(decoded(c.final_model())["w000"], np.full((3, 2), 1.75))
    record = c.history[0]
    assert (record.client_ids, record.num_examples, record.missing) == ([0, 1], 4, [])
    assert record.metrics["val_auc"] == pytest.approx(0.575)  # 0.5 and 0.6 at 1:3


def test_an_identical_resend_is_a_duplicate_and_a_different_one_a_conflict():
    c = RoundCoordinator(2, 2)
    init(c)
    assert update(c, 0, 1) == "accepted"
    assert update(c, 0, 1) == "duplicate"
    with pytest.raises(RoundConflict, match="already sent a different update"):
        update(c, 0, 1, offset=7)
    assert c.status().reported == [0] and c.status().model_version == 0
    counts = c.counters.snapshot()
    assert (counts.updates_accepted, counts.updates_duplicate) == (1, 1)
    update(c, 1, 1)  # the round closes on the first update of each client only
    np.testing.assert_allclose(decoded(c.wait_for_model(1, timeout=0))["w000"], 1.5)


@pytest.mark.parametrize("bad", [
    lambda c: update(c, 5, 1),  # unknown client id
    lambda c: update(c, 0, 2),  # not the open round
    lambda c: init(c, weights={"control/w000": np.zeros(2, np.float32)}),  # reserved name
    lambda c: c.submit_done(9, {}, 1),
])
def test_a_refused_input_leaves_the_round_as_it_was(bad):
    c = RoundCoordinator(2, 2)
    init(c)
    update(c, 1, 1)
    before = c.status()
    with pytest.raises((MalformedRequest, RoundConflict)):
        bad(c)
    assert c.status() == before


def test_deadlines_follow_the_injected_clock():
    """Round 1 passes its deadline with 2 of 3 clients (quorum 2): it closes without the
    straggler; round 2 gets everyone before its deadline."""
    clock = Clock()
    c = RoundCoordinator(3, 2, min_clients=2, round_timeout=10, clock=clock)
    init(c)
    update(c, 0, 1)
    update(c, 1, 1)
    clock.now = 11.0  # past round 1's deadline (opened at 0)
    watcher = threading.Thread(target=c.enforce_deadlines, daemon=True)
    watcher.start()
    assert c.wait_for_model(1, timeout=10) is not None
    assert c.history[0].missing == [2] and c.history[0].duration_s == 11.0
    for cid in range(3):
        update(c, cid, 2)
    watcher.join(timeout=10)
    assert not watcher.is_alive() and c.failure is None


def test_resume_publishes_the_checkpointed_version_and_opens_the_next_round(tmp_path):
    first = RoundCoordinator(2, 3, checkpoint_dir=str(tmp_path))
    init(first)
    for cid in (0, 1):
        update(first, cid, 1)
    update(first, 0, 2)  # round 2 is open when the aggregator "dies"
    resumed = RoundCoordinator(2, 3, checkpoint_dir=str(tmp_path))
    resumed.restore(load_checkpoint(tmp_path, resumed.config))
    status = resumed.status()
    assert (status.model_version, status.round, status.reported) == (1, 2, [])
    assert resumed.wait_for_model(1, timeout=0) == first.wait_for_model(1, timeout=0)
    assert resumed.run_info == first.run_info
    for cid in (0, 1):
        update(resumed, cid, 2)
    assert resumed.status().round == 3 and [r.round for r in resumed.history] == [1, 2]
