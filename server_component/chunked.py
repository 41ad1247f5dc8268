"""Whole-model numpy operations done a chunk at a time, so that their temporaries stay a few
MiB instead of one model size each (the aggregator's memory target is a small multiple of
the model, see bench.memory)."""

from __future__ import annotations

import numpy as np

CHUNK = 1 << 18  # elements per step (2 MiB of float64)


def add_scaled(acc: np.ndarray, values: np.ndarray, weight: int, scratch: np.ndarray) -> None:
    """``acc += values * weight`` in float64, through a bounded scratch buffer."""
    for start in range(0, values.size, scratch.size):
        stop = min(start + scratch.size, values.size)
        part = scratch[:stop - start]
        np.multiply(values[start:stop], weight, out=part, dtype=np.float64)
        acc[start:stop] += part


def all_finite(array: np.ndarray) -> bool:
    """``np.isfinite(array).all()`` without a model-sized boolean temporary."""
    flat = np.ravel(array)
    return all(np.isfinite(flat[i:i + CHUNK]).all() for i in range(0, flat.size, CHUNK))
