"""Checkpoints: atomic, resumable, and refused when they belong to another run setup."""

import os

import numpy as np
import pytest

from contract import wire
from server_component.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from server_component.coordinator import RoundCoordinator
from server_component.strategies import FedAdam
from tests.support.live_aggregator import small_weights


def run_rounds(coordinator, rounds):
    for round_ in rounds:
        for cid in range(coordinator.num_clients):
            meta = wire.UpdateMeta(cid, round_, cid + 1).to_metadata()
            coordinator.submit_update(wire.Message(small_weights(cid + round_), meta))


def test_every_closed_round_is_checkpointed_and_a_new_coordinator_resumes(tmp_path):
    first = RoundCoordinator(2, 4, strategy=FedAdam(), checkpoint_dir=str(tmp_path))
    first.submit_init(wire.Message(small_weights(), {"client_id": "0"}))
    run_rounds(first, [1, 2])
    checkpoint = load_checkpoint(tmp_path, first.config)
    assert checkpoint.version == 2 and [r.round for r in checkpoint.history] == [1, 2]
    assert set(checkpoint.strategy_state) == {"m/w000", "m/w001", "v/w000", "v/w001"}

    resumed = RoundCoordinator(2, 4, strategy=FedAdam(), checkpoint_dir=str(tmp_path))
    resumed.restore(checkpoint)
    assert resumed.status().round == 3
    run_rounds(resumed, [3, 4])
    run_rounds(first, [3, 4])  # the uninterrupted run
    assert resumed.final_model() == first.final_model()
    assert [r.round for r in resumed.history] == [1, 2, 3, 4]


def test_init_alone_is_checkpointed_as_version_0(tmp_path):
    c = RoundCoordinator(2, 2, checkpoint_dir=str(tmp_path))
    c.submit_init(wire.Message(small_weights(), {"client_id": "1"}))
    assert load_checkpoint(tmp_path, c.config).version == 0


def test_a_checkpoint_of_another_setup_is_refused(tmp_path):
    c = RoundCoordinator(2, 2, checkpoint_dir=str(tmp_path))
    c.submit_init(wire.Message(small_weights(), {"client_id": "0"}))
    with pytest.raises(CheckpointError, match="use another --checkpoint-dir"):
        load_checkpoint(tmp_path, {**c.config, "num_clients": 3})


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path, {})


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    c = RoundCoordinator(2, 3, checkpoint_dir=str(tmp_path))
    c.submit_init(wire.Message(small_weights(), {"client_id": "0"}))
    run_rounds(c, [1])
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    run_rounds(c, [2])  # training goes on; the error is logged
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]  # no temp left behind
    assert load_checkpoint(tmp_path, c.config).version == 1


def test_save_load_round_trip_keeps_dtypes(tmp_path):
    from server_component.checkpoint import Checkpoint, RoundRecord

    model = {"w000": np.ones((2, 2), np.float16), "w001": np.zeros(3, np.float32)}
    history = [RoundRecord(1, [0, 1], 20, {"val_auc": 0.9}, 1.5, [2])]
    save_checkpoint(tmp_path, Checkpoint(1, model, {}, history, {"num_clients": 3}))
    loaded = load_checkpoint(tmp_path, {"num_clients": 3})
    assert loaded.history == history
    assert {k: v.dtype for k, v in loaded.model.items()} == {k: v.dtype for k, v in model.items()}
