"""The Keras learner: a model built from the client's data, trained and evaluated locally.

Local training is ``model.fit``; with a FedProx ``mu`` it is a small gradient-tape loop that
adds the proximal term mu/2 · ||w - w_global||² to the loss, anchoring each round's local
update to the global model it started from (Li et al., Federated Optimization in
Heterogeneous Networks). With ``logit_adjustment="prior"`` (the default) the loss adds the
site's own label prior to the logits (``client_component.label_prior``), so that a site
holding mostly one class does not drag the shared model towards it.

When the served model carries SCAFFOLD control variates (``set_control``), the same loop adds
the correction c - c_i to every gradient and afterwards moves c_i to the round's average
gradient, estimated from the displacement (option II of Karimireddy et al. 2020)."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from dataclasses import dataclass, field, fields

import keras
import numpy as np
import tensorflow as tf
from sklearn.utils.class_weight import compute_class_weight

from client_component.datasets import DatasetError, ImageFiles, load_dataset
from client_component.dp_sgd import DpSgd, DpSgdParams
from client_component.evaluation import (
    class_probabilities,
    classification_metrics,
    count_multi_label_outcomes,
    count_outcomes,
    multi_label_metrics,
)
from client_component.feeding import image_dataset, predict
from client_component.label_prior import local_prior, prior_adjusted_loss
from client_component.local_data import LocalData, client_shard
from client_component.model import build_model
from client_component.model_config import ModelConfig
from client_component.multilabel_loss import label_log_odds, multi_label_loss
from client_component.settings import ClientConfig
from contract import privacy, wire
from contract.settings import settings_of

log = logging.getLogger("client_component")


_DEFAULTS = {s.name: s.default for s in settings_of(ClientConfig)}


@dataclass
class TrainingConfig:
    """The local-training settings of ``ClientConfig`` (same names and defaults), with the
    seed this site shuffles with."""

    local_epochs: int = _DEFAULTS["local_epochs"]
    batch_size: int = _DEFAULTS["batch_size"]
    fedprox_mu: float = _DEFAULTS["fedprox_mu"]
    class_weights: str = _DEFAULTS["class_weights"]  # "balanced": inverse class frequency
    seed: int = _DEFAULTS["seed"]
    logit_adjustment: str = _DEFAULTS["logit_adjustment"]  # "prior", or "none": plain BCE
    # > 0: exactly this many local batches per round (cycling through the data), instead of
    # local_epochs: sites of very different sizes then take the same number of steps.
    local_steps: int = _DEFAULTS["local_steps"]
    fresh_optimizer: bool = _DEFAULTS["fresh_optimizer"]  # zero momentum/moments per round

    @classmethod
    def of(cls, config: ClientConfig) -> TrainingConfig:
        """This site's training: the client's settings, shuffled by its own seed."""
        same = {f.name: getattr(config, f.name) for f in fields(cls)}
        return cls(**{**same, "seed": config.seed + config.client_id})


@dataclass
class KerasLearner:
    """The ``Learner`` the pipeline's clients use: a compiled Keras model and this site's
    shard of the data, trained as ``training`` says."""

    model: keras.Model
    data: LocalData
    training: TrainingConfig = field(default_factory=TrainingConfig)
    cache_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="fl-client-"))
    last_local_steps: int | None = field(default=None, init=False)  # of the last fit
    # SCAFFOLD: the server's control variate, this site's, and the last change of this site's
    _control: list[np.ndarray] | None = field(default=None, init=False, repr=False)
    _own_control: list[np.ndarray] | None = field(default=None, init=False, repr=False)
    _control_change: list[np.ndarray] | None = field(default=None, init=False, repr=False)
    # dp=example: DP-SGD and this site's budget (``with_dp_sgd``)
    privacy_budget: privacy.PrivacyBudget | None = field(default=None, init=False)
    _dp_sgd: DpSgd | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.data.multi_label and self.training.class_weights != "none":
            raise DatasetError("class_weights=balanced weighs one class per example; "
                               "multi-label data needs class_weights=none (logit_adjustment="
                               "prior balances each observation)")
        if self.training.logit_adjustment == "prior":
            self.model.compile(optimizer=self.model.optimizer, loss=self._adjusted_loss())

    @classmethod
    def from_config(cls, config: ClientConfig) -> KerasLearner:
        """This client's shard of its dataset and the model built for it."""
        dataset = load_dataset(config.dataset, config.site_data_uri, config.seed,
                               label_column=config.label_column, image_size=config.image_size,
                               channels=config.channels, sha256=config.data_sha256,
                               labels=config.labels, uncertainty=config.uncertainty)
        data = client_shard(dataset, config.client_id, config.num_clients, config.partition,
                            config.seed)
        log.info("client=%d train=%d val=%d test=%d", config.client_id, len(data.y_train),
                 len(data.y_val), len(data.y_test))
        model = build_model(data.input_shape, data.num_classes, data.kind,
                            ModelConfig.of(config), seed=config.seed,
                            multi_label=data.multi_label)
        log.info("client=%d model=%s parameters=%d", config.client_id, model.name,
                 model.count_params())
        learner = cls(model, data, TrainingConfig.of(config))
        if config.dp == "example":
            learner.with_dp_sgd(DpSgdParams(config.batch_size, config.dp_clip_norm,
                                            config.dp_noise_multiplier),
                                config.dp_delta, config.dp_target_epsilon, rounds=config.rounds)
        return learner

    def with_dp_sgd(self, params: DpSgdParams, delta: float = 0.0, target_epsilon: float = 0.0,
                    seed: int | None = None, rounds: int = 1) -> None:
        """Train with DP-SGD from now on, accounting every step against ``target_epsilon``
        (0: no budget) at ``delta`` (0: ``privacy.default_delta`` of the site's examples).
        A noise multiplier of 0 is calibrated so that ``rounds`` full rounds spend exactly the
        budget at this site."""
        examples = len(self.data.y_train)
        delta = delta or privacy.default_delta(examples)
        rate = params.sampling_rate(examples)
        if params.noise_multiplier <= 0:
            steps = rounds * self._steps_per_round(params)
            params = dataclasses.replace(params, noise_multiplier=privacy.calibrate(
                rate, steps, target_epsilon, delta))
            log.info("dp=example noise_multiplier=%.4f calibrated for epsilon=%g over %d "
                     "steps (q=%.4g, delta=%g)", params.noise_multiplier, target_epsilon,
                     steps, rate, delta)
        mechanism = privacy.Mechanism(params.noise_multiplier, rate)
        self.privacy_budget = privacy.PrivacyBudget(mechanism, delta, target_epsilon)
        self._dp_sgd = DpSgd(self.model, params, self.data.num_classes, seed,
                             multi_label=self.data.multi_label)

    @property
    def architecture(self) -> str:
        """The network as Keras JSON, without its training configuration: with the final
        weights it becomes the exported .keras, which must load without this project's code
        (the logit-adjusted loss is this site's own, built from its label prior)."""
        config = json.loads(self.model.to_json())
        config.pop("compile_config", None)
        return json.dumps(config)

    @property
    def framework(self) -> str:
        """The TensorFlow and Keras versions, sent at init for the model's metadata."""
        return f"tensorflow {tf.__version__}, keras {keras.__version__}"

    @property
    def partition_stats(self) -> dict:
        """This client's examples and label histogram, reported to the aggregator at init."""
        return self.data.stats

    def get_weights(self) -> list[np.ndarray]:
        """The model's weights, in the order Keras's ``get_weights`` gives them."""
        return self.model.get_weights()

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Replace the model's weights with ``weights``, in the same order."""
        self.model.set_weights(weights)

    @property
    def momentum(self) -> float:
        """The SGD momentum of local training (0 for adaptive optimizers)."""
        optimizer = self.model.optimizer
        return float(optimizer.momentum) if isinstance(optimizer, keras.optimizers.SGD) else 0.0

    def set_control(self, control: list[np.ndarray]) -> None:
        """The server's SCAFFOLD control variate for the next fit (one per weight)."""
        self._control = [np.asarray(c, np.float32) for c in control]
        if self._own_control is None:
            self._own_control = [np.zeros_like(c) for c in self._control]

    def control_delta(self) -> list[np.ndarray] | None:
        """How much the last fit changed this site's control variate (None without SCAFFOLD)."""
        return self._control_change

    def fit(self, round_: int) -> tuple[int, dict[str, float]]:
        """Train one round (epochs, or ``local_steps`` batches; FedProx or SCAFFOLD in a
        custom loop); (training examples, metrics on the validation split)."""
        t = self.training
        if t.fresh_optimizer:
            self._reset_optimizer()
        start, steps_before = self.get_weights(), self._iterations()
        if self._dp_sgd is not None:
            self._fit_private(round_)
        elif t.fedprox_mu > 0 or self._control is not None:
            self._fit_custom(round_)
        elif t.local_steps > 0:
            self.model.fit(self._batches(round_).repeat(), epochs=1,
                           steps_per_epoch=t.local_steps, verbose=0, shuffle=False,
                           class_weight=self._class_weights())
        else:
            x, y, batch = self._training_input(round_)
            self.model.fit(x, y, batch_size=batch, epochs=t.local_epochs, verbose=0,
                           shuffle=y is not None, class_weight=self._class_weights())
        self.last_local_steps = self._iterations() - steps_before
        if self._control is not None:
            self._move_own_control(start)
        return len(self.data.y_train), self.evaluate(self.data.x_val, self.data.y_val)

    def evaluate(self, x, y) -> dict[str, float]:
        """Metrics of the current weights on ``x``, ``y``; empty for an empty split."""
        if len(y) == 0:
            return {}
        if self.data.multi_label:
            return multi_label_metrics(y, predict(self.model, x), self.data.label_names)
        probs = class_probabilities(predict(self.model, x), self.data.num_classes)
        return classification_metrics(y, probs, self.data.num_classes)

    def evaluate_test(self) -> tuple[int, dict[str, float]]:
        """(test examples, metrics of the current weights on the test split)."""
        return len(self.data.y_test), self.evaluate(self.data.x_test, self.data.y_test)

    def test_counts(self) -> dict | None:
        """Confusion-matrix and ROC counts of the current weights on the test split."""
        if len(self.data.y_test) == 0:
            return None
        scores = predict(self.model, self.data.x_test)
        if self.data.multi_label:
            return count_multi_label_outcomes(self.data.y_test, scores, self.data.label_names)
        probs = class_probabilities(scores, self.data.num_classes)
        return count_outcomes(self.data.y_test, probs, self.data.num_classes)

    # ---- internals ------------------------------------------------------------------------

    def _training_input(self, round_: int):
        """(x, y, batch_size) for model.fit: arrays, or a streamed dataset of image files."""
        x, y, t = self.data.x_train, self.data.y_train, self.training
        if isinstance(x, ImageFiles):
            return image_dataset(x, y, t.batch_size, t.seed + round_, self.cache_dir), None, None
        return x, y, t.batch_size

    def _batches(self, round_: int) -> tf.data.Dataset:
        """One shuffled pass over the training data, as a batched dataset."""
        x, y, _ = self._training_input(round_)
        if y is None:
            return x
        return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
            len(y), seed=self.training.seed + round_).batch(self.training.batch_size)

    def _adjusted_loss(self):
        if self.data.multi_label:
            return multi_label_loss(label_log_odds(self.data.y_train))
        return prior_adjusted_loss(local_prior(self.data.y_train, self.data.num_classes))

    def _class_weights(self) -> dict[int, float] | None:
        if self.training.class_weights != "balanced":
            return None
        present = np.unique(self.data.y_train)
        weights = compute_class_weight("balanced", classes=present, y=self.data.y_train)
        return {int(c): float(w) for c, w in zip(present, weights, strict=True)}

    def _reset_optimizer(self) -> None:
        """Every slot variable and the step count back to zero, the learning rate kept: as if
        the optimizer were built anew for this round's global model."""
        optimizer = self.model.optimizer
        if not optimizer.built:
            return
        for variable in optimizer.variables:
            if variable is not getattr(optimizer, "_learning_rate", None):
                variable.assign(keras.ops.zeros_like(variable))

    def _iterations(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _trainable_positions(self) -> list[int]:
        """Where the trainable variables sit in ``get_weights()`` order."""
        return [i for i, v in enumerate(self.model.weights) if v.trainable]

    def _move_own_control(self, start: list[np.ndarray]) -> None:
        """c_i+ = c_i - c + (x - y) / (lr * a): the average corrected gradient of the round
        plus the correction removed, where lr * a is how far a unit gradient moves the weights
        in that many steps (momentum included: ``wire.step_norm``)."""
        steps = self.last_local_steps or 0
        learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        scale = 1.0 / (learning_rate * wire.step_norm(steps, self.momentum)) if steps else 0.0
        end = self.get_weights()
        own = list(self._own_control)
        for i in self._trainable_positions():
            own[i] = (self._own_control[i] - self._control[i]
                      + scale * (start[i] - end[i])).astype(np.float32)
        self._control_change = [n - o for n, o in zip(own, self._own_control, strict=True)]
        self._own_control = own

    def private_steps_per_round(self) -> int:
        """DP-SGD steps a full round takes: ``local_steps``, or epochs of expected batches."""
        return self._steps_per_round(self._dp_sgd.params)

    def _steps_per_round(self, params: DpSgdParams) -> int:
        t = self.training
        return t.local_steps or t.local_epochs * params.steps_per_epoch(len(self.data.y_train))

    def _fit_private(self, round_: int) -> None:
        """DP-SGD for as many of the round's steps as the budget allows; the budget is marked
        exhausted when the next round would not fit."""
        wanted = self.private_steps_per_round()
        steps = self.privacy_budget.allow(wanted)
        if steps < wanted:
            log.warning("round=%d dp=example the budget ε=%g allows %d of %d steps", round_,
                        self.privacy_budget.target_epsilon, steps, wanted)
        self._dp_sgd.train(self.data.x_train, self.data.y_train, steps,
                           self._data_free_gradient())
        self.privacy_budget.spend(steps, next_round=wanted)
        log.info("round=%d dp=example steps=%d epsilon=%.4f delta=%g exhausted=%s", round_,
                 self.privacy_budget.spent, self.privacy_budget.epsilon, self.privacy_budget.delta,
                 self.privacy_budget.exhausted)

    def _data_free_gradient(self):
        """FedProx's and SCAFFOLD's gradient terms, which do not read the data (DP-SGD adds
        them after its noise); None without either."""
        mu, positions = self.training.fedprox_mu, self._trainable_positions()
        if mu <= 0 and self._control is None:
            return None
        weights = self.model.get_weights()
        anchored = [tf.constant(weights[i]) for i in positions]
        correction = None if self._control is None else [
            tf.constant(self._control[i] - self._own_control[i]) for i in positions]

        def extra(trainable):
            terms = [mu * (v - a) for v, a in zip(trainable, anchored, strict=True)]
            if correction is not None:
                terms = [g + c for g, c in zip(terms, correction, strict=True)]
            return terms

        return extra

    def _batch_loss(self):
        """loss(target, predictions, labels) of a batch as ``model.fit`` computes it: the
        logit-adjusted or plain loss, weighted by class where ``class_weights`` says so."""
        per_example = (self._adjusted_loss() if self.training.logit_adjustment == "prior"
                       else multi_label_loss() if self.data.multi_label else None)
        if self.data.multi_label:
            return lambda target, predictions, labels: tf.reduce_mean(
                per_example(target, predictions))
        weights = self._class_weights()
        lookup = tf.constant([weights.get(c, 1.0) if weights else 1.0
                              for c in range(self.data.num_classes)], tf.float32)
        if per_example is None:
            per_example = (keras.losses.BinaryCrossentropy() if self.data.num_classes == 2
                           else keras.losses.SparseCategoricalCrossentropy())
            return lambda target, predictions, labels: per_example(
                target, predictions, sample_weight=tf.gather(lookup, labels))
        return lambda target, predictions, labels: tf.reduce_mean(
            per_example(target, predictions) * tf.gather(lookup, labels))

    def _fit_custom(self, round_: int) -> None:
        """A gradient-tape loop for what ``model.fit`` cannot add: FedProx's proximal term and
        SCAFFOLD's gradient correction."""
        model, t = self.model, self.training
        anchor = [tf.constant(v) for v in model.get_weights()]
        trainable = model.trainable_variables
        positions = self._trainable_positions()
        anchored = [anchor[i] for i in positions]
        correction = None if self._control is None else [
            tf.constant(self._control[i] - self._own_control[i]) for i in positions]
        loss_fn = self._batch_loss()
        binary = self.data.num_classes == 2 and not self.data.multi_label

        @tf.function
        def step(x, y):
            target = tf.cast(tf.reshape(y, (-1, 1)), tf.float32) if binary else y
            with tf.GradientTape() as tape:
                predictions = model(x, training=True)
                loss = loss_fn(target, predictions, y)
                if t.fedprox_mu > 0:
                    loss += t.fedprox_mu / 2 * tf.add_n([
                        tf.reduce_sum(tf.square(v - a))
                        for v, a in zip(trainable, anchored, strict=True)])
            grads = tape.gradient(loss, trainable)
            if correction is not None:
                grads = [g + c for g, c in zip(grads, correction, strict=True)]
            model.optimizer.apply_gradients(zip(grads, trainable, strict=True))

        if t.local_steps > 0:
            batches = self._batches(round_).repeat().take(t.local_steps)
        else:
            batches = self._batches(round_).repeat(t.local_epochs)
        for xb, yb in batches:
            step(xb, yb)
