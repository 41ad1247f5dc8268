"""Local training and evaluation: models picked from the data, FedProx, class weights,
image folders streamed through tf.data, and the metrics reported each round."""

import numpy as np
import pytest

from client_component.datasets import load_dataset
from client_component.evaluation import classification_metrics
from client_component.keras_learner import KerasLearner, TrainingConfig
from client_component.local_data import client_shard
from client_component.model import build_model
from client_component.model_config import ModelConfig, ModelConfigError
from tests.client.test_loaders import chest_xray  # noqa: F401 (fixture)


def test_metrics_match_a_hand_computed_confusion_matrix():
    y = np.array([0, 0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    m = classification_metrics(y, probs, 2)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["sensitivity"] == pytest.approx(1 / 2) and m["specificity"] == pytest.approx(2 / 3)
    assert 0 <= m["auc"] <= 1 and m["loss"] > 0


@pytest.mark.parametrize("kind, shape, arch, expected", [
    ("table", (30,), "auto", "fl_mlp"), ("table", (17,), "conv1d", "fl_conv1d"),
    ("image", (28, 28, 1), "auto", "fl_cnn"), ("image", (32, 32, 3), "keras:MobileNetV2",
                                               "fl_keras_MobileNetV2")])
def test_models_are_picked_from_the_data(kind, shape, arch, expected):
    model = build_model(shape, 2, kind, ModelConfig(architecture=arch, width=8))
    assert model.name == expected and model.output_shape == (None, 1)


def test_group_norm_cnn_has_no_running_statistics_to_average():
    model = build_model((16, 16, 1), 3, "image", ModelConfig(norm="group", width=8))
    assert all(w.trainable for w in model.weights)  # BatchNorm would add moving stats
    assert model.output_shape == (None, 3)


@pytest.mark.parametrize("config", [ModelConfig(architecture="resnet"),
                                    ModelConfig(norm="batch"), ModelConfig(optimizer="lbfgs")])
def test_bad_model_choices_name_the_accepted_ones(config):
    with pytest.raises(ModelConfigError, match="accepted"):
        config.validate()


def learner(dataset, mu=0.0, class_weights="none", epochs=3, arch="auto"):
    data = client_shard(dataset, 0, 1, "iid", seed=0)
    model = build_model(data.input_shape, data.num_classes, data.kind,
                        ModelConfig(architecture=arch, width=8, learning_rate=0.01))
    return KerasLearner(model, data, TrainingConfig(epochs, 16, mu, class_weights))


def test_fedprox_and_class_weights_train_and_stay_near_the_anchor():
    dataset = load_dataset("synthetic", seed=0)
    plain, prox = learner(dataset), learner(dataset, mu=1.0, class_weights="balanced")
    start = plain.get_weights()
    prox.set_weights(start)
    before = prox.evaluate(prox.data.x_val, prox.data.y_val)
    plain.fit(1)
    _, metrics = prox.fit(1)
    assert metrics["loss"] < before["loss"]
    drift = [sum(float(np.sum((a - b) ** 2)) for a, b in zip(m.get_weights(), start,
                                                              strict=True))
             for m in (plain, prox)]
    assert drift[1] < drift[0]  # the proximal term holds the local model near the global one


def test_image_folders_stream_through_tf_data_and_learn(chest_xray):  # noqa: F811
    dataset = load_dataset("image_folder", str(chest_xray), image_size=8, channels=1)
    model_learner = learner(dataset, epochs=15)
    before = model_learner.evaluate(model_learner.data.x_val, model_learner.data.y_val)
    _, after = model_learner.fit(1)
    assert after["loss"] < before["loss"]
    n, test = model_learner.evaluate_test()
    assert n == 6 and {"loss", "accuracy", "auc", "sensitivity", "specificity"} <= set(test)


@pytest.mark.parametrize("mu", [0.0, 0.5])
def test_a_local_step_budget_takes_exactly_that_many_batches_whatever_the_data(mu):
    """local_steps replaces epochs: a site with 40 examples and one with 400 both take 7
    batches of 16 per round (cycling through the small one), with and without FedProx."""
    dataset = load_dataset("synthetic", seed=0)
    for site_count in (10, 1):  # a tenth of the data, then all of it
        data = client_shard(dataset, 0, site_count, "iid", seed=0)
        model = build_model(data.input_shape, data.num_classes, data.kind,
                            ModelConfig(width=8))
        site = KerasLearner(model, data, TrainingConfig(1, 16, mu, local_steps=7))
        for round_ in (1, 2):
            site.fit(round_)
            assert int(model.optimizer.iterations.numpy()) == 7 * round_


def test_scaffold_corrects_each_gradient_and_moves_the_sites_control_variate():
    """With the server's c, every local step adds c - c_i to the gradient: the weights end,
    on average, lr * a * c below an uncorrected run (each one a little off: the corrected
    path sees other gradients); c_i becomes (x - y) / (lr * a) - c + c_i."""
    from contract import wire

    dataset = load_dataset("synthetic", seed=0)
    data = client_shard(dataset, 0, 4, "iid", seed=0)
    config = ModelConfig(width=8, optimizer="sgd", learning_rate=0.01)
    sites = [KerasLearner(build_model(data.input_shape, data.num_classes, data.kind, config),
                          data, TrainingConfig(1, 16, local_steps=5)) for _ in range(2)]
    start = sites[0].get_weights()
    sites[1].set_weights(start)
    control = [np.full_like(w, 0.01) for w in start]
    sites[1].set_control(control)
    for site in sites:
        site.fit(1)
    plain, corrected = sites[0].get_weights(), sites[1].get_weights()
    assert sites[1].last_local_steps == 5 and sites[1].momentum == pytest.approx(0.9)
    step = 0.01 * wire.step_norm(5, 0.9)
    delta = sites[1].control_delta()
    assert sites[0].control_delta() is None
    shift = np.concatenate([(c - p).ravel() for c, p in zip(corrected, plain, strict=True)])
    assert shift.mean() == pytest.approx(-step * 0.01, rel=0.2)
    for i, variable in enumerate(sites[1].model.weights):
        assert variable.trainable  # GroupNorm: every weight trains
        np.testing.assert_allclose(delta[i], (start[i] - corrected[i]) / step - control[i],
                                   rtol=1e-4, atol=1e-5)
