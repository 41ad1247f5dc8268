"""The loss of multi-label findings: one binary cross-entropy per observation (a sigmoid
unit each), averaged over the entries an example really has: entries marked MASKED (an
uncertain CheXpert mention under `ignore`) neither train nor count.

With logit adjustment the site's own prior of each observation shifts that unit's logit
(``label_prior``'s idea, label by label), so a site that rarely sees a finding does not
teach the shared model that it is rare."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from client_component.datasets.labels import MASKED

_EPS = 1e-7


def label_log_odds(y: np.ndarray) -> np.ndarray:
    """Per observation: log odds of its add-one-smoothed local frequency (masked left out)."""
    y = np.asarray(y)
    positives, known = (y == 1).sum(axis=0), (y != MASKED).sum(axis=0)
    prior = (positives + 1.0) / (known + 2.0)
    return np.log(prior) - np.log1p(-prior)


def multi_label_loss(log_odds: np.ndarray | None = None
                     ) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Per-example masked binary cross-entropy of sigmoid outputs ``y_pred`` (N, L) against
    targets ``y_true`` (N, L) of 1, 0 or MASKED; ``log_odds`` shift each logit."""
    shift = tf.constant(np.zeros(1) if log_odds is None else log_odds, tf.float32)

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        targets = tf.cast(y_true, tf.float32)
        p = tf.clip_by_value(tf.cast(y_pred, tf.float32), _EPS, 1 - _EPS)
        logits = tf.math.log(p) - tf.math.log1p(-p) + shift
        known = tf.cast(tf.not_equal(targets, MASKED), tf.float32)
        entries = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets * known, logits=logits)
        return tf.reduce_sum(entries * known, axis=-1) / tf.maximum(
            tf.reduce_sum(known, axis=-1), 1.0)

    return loss
