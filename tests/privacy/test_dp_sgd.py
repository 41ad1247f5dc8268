"""DP-SGD (client_component.dp_sgd): per-example clipping really bounds each example, the clipped
sum is the sum of the per-example gradients, the noise has the stated standard deviation, and
a learner's budget stops training before it is exceeded."""

import numpy as np
import pytest
import tensorflow as tf

from client_component.dp_sgd import DpSgd, DpSgdParams
from client_component.keras_learner import KerasLearner, TrainingConfig
from client_component.local_data import LocalData
from client_component.model import build_model
from client_component.model_config import ModelConfig


def _images(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 12, 12, 1), dtype=np.float32) * 4  # large inputs: large gradients
    y = (rng.random(n) > 0.5).astype(np.int64)
    return x, y


def _model(num_classes=2, seed=0):
    return build_model((12, 12, 1), num_classes, "image", ModelConfig(width=4, depth=1),
                       seed=seed)


def _manual_per_example(model, x, y, binary=True):
    grads = []
    for i in range(len(y)):
        with tf.GradientTape() as tape:
            prediction = model(x[i:i + 1], training=True)
            if binary:
                loss = tf.keras.losses.binary_crossentropy(
                    tf.constant([[float(y[i])]]), prediction)
            else:
                loss = tf.keras.losses.sparse_categorical_crossentropy(y[i:i + 1], prediction)
        grads.append([g.numpy() for g in tape.gradient(loss, model.trainable_variables)])
    return grads


def _norm(gradient):
    return float(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in gradient)))


@pytest.mark.parametrize("num_classes", [2, 3])
def test_each_examples_gradient_is_clipped_to_the_norm(num_classes):
    x, y = _images()
    y = y % num_classes
    model = _model(num_classes)
    clip = 0.05
    dp = DpSgd(model, DpSgdParams(16, clip, 1.0), num_classes, seed=0)
    clipped = dp.clipped_gradients(x[:12], y[:12])
    manual = _manual_per_example(model, x[:12], y[:12], binary=num_classes == 2)
    for i, raw in enumerate(manual):
        after = [g[i].numpy() for g in clipped]
        assert _norm(after) <= clip * (1 + 1e-5)
        raw_norm = _norm(raw)
        assert raw_norm > clip  # these inputs make every gradient larger than the bound
        for a, r in zip(after, raw, strict=True):  # same direction, scaled to the bound
            np.testing.assert_allclose(a, r * clip / raw_norm, rtol=2e-3, atol=1e-7)


def test_an_example_under_the_bound_is_left_as_it_is():
    x, y = _images(4)
    model = _model()
    dp = DpSgd(model, DpSgdParams(4, 1e6, 1.0), 2, seed=0)
    clipped = dp.clipped_gradients(x, y)
    for i, raw in enumerate(_manual_per_example(model, x, y)):
        for a, r in zip([g[i].numpy() for g in clipped], raw, strict=True):
            np.testing.assert_allclose(a, r, rtol=2e-3, atol=1e-6)


def test_the_noise_has_the_stated_standard_deviation():
    noise_multiplier, clip, batch = 1.3, 0.7, 64
    dp = DpSgd(_model(), DpSgdParams(batch, clip, noise_multiplier), 2, seed=7)
    draws = np.concatenate([dp.noisy_mean(tf.zeros((20_000,))).numpy() for _ in range(10)])
    expected = noise_multiplier * clip / batch
    # 200 000 draws: the sample standard deviation's relative error is ~0.16 %.
    assert np.std(draws) == pytest.approx(expected, rel=0.01)
    assert abs(np.mean(draws)) < 5 * expected / np.sqrt(draws.size)


def test_a_step_moves_the_weights_by_the_clipped_sum_plus_noise():
    x, y = _images(8)
    model = _model()
    model.compile(optimizer=tf.keras.optimizers.SGD(1.0), loss="binary_crossentropy")
    params = DpSgdParams(8, 0.1, 1.0)
    dp = DpSgd(model, params, 2, seed=3)
    expected_sum = [tf.reduce_sum(g, axis=0).numpy() for g in dp.clipped_gradients(x, y)]
    before = [v.numpy() for v in model.trainable_variables]
    dp.step(x, y)
    after = [v.numpy() for v in model.trainable_variables]
    moved = [(b - a) * params.batch_size for b, a in zip(before, after, strict=True)]
    noise = np.concatenate([(m - e).ravel() for m, e in zip(moved, expected_sum, strict=True)])
    # What remains is the noise: zero mean, standard deviation noise_multiplier x clip.
    assert np.std(noise) == pytest.approx(0.1, rel=0.1)


def _learner(n=200, target=0.0):
    rng = np.random.default_rng(1)
    x = rng.random((n, 12, 12, 1), dtype=np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype(np.int64)
    data = LocalData(x, y, x[:20], y[:20], x[:20], y[:20], 2, "image")
    model = _model()
    learner = KerasLearner(model, data, TrainingConfig(batch_size=20, logit_adjustment="none"))
    learner.with_dp_sgd(DpSgdParams(20, 1.0, 1.1), delta=1e-5, target_epsilon=target)
    return learner


def test_the_learner_stops_before_the_budget_is_exceeded():
    learner = _learner(target=1.5)
    budget = learner.privacy_budget
    per_round = learner.private_steps_per_round()
    assert per_round == 10  # 200 examples, expected batches of 20
    assert budget.mechanism.sampling_rate == pytest.approx(0.1)
    rounds = 0
    while not budget.exhausted:
        learner.fit(rounds + 1)
        rounds += 1
        assert budget.epsilon <= 1.5
        assert learner.last_local_steps == per_round or budget.exhausted
    # The next full round would have exceeded the target: training stops here.
    assert budget.mechanism.epsilon(budget.spent + per_round, 1e-5) > 1.5
    assert budget.spent == learner._iterations()  # every step taken was accounted


def test_a_partial_round_takes_only_the_steps_that_fit():
    learner = _learner(target=2.5)  # 10 steps reach 2.84: a round does not fit
    budget = learner.privacy_budget
    learner.fit(1)
    assert 0 < budget.spent < learner.private_steps_per_round()
    assert learner.last_local_steps == budget.spent
    assert budget.epsilon <= 2.5 and budget.exhausted


def test_a_site_calibrates_its_own_noise_for_the_budget():
    learner = _learner()
    learner.with_dp_sgd(DpSgdParams(20, 1.0, 0.0), delta=1e-5, target_epsilon=3.0, rounds=4)
    budget = learner.privacy_budget
    sigma = budget.mechanism.noise_multiplier
    assert learner._dp_sgd.params.noise_multiplier == sigma > 0
    # Exactly four full rounds fit; the fourth leaves the budget exhausted.
    for round_ in range(1, 5):
        assert not budget.exhausted
        learner.fit(round_)
    assert budget.spent == 40 and budget.epsilon <= 3.0 and budget.exhausted
