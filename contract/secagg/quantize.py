"""Clipping and quantisation: each client's example-weighted update as integers mod 2^32.

A client with ``n`` examples and update (new weights - served weights) ``d`` sends
q = round(n * clip(d, -C, C) * S) mod 2^32, then n itself, then round(n * clip(m, -100, 100)
* S_m) for each validation metric m. The scale S = floor((2^31 - 1 - N) / (N * n_max * C)) keeps
the sum of N clients' values, each with n <= n_max examples, inside a signed 32-bit integer,
so the unmasked sum mod 2^32, read as int32, is exactly the sum of the integers: the
FedAvg numerator sum(n_i d_i) and denominator sum(n_i). Rounding costs at most half a step per
client, so each coordinate of the averaged update is off by at most N_round / (2 S W) for W =
sum(n_i) examples in the round (``error_bound``); coordinates beyond +-C are clipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

INT32_MAX = 2**31 - 1
METRIC_CLIP = 100.0  # validation metrics (AUC, accuracy, a loss) are well inside +-100


class QuantisationError(ValueError):
    """Settings whose scale would be below one step, or a site over ``max_examples``."""


@dataclass(frozen=True)
class Quantizer:
    """The integer encoding of one run (its clip ``clip``, per-site bound ``max_examples``)."""

    clip: float
    max_examples: int
    num_clients: int

    def __post_init__(self) -> None:
        if self.clip <= 0 or self.max_examples < 1:
            raise QuantisationError("secagg_clip must be > 0 and secagg_max_examples >= 1")
        if self.scale < 1 or self.metric_scale < 1:
            raise QuantisationError(
                f"{self.num_clients} clients x {self.max_examples} examples x clip "
                f"{self.clip:g} do not fit 32-bit sums: lower secagg_max_examples or "
                "secagg_clip")

    @property
    def scale(self) -> float:
        """Integer steps per unit of an example-weighted update coordinate."""
        return float(math.floor(self._room / (self.max_examples * self.clip)))

    @property
    def metric_scale(self) -> float:
        """Integer steps per unit of an example-weighted metric."""
        return float(math.floor(self._room / (self.max_examples * METRIC_CLIP)))

    @property
    def _room(self) -> float:
        return (INT32_MAX - self.num_clients) / self.num_clients

    def error_bound(self, clients: int, total_weight: int) -> float:
        """The largest error quantisation adds to a coordinate of the averaged update."""
        return clients / (2 * self.scale * total_weight)

    def encode(self, update: Sequence[np.ndarray], weight: int, metrics: Sequence[float]
               ) -> tuple[np.ndarray, int]:
        """The vector a client masks: the weighted update, its weight, its weighted metrics;
        and how many coordinates were clipped."""
        if not 1 <= weight <= self.max_examples:
            raise QuantisationError(f"a site with {weight} examples is outside 1.."
                                    f"{self.max_examples} (secagg_max_examples)")
        size = sum(int(np.size(a)) for a in update)
        vector = np.empty(size + 1 + len(metrics), np.uint32)
        start, clipped = 0, 0
        for array in update:
            flat = np.ravel(np.asarray(array, np.float64))
            clipped += int(np.count_nonzero(np.abs(flat) > self.clip))
            vector[start:start + flat.size] = _to_words(flat, self.clip, weight * self.scale)
            start += flat.size
        vector[size] = weight
        vector[size + 1:] = _to_words(np.asarray(metrics, np.float64), METRIC_CLIP,
                                      weight * self.metric_scale)
        return vector, clipped

    def decode(self, total: np.ndarray, num_metrics: int
               ) -> tuple[np.ndarray, int, np.ndarray]:
        """(sum of n_i d_i as float64, total weight, sum of n_i m_i) from the unmasked sum."""
        signed = total.view(np.int32)
        size = total.size - 1 - num_metrics
        weight = int(total[size])
        update = signed[:size].astype(np.float64) / self.scale
        metrics = signed[size + 1:].astype(np.float64) / self.metric_scale
        return update, weight, metrics


def _to_words(values: np.ndarray, clip: float, factor: float) -> np.ndarray:
    """round(clip(values) * factor) as two's-complement uint32 words."""
    scaled = np.rint(np.clip(values, -clip, clip) * factor)
    return scaled.astype(np.int64).astype(np.uint32)
