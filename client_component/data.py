"""Datasets a client can train on, all loaded into one in-memory form: ``Dataset``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("breast_cancer", "synthetic", "npz")


class DatasetError(ValueError):
    """The dataset named or pointed at cannot be loaded; the message says why."""


@dataclass(frozen=True)
class Dataset:
    """Train and test splits; ``kind`` is "table" (N, F) or "image" (N, H, W, C)."""

    name: str
    kind: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


def load_dataset(name: str, data_uri: str = "", seed: int = 0) -> Dataset:
    if name == "breast_cancer":
        return breast_cancer(seed)
    if name == "synthetic":
        return synthetic_images(seed)
    if name == "npz":
        return medmnist_npz(data_uri)
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def breast_cancer(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's bundled Wisconsin diagnostic breast-cancer table (569 x 30, real)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x.astype(np.float32), y.astype(np.int64), test_size=test_fraction,
        random_state=seed, stratify=y,
    )
    return Dataset("breast_cancer", "table", x_train, y_train, x_test, y_test, num_classes=2)


def synthetic_images(seed: int = 0, n: int = 240, size: int = 8) -> Dataset:
    """A tiny two-class image set (bright top half vs bottom half), for smoke tests only."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    x = rng.normal(0.0, 0.3, size=(n, size, size, 1)).astype(np.float32)
    half = size // 2
    x[y == 0, :half] += 1.0
    x[y == 1, half:] += 1.0
    split = int(n * 0.8)
    return Dataset("synthetic", "image", x[:split], y[:split], x[split:], y[split:], 2)


def medmnist_npz(path: str) -> Dataset:
    """A MedMNIST ``.npz`` (``train_images``/``train_labels``/``test_*``), scaled to [0, 1]."""
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"npz file not found: {path!r}")
    with np.load(file, allow_pickle=False) as npz:
        missing = {"train_images", "train_labels", "test_images", "test_labels"} - set(npz.files)
        if missing:
            raise DatasetError(f"{path}: not a MedMNIST file, missing keys {sorted(missing)}")
        arrays = {key: npz[key] for key in ("train_images", "train_labels",
                                            "test_images", "test_labels")}
    x_train, x_test = (_images(arrays[k]) for k in ("train_images", "test_images"))
    y_train, y_test = (arrays[k].reshape(-1).astype(np.int64) for k in ("train_labels",
                                                                         "test_labels"))
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    return Dataset(file.stem, "image", x_train, y_train, x_test, y_test, num_classes)


def _images(array: np.ndarray) -> np.ndarray:
    images = array.astype(np.float32) / 255.0
    return images[..., None] if images.ndim == 3 else images
