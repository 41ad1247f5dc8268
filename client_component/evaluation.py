"""Evaluation on a split: loss, accuracy, ROC AUC, and for binary tasks sensitivity and
specificity (class 1 is the positive one, e.g. pneumonia), with scikit-learn metrics."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, roc_auc_score


def classification_metrics(y: np.ndarray, probs: np.ndarray, num_classes: int
                           ) -> dict[str, float]:
    """Metrics of class probabilities ``probs`` (N, num_classes) against labels ``y``."""
    if len(y) == 0:
        return {}
    labels = np.arange(num_classes)
    predicted = probs.argmax(axis=1)
    metrics = {
        "loss": float(log_loss(y, probs, labels=labels)),
        "accuracy": float(accuracy_score(y, predicted)),
    }
    if len(np.unique(y)) == num_classes:
        positive = probs[:, 1] if num_classes == 2 else probs
        metrics["auc"] = float(roc_auc_score(y, positive, multi_class="ovr", labels=labels))
    if num_classes == 2:
        tn, fp, fn, tp = confusion_matrix(y, predicted, labels=[0, 1]).ravel()
        if tp + fn:
            metrics["sensitivity"] = float(tp / (tp + fn))
        if tn + fp:
            metrics["specificity"] = float(tn / (tn + fp))
    return metrics


def class_probabilities(scores: np.ndarray, num_classes: int) -> np.ndarray:
    """The model's outputs as (N, num_classes) probabilities: a single sigmoid column becomes
    two; clipped away from 0 and 1 so that the log loss stays finite."""
    scores = np.clip(np.asarray(scores, np.float64), 1e-7, 1 - 1e-7)
    if num_classes == 2 and scores.shape[-1] == 1:
        return np.hstack([1.0 - scores, scores])
    return scores / scores.sum(axis=1, keepdims=True)


ROC_THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)


def count_outcomes(y: np.ndarray, probs: np.ndarray, num_classes: int) -> dict:
    """What the aggregator sums into the run's confusion matrix and ROC curve: counts only.

    The ROC is counted at fixed thresholds (0.00, 0.01, ..., 1.00) rather than from raw
    scores, so that no per-example prediction leaves the client; the summed counts give the
    curve of the pooled test splits at that resolution."""
    labels = np.arange(num_classes)
    counts: dict = {"confusion_matrix":
                    confusion_matrix(y, probs.argmax(axis=1), labels=labels).tolist()}
    if num_classes == 2:
        # Predicted positive at threshold t: score >= t. Sorted scores count that in one pass.
        positives = np.sort(probs[y == 1, 1])
        negatives = np.sort(probs[y == 0, 1])
        counts["roc"] = {
            "thresholds": ROC_THRESHOLDS.tolist(),
            "tp": _at_or_above(positives, ROC_THRESHOLDS),
            "fp": _at_or_above(negatives, ROC_THRESHOLDS),
        }
    return counts


def _at_or_above(sorted_scores: np.ndarray, thresholds: np.ndarray) -> list[int]:
    return (len(sorted_scores) - np.searchsorted(sorted_scores, thresholds, side="left")
            ).astype(int).tolist()
