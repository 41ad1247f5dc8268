"""A tiny two-class image set (bright top half vs bottom half), for smoke tests only."""

from __future__ import annotations

import numpy as np

from client_component.datasets.base import Dataset


def synthetic_images(seed: int = 0, n: int = 240, size: int = 8) -> Dataset:
    """``n`` noisy ``size`` x ``size`` grayscale images, the first 80% for training."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    x = rng.normal(0.0, 0.3, size=(n, size, size, 1)).astype(np.float32)
    half = size // 2
    x[y == 0, :half] += 1.0
    x[y == 1, half:] += 1.0
    split = int(n * 0.8)
    return Dataset("synthetic", "image", x[:split], y[:split], x[split:], y[split:], 2,
                   class_names=["top", "bottom"])
