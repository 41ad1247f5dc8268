"""Aggregation strategies as small pure functions over numpy arrays, plus the streaming
FedAvg accumulator the aggregator uses so that memory stays O(model size) for any N."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

NDArrays = list[np.ndarray]


def weighted_average(results: Sequence[tuple[Sequence[np.ndarray], int]]) -> NDArrays:
    """FedAvg over (weights, num_examples) pairs, as in Flower's ``aggregate``."""
    if not results:
        raise ValueError("weighted_average needs at least one result")
    total = sum(n for _, n in results)
    if total <= 0:
        raise ValueError("the example counts must sum to a positive number")
    layers = zip(*(weights for weights, _ in results), strict=True)
    counts = [n for _, n in results]
    return [
        (sum(np.asarray(layer, np.float64) * n for layer, n in zip(layer_set, counts, strict=True))
         / total).astype(layer_set[0].dtype)
        for layer_set in layers
    ]


class RunningWeightedSum:
    """Folds each update into a float64 running sum as it arrives (streaming FedAvg).

    Holds one float64 accumulator per tensor, however many clients report.
    """

    def __init__(self) -> None:
        self._sums: dict[str, np.ndarray] = {}
        self._dtypes: dict[str, np.dtype] = {}
        self.total_weight = 0

    def add(self, tensors: Mapping[str, np.ndarray], weight: int) -> None:
        if weight <= 0:
            raise ValueError(f"weight must be positive, got {weight}")
        for name, array in tensors.items():
            acc = self._sums.get(name)
            if acc is None:
                self._sums[name] = np.multiply(array, weight, dtype=np.float64)
                self._dtypes[name] = array.dtype
            else:
                # In place: no temporary of the model's size beyond the float64 product.
                acc += np.multiply(array, weight, dtype=np.float64)
        self.total_weight += weight

    def average(self) -> dict[str, np.ndarray]:
        if self.total_weight == 0:
            raise ValueError("no update was added")
        return {
            name: (acc / self.total_weight).astype(self._dtypes[name])
            for name, acc in self._sums.items()
        }
