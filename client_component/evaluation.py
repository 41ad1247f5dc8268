"""Evaluation of a model on a split: loss, accuracy and ROC AUC (scikit-learn metrics)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score


def evaluate(model, x: np.ndarray, y: np.ndarray, num_classes: int) -> dict[str, float]:
    """Metrics of ``model`` on (x, y); AUC is left out when only one class is present."""
    if len(y) == 0:
        return {}
    scores = model.predict(x, verbose=0, batch_size=1024)
    probs = _class_probabilities(scores, num_classes)
    labels = np.arange(num_classes)
    metrics = {
        "loss": float(log_loss(y, probs, labels=labels)),
        "accuracy": float(accuracy_score(y, probs.argmax(axis=1))),
    }
    if len(np.unique(y)) == num_classes:
        positive = probs[:, 1] if num_classes == 2 else probs
        metrics["auc"] = float(roc_auc_score(y, positive, multi_class="ovr", labels=labels))
    return metrics


def _class_probabilities(scores: np.ndarray, num_classes: int) -> np.ndarray:
    scores = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
    if num_classes == 2 and scores.shape[-1] == 1:
        return np.hstack([1.0 - scores, scores])
    return scores / scores.sum(axis=1, keepdims=True)
