"""The clients' final-evaluation counts, summed: one confusion matrix and one ROC curve for
the whole federation (multi-label: one of each per observation), built from counts only (no
client sends a per-example prediction)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from contract.errors import MalformedRequest

MAX_CLASSES = 100
MAX_THRESHOLDS = 1001
MAX_COUNT = 2**53  # exact in float64, and far from int64 overflow when summed
MAX_LABEL_CHARS = 64


@dataclass(frozen=True)
class EvaluationCounts:
    """Confusion-matrix and, for two classes, ROC counts of a final evaluation: one client's,
    or the sum over clients (``+``)."""

    confusion: np.ndarray  # (k, k) int64: rows are true classes, columns predicted
    thresholds: tuple[float, ...] = ()  # binary tasks: the ROC's fixed thresholds
    tp: np.ndarray | None = None  # true positives at each threshold (score >= t)
    fp: np.ndarray | None = None

    @classmethod
    def parse(cls, raw: object, num_examples: int) -> EvaluationCounts | MultiLabelCounts:
        """Counts from a client's JSON over its ``num_examples`` test examples (multi-label
        when it has ``per_label``), or MalformedRequest naming what is wrong."""
        if not isinstance(raw, Mapping):
            raise MalformedRequest("counts must be an object")
        if "per_label" in raw:
            return MultiLabelCounts.parse(raw, num_examples)
        return cls._parse(raw, num_examples, "counts")

    @classmethod
    def _parse(cls, raw: Mapping, num_examples: int | None, where: str) -> EvaluationCounts:
        """``num_examples`` None: any total (a label's unmasked examples, checked by the
        caller)."""
        confusion = _count_array(raw.get("confusion_matrix"), f"{where}.confusion_matrix", 2)
        k = confusion.shape[0]
        if confusion.shape != (k, k) or not 2 <= k <= MAX_CLASSES:
            raise MalformedRequest(f"{where}.confusion_matrix must be square, 2 to "
                                   f"{MAX_CLASSES} classes")
        if num_examples is not None and confusion.sum() != num_examples:
            raise MalformedRequest(f"{where}.confusion_matrix holds {confusion.sum()} "
                                   f"examples, num_examples says {num_examples}")
        roc = raw.get("roc")
        if roc is None:
            return cls(confusion)
        if not isinstance(roc, Mapping) or k != 2:
            raise MalformedRequest(f"{where}.roc is an object, for two classes only")
        thresholds = _thresholds(roc.get("thresholds"), where)
        tp = _count_array(roc.get("tp"), f"{where}.roc.tp", 1)
        fp = _count_array(roc.get("fp"), f"{where}.roc.fp", 1)
        if not len(tp) == len(fp) == len(thresholds):
            raise MalformedRequest(f"{where}.roc.tp and fp need one count per threshold")
        negatives, positives = confusion.sum(axis=1)
        for name, counted, total in (("tp", tp, positives), ("fp", fp, negatives)):
            # Predicted positive at a higher threshold is a subset of at a lower one.
            if (counted > total).any() or (np.diff(counted) > 0).any():
                raise MalformedRequest(f"{where}.roc.{name} must not grow with the threshold "
                                       f"nor exceed the {total} examples of its class")
        return cls(confusion, thresholds, tp, fp)

    def compatible(self, other: EvaluationCounts | MultiLabelCounts) -> bool:
        """Whether the two can be summed: the same classes and the same ROC thresholds."""
        return (isinstance(other, EvaluationCounts)
                and self.confusion.shape == other.confusion.shape
                and self.thresholds == other.thresholds)

    def __add__(self, other: EvaluationCounts) -> EvaluationCounts:
        roc = self.tp is not None and other.tp is not None
        return EvaluationCounts(
            self.confusion + other.confusion, self.thresholds if roc else (),
            self.tp + other.tp if roc else None, self.fp + other.fp if roc else None)

    def confusion_matrix(self) -> tuple[list[str], list[list[int]]]:
        """(categories, matrix) as KFP's ClassificationMetrics.log_confusion_matrix takes."""
        return [str(c) for c in range(self.confusion.shape[0])], self.confusion.tolist()

    def roc_curve(self) -> tuple[list[float], list[float], list[float]] | None:
        """(fpr, tpr, thresholds) as KFP's log_roc_curve takes, from the highest threshold
        (0, 0) to the lowest (1, 1); None without ROC counts."""
        if self.tp is None:
            return None
        negatives, positives = self.confusion.sum(axis=1)
        fpr = self.fp / negatives if negatives else np.zeros(len(self.fp))
        tpr = self.tp / positives if positives else np.zeros(len(self.tp))
        return (fpr[::-1].round(6).tolist(), tpr[::-1].round(6).tolist(),
                list(self.thresholds[::-1]))

    def to_json(self) -> dict:
        """The evaluation output: the confusion matrix with its categories and, with ROC
        counts, the ROC curve as ``roc_curve`` gives it."""
        categories, matrix = self.confusion_matrix()
        result: dict = {"confusion_matrix": {"categories": categories, "matrix": matrix}}
        roc = self.roc_curve()
        if roc is not None:
            result["roc"] = dict(zip(("fpr", "tpr", "thresholds"), roc, strict=True))
        return result

    def auc(self) -> float | None:
        """The area under the counted ROC curve (trapezoids between the fixed thresholds);
        None without ROC counts or without both outcomes."""
        roc = self.roc_curve()
        negatives, positives = self.confusion.sum(axis=1) if self.tp is not None else (0, 0)
        if roc is None or not negatives or not positives:
            return None
        fpr, tpr = (np.array([0.0, *values, 1.0]) for values in roc[:2])
        return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


