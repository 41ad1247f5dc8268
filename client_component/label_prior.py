"""Training that leaves the site's own label mix out of the model: logit adjustment.

Under label skew a site with mostly one class pulls the shared model towards always
predicting that class, and FedAvg weights it by its many examples: the global model ends up
saturated on the majority class (predictions 0.99+ for every film). With logit adjustment
(Menon et al., "Long-tail learning via logit adjustment", ICLR 2021; applied to federated
label skew as logit calibration, Zhang et al., FedLC, ICML 2022) each site trains on
``logits + log(local class prior)``: the prior is added by the loss, so the weights only
have to learn how the classes differ, not how often the site sees them. A single-class site
then has almost nothing left to push. The model itself predicts as if the classes were
equally frequent; its ranking (AUC) is what the sites share, and a deployment re-adds the
prior of the population it serves.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

_EPS = 1e-7


def local_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class frequencies with add-one smoothing (a class the site never saw is not -inf)."""
    counts = np.bincount(np.asarray(labels, np.int64).reshape(-1), minlength=num_classes)
    return (counts + 1.0) / (counts.sum() + num_classes)


def prior_adjusted_loss(prior: np.ndarray) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Per-example cross-entropy of the model's probabilities shifted by ``log prior``: one
    sigmoid unit for two classes, a softmax otherwise (as ``build_model`` makes them)."""
    log_prior = np.log(np.asarray(prior, np.float64))
    if len(log_prior) == 2:
        offset = float(log_prior[1] - log_prior[0])

        def binary(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
            p = tf.clip_by_value(tf.reshape(tf.cast(y_pred, tf.float32), (-1,)), _EPS, 1 - _EPS)
            logits = tf.math.log(p) - tf.math.log1p(-p) + offset
            labels = tf.cast(tf.reshape(y_true, (-1,)), tf.float32)
            return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)

        return binary
    shift = tf.constant(log_prior, tf.float32)

    def categorical(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        logits = tf.math.log(tf.clip_by_value(tf.cast(y_pred, tf.float32), _EPS, 1.0)) + shift
        labels = tf.cast(tf.reshape(y_true, (-1,)), tf.int32)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)

    return categorical
