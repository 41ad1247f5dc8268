"""Round deadlines: close with the quorum, fail loudly without it, stragglers get 409."""

import threading

import numpy as np
import pytest

from contract import wire
from contract.errors import RoundConflict, RunFailed
from server_component.coordinator import RoundCoordinator
from tests.support.live_aggregator import small_weights


def init(coordinator):
    coordinator.submit_init(wire.Message(small_weights(), {"client_id": "0"}))


def update(coordinator, client_id, round_, n=10):
    meta = wire.UpdateMeta(client_id, round_, n).to_metadata()
    return coordinator.submit_update(wire.Message(small_weights(client_id), meta))


def run_deadlines(coordinator):
    thread = threading.Thread(target=coordinator.enforce_deadlines, daemon=True)
    thread.start()
    return thread


def test_round_closes_at_the_deadline_with_the_quorum_and_stragglers_get_409():
    c = RoundCoordinator(3, 2, min_clients=2, round_timeout=0.3)
    init(c)
    watcher = run_deadlines(c)
    update(c, 0, 1, n=1)
    update(c, 1, 1, n=3)
    assert c.wait_for_model(1, timeout=5) is not None
    record = c.history[0]
    assert record.client_ids == [0, 1] and record.missing == [2]
    model = wire.decode(c.wait_for_model(1, timeout=0))
    np.testing.assert_allclose(model.tensors["w000"], np.full((3, 2), 1.75))  # 0 and 1 at 1:3
    with pytest.raises(RoundConflict, match="round 1 is not the open round 2"):
        update(c, 2, 1)
    for cid in range(3):
        update(c, cid, 2)
    watcher.join(timeout=5)
    assert not watcher.is_alive()
    assert [r.round for r in c.history] == [1, 2]


def test_without_the_quorum_the_run_fails_naming_the_round_and_missing_ids():
    c = RoundCoordinator(3, 2, min_clients=3, round_timeout=0.2)
    init(c)
    update(c, 0, 1)
    run_deadlines(c).join(timeout=5)
    assert c.failure is not None
    assert "round 1" in c.failure and "missing client ids [1, 2]" in c.failure
    assert c.status().phase == "failed"
    with pytest.raises(RunFailed):
        update(c, 1, 1)
    with pytest.raises(RunFailed):
        c.wait_for_model(1, timeout=0)


def test_a_waiting_long_poll_learns_of_the_failure_at_once():
    c = RoundCoordinator(2, 1, min_clients=2, round_timeout=0.2)
    init(c)
    outcome = {}

    def poll():
        try:
            c.wait_for_model(1, timeout=30)
        except RunFailed as exc:
            outcome["error"] = exc

    poller = threading.Thread(target=poll)
    poller.start()
    run_deadlines(c)
    poller.join(timeout=5)
    assert not poller.is_alive() and "error" in outcome


def test_no_deadline_means_rounds_wait_for_everyone():
    c = RoundCoordinator(2, 1)
    init(c)
    watcher = run_deadlines(c)
    update(c, 0, 1)
    watcher.join(timeout=0.3)
    assert watcher.is_alive() and c.failure is None
    update(c, 1, 1)
    watcher.join(timeout=5)
    assert not watcher.is_alive()


@pytest.mark.parametrize("kwargs", [{"min_clients": -1}, {"min_clients": 4}])
def test_min_clients_must_fit_the_run(kwargs):
    with pytest.raises(ValueError, match="min_clients"):
        RoundCoordinator(3, 1, **kwargs)


def test_min_clients_0_means_all_as_in_the_settings():
    assert RoundCoordinator(3, 1, min_clients=0).min_clients == 3