@dataclass(frozen=True)
class MultiLabelCounts:
    """Multi-label findings: binary counts per observation, each over the examples whose
    entry for it is not masked."""

    labels: tuple[str, ...]
    per_label: tuple[EvaluationCounts, ...]

    @classmethod
    def parse(cls, raw: Mapping, num_examples: int) -> MultiLabelCounts:
        """``labels`` (names) and ``per_label`` (binary counts, one per label, each over at
        most ``num_examples``), or MalformedRequest naming what is wrong."""
        labels, entries = raw.get("labels"), raw.get("per_label")
        if not (isinstance(labels, list) and 1 <= len(labels) <= MAX_CLASSES
                and all(isinstance(n, str) and 0 < len(n) <= MAX_LABEL_CHARS for n in labels)
                and len(set(labels)) == len(labels)):
            raise MalformedRequest(f"counts.labels must be 1 to {MAX_CLASSES} distinct names "
                                   f"of at most {MAX_LABEL_CHARS} characters")
        if not isinstance(entries, list) or len(entries) != len(labels):
            raise MalformedRequest("counts.per_label needs one entry per label")
        parsed = []
        for i, entry in enumerate(entries):
            where = f"counts.per_label[{i}]"
            if not isinstance(entry, Mapping):
                raise MalformedRequest(f"{where} must be an object")
            counts = EvaluationCounts._parse(entry, None, where)
            if counts.confusion.shape != (2, 2) or counts.confusion.sum() > num_examples:
                raise MalformedRequest(f"{where}.confusion_matrix must be 2 x 2 over at most "
                                       f"num_examples={num_examples} examples")
            parsed.append(counts)
        return cls(tuple(labels), tuple(parsed))

    def compatible(self, other: EvaluationCounts | MultiLabelCounts) -> bool:
        """The same labels in the same order, each with the same ROC thresholds."""
        return (isinstance(other, MultiLabelCounts) and self.labels == other.labels
                and all(a.compatible(b) for a, b in zip(self.per_label, other.per_label,
                                                        strict=True)))

    def __add__(self, other: MultiLabelCounts) -> MultiLabelCounts:
        return MultiLabelCounts(self.labels, tuple(
            a + b for a, b in zip(self.per_label, other.per_label, strict=True)))

    def to_json(self) -> dict:
        """The evaluation output: per label its confusion matrix, ROC curve and the AUC of
        the pooled (summed) counts."""
        return {"labels": list(self.labels), "per_label": {
            name: {**counts.to_json(), "auc": counts.auc()}
            for name, counts in zip(self.labels, self.per_label, strict=True)}}


Counts = EvaluationCounts | MultiLabelCounts


def summed(counts: Iterable[Counts]) -> Counts | None:
    """The sum of every client's counts (None when no client sent any)."""
    total = None
    for item in counts:
        total = item if total is None else total + item
    return total


def _thresholds(raw: object, where: str = "counts") -> tuple[float, ...]:
    ok = (isinstance(raw, list) and 2 <= len(raw) <= MAX_THRESHOLDS
          and all(isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t <= 1
                  for t in raw)
          and all(a < b for a, b in pairwise(raw)))
    if not ok:
        raise MalformedRequest(f"{where}.roc.thresholds must be 2 to "
                               f"{MAX_THRESHOLDS} strictly ascending numbers in [0, 1]")
    return tuple(float(t) for t in raw)


def _count_array(raw: object, name: str, ndim: int) -> np.ndarray:
    try:
        array = np.asarray(raw)
    except (ValueError, TypeError, OverflowError):
        array = np.asarray(None)
    if (array.ndim != ndim or array.size == 0 or array.dtype.kind not in "iu"
            or (array < 0).any() or (array > MAX_COUNT).any()):
        raise MalformedRequest(f"{name} must be {'a list' if ndim == 1 else 'rows'} of "
                               f"integers in 0..2**53")
    return array.astype(np.int64)
