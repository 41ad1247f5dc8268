"""Evaluation on a split: loss, accuracy, ROC AUC, and for binary tasks sensitivity and
specificity (class 1 is the positive one, e.g. pneumonia), with scikit-learn metrics.
Multi-label findings get the same per observation (``auc_<label>``, ...) and the macro AUC
(``auc`` and ``macro_auc``: the mean over observations that have both outcomes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, roc_auc_score

from client_component.datasets.labels import MASKED, metric_key


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


def multi_label_metrics(y: np.ndarray, scores: np.ndarray, names: Sequence[str]
                        ) -> dict[str, float]:
    """Metrics of sigmoid ``scores`` (N, L) against targets ``y`` (N, L; MASKED entries left
    out): masked loss and accuracy over all entries, then per observation AUC, sensitivity
    and specificity, and the macro AUC; a score above 0.5 is a positive call, as in
    ``count_outcomes``."""
    known = y != MASKED
    if len(y) == 0 or not known.any():
        return {}
    p = np.clip(np.asarray(scores, np.float64), 1e-7, 1 - 1e-7)
    entries = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    metrics = {"loss": float(entries[known].mean()),
               "accuracy": float(((p > 0.5) == (y == 1))[known].mean())}
    aucs = []
    for column, name in enumerate(names):
        mask = known[:, column]
        truth, score = y[mask, column], p[mask, column]
        key = metric_key(name)
        if len(np.unique(truth)) == 2:
            aucs.append(float(roc_auc_score(truth, score)))
            metrics[f"auc_{key}"] = aucs[-1]
        if (truth == 1).any():
            metrics[f"sensitivity_{key}"] = float((score[truth == 1] > 0.5).mean())
        if (truth == 0).any():
            metrics[f"specificity_{key}"] = float((score[truth == 0] <= 0.5).mean())
    if aucs:
        metrics["auc"] = metrics["macro_auc"] = float(np.mean(aucs))
    return metrics


def count_multi_label_outcomes(y: np.ndarray, scores: np.ndarray, names: Sequence[str]
                               ) -> dict:
    """Per observation, what ``count_outcomes`` gives a binary task (a 2x2 confusion matrix
    at 0.5 and ROC counts at fixed thresholds), over the entries that are not MASKED."""
    per_label = []
    for column in range(len(names)):
        mask = y[:, column] != MASKED
        score = np.clip(np.asarray(scores[mask, column], np.float64), 0.0, 1.0)
        per_label.append(count_outcomes(y[mask, column].astype(np.int64),
                                        np.column_stack([1.0 - score, score]), 2))
    return {"labels": list(names), "per_label": per_label}
