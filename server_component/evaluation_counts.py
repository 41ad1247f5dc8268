"""The clients' final-evaluation counts, summed: one confusion matrix and one ROC curve for
the whole federation, built from counts only (no client sends a per-example prediction)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from contract.errors import MalformedRequest

MAX_CLASSES = 100
MAX_THRESHOLDS = 1001
MAX_COUNT = 2**53  # exact in float64, and far from int64 overflow when summed


@dataclass(frozen=True)
class EvaluationCounts:
    """Confusion-matrix and, for two classes, ROC counts of a final evaluation: one client's,
    or the sum over clients (``+``)."""

    confusion: np.ndarray  # (k, k) int64: rows are true classes, columns predicted
    thresholds: tuple[float, ...] = ()  # binary tasks: the ROC's fixed thresholds
    tp: np.ndarray | None = None  # true positives at each threshold (score >= t)
    fp: np.ndarray | None = None

    @classmethod
    def parse(cls, raw: object, num_examples: int) -> EvaluationCounts:
        """Counts from a client's JSON over its ``num_examples`` test examples, or
        MalformedRequest naming what is wrong."""
        if not isinstance(raw, Mapping):
            raise MalformedRequest("counts must be an object")
        confusion = _count_array(raw.get("confusion_matrix"), "counts.confusion_matrix", 2)
        k = confusion.shape[0]
        if confusion.shape != (k, k) or not 2 <= k <= MAX_CLASSES:
            raise MalformedRequest("counts.confusion_matrix must be square, 2 to "
                                   f"{MAX_CLASSES} classes")
        if confusion.sum() != num_examples:
            raise MalformedRequest(f"counts.confusion_matrix holds {confusion.sum()} examples, "
                                   f"num_examples says {num_examples}")
        roc = raw.get("roc")
        if roc is None:
            return cls(confusion)
        if not isinstance(roc, Mapping) or k != 2:
            raise MalformedRequest("counts.roc is an object, for two classes only")
        thresholds = _thresholds(roc.get("thresholds"))
        tp = _count_array(roc.get("tp"), "counts.roc.tp", 1)
        fp = _count_array(roc.get("fp"), "counts.roc.fp", 1)
        if not len(tp) == len(fp) == len(thresholds):
            raise MalformedRequest("counts.roc.tp and fp need one count per threshold")
        negatives, positives = confusion.sum(axis=1)
        for name, counted, total in (("tp", tp, positives), ("fp", fp, negatives)):
            # Predicted positive at a higher threshold is a subset of at a lower one.
            if (counted > total).any() or (np.diff(counted) > 0).any():
                raise MalformedRequest(f"counts.roc.{name} must not grow with the threshold "
                                       f"nor exceed the {total} examples of its class")
        return cls(confusion, thresholds, tp, fp)

    def compatible(self, other: EvaluationCounts) -> bool:
        """Whether the two can be summed: the same classes and the same ROC thresholds."""
        return (self.confusion.shape == other.confusion.shape
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


def summed(counts: Iterable[EvaluationCounts]) -> EvaluationCounts | None:
    """The sum of every client's counts (None when no client sent any)."""
    total = None
    for item in counts:
        total = item if total is None else total + item
    return total


def _thresholds(raw: object) -> tuple[float, ...]:
    ok = (isinstance(raw, list) and 2 <= len(raw) <= MAX_THRESHOLDS
          and all(isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t <= 1
                  for t in raw)
          and all(a < b for a, b in pairwise(raw)))
    if not ok:
        raise MalformedRequest("counts.roc.thresholds must be 2 to "
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
