"""Multi-label training and evaluation: the masked binary cross-entropy, per-finding and
macro AUC against scikit-learn, counts that add up across sites, and a learner that learns
the written findings (plain, FedProx's loop and DP-SGD)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from bench.multilabel_files import write_chestmnist
from client_component.datasets import DatasetError, load_dataset
from client_component.datasets.labels import MASKED
from client_component.dp_sgd import DpSgd, DpSgdParams
from client_component.evaluation import count_multi_label_outcomes, multi_label_metrics
from client_component.keras_learner import KerasLearner, TrainingConfig
from client_component.local_data import client_shard
from client_component.model import build_model
from client_component.multilabel_loss import label_log_odds, multi_label_loss
from server_component.evaluation_counts import EvaluationCounts

RNG = np.random.default_rng(0)


def test_without_masks_the_loss_is_keras_binary_cross_entropy_per_example():
    y = RNG.integers(0, 2, (6, 4)).astype(np.int8)
    p = RNG.uniform(0.05, 0.95, (6, 4)).astype(np.float32)
    ours = multi_label_loss()(tf.constant(y), tf.constant(p)).numpy()
    expected = keras.losses.binary_crossentropy(y.astype(np.float32), p).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


def test_a_masked_entry_neither_trains_nor_counts():
    y = np.array([[1, MASKED, 0], [MASKED, MASKED, MASKED]], np.int8)
    p = tf.Variable([[0.7, 0.2, 0.4], [0.3, 0.9, 0.5]], dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = multi_label_loss()(tf.constant(y), p)
        total = tf.reduce_sum(loss)
    gradient = tape.gradient(total, p).numpy()
    assert gradient[0, 1] == 0 and (gradient[1] == 0).all() and gradient[0, 0] != 0
    expected = -(np.log(0.7) + np.log(0.6)) / 2  # the mean over the two known entries
    np.testing.assert_allclose(loss.numpy(), [expected, 0.0], rtol=1e-5)


def test_logit_adjustment_shifts_each_finding_by_its_local_log_odds():
    y = np.array([[1, 0], [1, 0], [0, 0], [1, MASKED]], np.int8)
    odds = label_log_odds(y)
    np.testing.assert_allclose(odds, [np.log(4 / 2), np.log(1 / 4)])  # (3+1)/(4+2), (0+1)/(3+2)
    p = np.full((1, 2), 0.5, np.float32)
    shifted = multi_label_loss(odds)(tf.constant([[1, 1]], tf.int8), tf.constant(p)).numpy()
    plain = multi_label_loss()(tf.constant([[1, 1]], tf.int8), tf.constant(p)).numpy()
    assert shifted[0] != pytest.approx(plain[0])


def test_per_finding_and_macro_auc_equal_scikit_learn_on_the_unmasked_entries():
    y = RNG.integers(0, 2, (300, 3)).astype(np.int8)
    y[RNG.random((300, 3)) < 0.2] = MASKED
    scores = np.clip(0.5 * (y == 1) + RNG.uniform(0, 0.6, (300, 3)), 0, 1)
    metrics = multi_label_metrics(y, scores, ["Edema", "Pleural Effusion", "Mass"])
    aucs = []
    for column, key in enumerate(["edema", "pleural_effusion", "mass"]):
        known = y[:, column] != MASKED
        aucs.append(roc_auc_score(y[known, column], scores[known, column]))
        assert metrics[f"auc_{key}"] == pytest.approx(aucs[-1])
        positives = known & (y[:, column] == 1)
        assert metrics[f"sensitivity_{key}"] == pytest.approx(
            (scores[positives, column] > 0.5).mean())
    assert metrics["auc"] == metrics["macro_auc"] == pytest.approx(np.mean(aucs))


def test_a_finding_without_both_outcomes_has_no_auc_and_stays_out_of_the_macro():
    y = np.array([[1, 0], [0, 0], [1, 0]], np.int8)
    metrics = multi_label_metrics(y, np.array([[0.9, 0.1], [0.2, 0.3], [0.6, 0.2]]), ["a", "b"])
    assert "auc_b" not in metrics and metrics["macro_auc"] == metrics["auc_a"] == 1.0
    assert "sensitivity_b" not in metrics and metrics["specificity_b"] == 1.0


def test_counts_of_two_sites_add_up_to_the_counts_of_their_pooled_data():
    y = RNG.integers(0, 2, (200, 2)).astype(np.int8)
    y[RNG.random((200, 2)) < 0.1] = MASKED
    scores = RNG.uniform(0, 1, (200, 2))
    names = ["a", "b"]

    def parsed(rows):
        raw = count_multi_label_outcomes(y[rows], scores[rows], names)
        return EvaluationCounts.parse(raw, len(rows))

    halves = parsed(np.arange(120)) + parsed(np.arange(120, 200))
    whole = parsed(np.arange(200))
    assert halves.labels == ("a", "b")
    for a, b in zip(halves.per_label, whole.per_label, strict=True):
        np.testing.assert_array_equal(a.confusion, b.confusion)
        np.testing.assert_array_equal(a.tp, b.tp)
        np.testing.assert_array_equal(a.fp, b.fp)
    known = y[:, 0] != MASKED
    pooled_auc = halves.to_json()["per_label"]["a"]["auc"]
    assert pooled_auc == pytest.approx(roc_auc_score(y[known, 0], scores[known, 0]), abs=0.01)


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    path = write_chestmnist(tmp_path_factory.mktemp("npz") / "chestmnist.npz", train=300,
                            val=60, test=120)
    return client_shard(load_dataset("npz", str(path), labels="nodule,effusion,hernia,mass"),
                        0, 1)


def learner_for(shard, **training):
    model = build_model(shard.input_shape, shard.num_classes, shard.kind, multi_label=True)
    return KerasLearner(model, shard, TrainingConfig(**training))


@pytest.mark.parametrize("training", [{}, {"fedprox_mu": 0.01, "logit_adjustment": "none"}],
                         ids=["model.fit", "fedprox-loop"])
def test_a_learner_learns_the_written_findings(shard, training):
    learner = learner_for(shard, local_epochs=3, **training)
    assert learner.model.output_shape == (None, 4)
    before = learner.evaluate_test()[1]["macro_auc"]
    _, val = learner.fit(1)
    assert {"auc_nodule", "auc_effusion", "sensitivity_hernia", "macro_auc"} <= set(val)
    after = learner.evaluate_test()[1]["macro_auc"]
    assert after > max(before, 0.6)
    counts = learner.test_counts()
    assert counts["labels"] == ["nodule", "effusion", "hernia", "mass"]
    assert sum(map(sum, counts["per_label"][0]["confusion_matrix"])) == len(shard.y_test)


def test_dp_sgd_clips_each_examples_gradient_on_multi_label_data(shard):
    model = build_model(shard.input_shape, shard.num_classes, shard.kind, multi_label=True)
    dp = DpSgd(model, DpSgdParams(batch_size=8, clip_norm=0.5, noise_multiplier=1.0),
               shard.num_classes, seed=0, multi_label=True)
    clipped = dp.clipped_gradients(shard.x_train[:8], shard.y_train[:8])
    norms = np.sqrt(sum(np.sum(g.numpy().reshape(8, -1) ** 2, axis=1) for g in clipped))
    assert (norms <= 0.5 + 1e-5).all() and norms.max() > 0.4
    dp.train(shard.x_train, shard.y_train, steps=2)  # a step runs end to end


def test_balanced_class_weights_are_refused_for_multi_label_data(shard):
    with pytest.raises(DatasetError, match="multi-label data needs class_weights=none"):
        learner_for(shard, class_weights="balanced")
