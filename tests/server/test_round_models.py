"""select_model and keep_round_models: the exported model is the round the rule picks (and
the clients evaluate that model), every round's model is kept within its bound, and a
restarted aggregator keeps the choice."""

import logging

import numpy as np
import pytest

from contract import wire
from server_component.checkpoint import RoundRecord, load_checkpoint
from server_component.coordinator import RoundCoordinator
from server_component.outputs import OutputPaths, write_outputs
from server_component.round_models import (
    BEST_FILE,
    RoundModels,
    SelectionError,
    parse_selection,
    round_file,
    select,
)
from tests.support import federation
from tests.support.live_aggregator import TOKEN, start_aggregator
from tests.support.numpy_learner import NumpyLearner


def record(round_, **metrics):
    return RoundRecord(round_, [0], 10, metrics, 1.0)


def test_best_picks_the_highest_score_or_the_lowest_loss_and_the_earliest_of_equals():
    history = [record(1, val_auc=0.7, val_loss=0.9), record(2, val_auc=0.9, val_loss=0.4),
               record(3, val_auc=0.9, val_loss=0.5), record(4, val_auc=0.8, val_loss=0.3)]
    assert select(history, "val_auc").round == 2
    assert select(history, "val_loss").round == 4
    assert select(history, None).round == 4 and select(history, None).rule == "last"
    missing = select(history, "val_f1")
    assert missing.round == 4 and "no round reported val_f1" in missing.note


@pytest.mark.parametrize("text", ["best", "best:", "worst:val_auc", "first"])
def test_a_bad_rule_is_refused(text):
    with pytest.raises(SelectionError, match="accepted: last, best:<metric>"):
        parse_selection(text)


class PeakingLearner(NumpyLearner):
    """Validation accuracy peaks in round 2, then falls (a run that got worse)."""

    def fit(self, round_):
        examples, _ = super().fit(round_)
        return examples, {"accuracy": {1: 0.6, 2: 0.9, 3: 0.7, 4: 0.65}[round_]}


def federate(tmp_path, keep=True, max_bytes=1 << 30, rounds=4, checkpoint=None):
    models = RoundModels("val_accuracy", keep, max_bytes, tmp_path / "round_models")
    agg = start_aggregator(3, rounds, coordinator_kwargs={"round_models": models,
                                                          "checkpoint_dir": checkpoint})
    learners = [PeakingLearner(c) for c in range(3)]
    try:
        federation.federate_all(agg.url, learners, rounds, TOKEN, timeout=60, long_poll_s=2)
    finally:
        agg.server.stop()
    return agg.coordinator, learners, models


def tensors(body):
    return wire.decode(body).tensors


def test_the_best_round_is_served_as_the_final_model_and_exported(tmp_path):
    coordinator, learners, models = federate(tmp_path)
    kept = models.directory / "rounds"
    assert sorted(p.name for p in kept.iterdir()) == [round_file(r) for r in (1, 2, 3, 4)]
    round_2 = tensors((kept / round_file(2)).read_bytes())
    final = wire.decode(coordinator.final_model())
    assert final.metadata[wire.META_ROUND] == "4"
    assert final.metadata[wire.META_SELECTED_ROUND] == "2"
    for name, array in round_2.items():
        np.testing.assert_array_equal(final.tensors[name], array)
    # The clients evaluated (and hold) that model, not round 4's.
    for learner in learners:
        for mine, expected in zip(learner.weights, wire.tensors_to_list(round_2), strict=True):
            np.testing.assert_array_equal(mine, expected)
    assert not np.array_equal(tensors((kept / round_file(4)).read_bytes())["w000"],
                              round_2["w000"])
    summary = write_outputs(OutputPaths.in_directory(tmp_path / "out"), coordinator)
    assert summary["selected_model"]["round"] == 2 and summary["totals"]["selected_round"] == 2
    assert summary["selected_model"]["description"] == "round 2 (best:val_accuracy = 0.9000)"
    exported = tmp_path / "out"
    assert (exported / "final_weights.safetensors").read_bytes() == coordinator.final_model()
    assert sorted(p.name for p in (exported / "rounds").iterdir()) == [
        round_file(r) for r in (1, 2, 3, 4)]
    assert "round 2 (best:val_accuracy = 0.9000)" in (exported / "report.html").read_text()


def test_round_models_stop_at_their_bound_and_say_so_once(tmp_path, caplog):
    one_model = 8 * 4 * 4 + 4 * 4 + 200  # two float32 tensors and a header
    with caplog.at_level(logging.WARNING):
        _, _, models = federate(tmp_path, max_bytes=2 * one_model)
    kept = sorted(p.name for p in (models.directory / "rounds").iterdir())
    assert kept == [round_file(1), round_file(2)]
    warnings = [r.getMessage() for r in caplog.records if "round_models_full" in r.getMessage()]
    assert len(warnings) == 1 and "event=round_models_full round=3" in warnings[0]
    assert (models.directory / BEST_FILE).is_file()  # the best model is kept regardless


def test_a_restarted_aggregator_still_serves_the_selected_round(tmp_path):
    checkpoint = tmp_path / "ckpt"
    coordinator, _, models = federate(tmp_path, keep=False, checkpoint=str(checkpoint))
    selected = coordinator.final_model()
    restarted = RoundCoordinator(3, 4, round_models=RoundModels(
        "val_accuracy", False, 1 << 30, models.directory), checkpoint_dir=str(checkpoint))
    restarted.restore(load_checkpoint(str(checkpoint), restarted.config))
    assert bytes(restarted.final_model()) == bytes(selected)
    assert restarted.selection.round == 2


def test_last_is_the_default_and_keeps_nothing(tmp_path):
    agg = start_aggregator(2, 2)
    learners = [PeakingLearner(c) for c in range(2)]
    try:
        federation.federate_all(agg.url, learners, 2, TOKEN, timeout=60, long_poll_s=2)
    finally:
        agg.server.stop()
    assert agg.coordinator.selection.round == 2 and agg.coordinator.selection.rule == "last"
    assert wire.META_SELECTED_ROUND not in wire.decode(agg.coordinator.final_model()).metadata


def test_models_kept_without_a_checkpoint_volume_are_removed_at_close(tmp_path):
    models = RoundModels("val_auc", True, 1 << 20)
    models.closed([record(1, val_auc=0.5)], wire.encode({"w": np.zeros(3, np.float32)}))
    assert (models.directory / BEST_FILE).is_file()
    models.close()
    assert not models.directory.exists()
    beside_checkpoint = RoundModels("val_auc", True, 1 << 20, tmp_path / "kept")
    beside_checkpoint.closed([record(1, val_auc=0.5)], wire.encode({"w": np.zeros(3)}))
    beside_checkpoint.close()
    assert (tmp_path / "kept" / BEST_FILE).is_file()  # a restart still needs it
