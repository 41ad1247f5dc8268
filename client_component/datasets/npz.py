"""MedMNIST ``.npz`` files: ``train_images``/``train_labels``/``test_*`` (and ``val_*``).
Labels of shape (N, 1) are classes; (N, L) with L > 1 are multi-label findings (ChestMNIST:
14 observations of the NIH ChestX-ray14 set)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from client_component.datasets.base import Dataset, DatasetError
from client_component.datasets.labels import LABEL_DTYPE, choose_labels

REQUIRED = ("train_images", "train_labels", "test_images", "test_labels")
# MedMNIST v2's ChestMNIST label order (its INFO["chestmnist"]["label"]).
CHESTMNIST_LABELS = ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass",
                     "nodule", "pneumonia", "pneumothorax", "consolidation", "edema",
                     "emphysema", "fibrosis", "pleural", "hernia")


def medmnist_npz(path: str | Path, labels: str = "") -> Dataset:
    """A MedMNIST file's splits as they are, the images scaled to [0, 1]; of a multi-label
    file the ``labels`` chosen (comma-separated names; empty: all)."""
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"npz file not found: {str(path)!r}")
    try:
        npz = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    with npz:
        missing = sorted(set(REQUIRED) - set(npz.files))
        if missing:
            raise DatasetError(f"{path}: not a MedMNIST file, missing keys {missing} "
                               f"(has {sorted(npz.files)})")
        arrays = {key: npz[key] for key in npz.files if key.split("_")[0] in
                  ("train", "val", "test")}
    splits = {s: (_images(arrays[f"{s}_images"]), _labels(arrays[f"{s}_labels"]))
              for s in ("train", "val", "test") if f"{s}_images" in arrays}
    for split, (x, y) in splits.items():
        if len(x) != len(y):
            raise DatasetError(f"{path}: {split} has {len(x)} images but {len(y)} labels")
    widths = {y.shape[1] if y.ndim == 2 else 1 for _, y in splits.values()}
    if len(widths) > 1:
        raise DatasetError(f"{path}: the splits have different numbers of labels {widths}")
    if widths == {1}:
        if labels:
            raise DatasetError(f"{path}: labels={labels!r} is for multi-label files; this "
                               "one has one class label per image")
        num_classes = int(max(y.max() for _, y in splits.values())) + 1
        x_val, y_val = splits.get("val", (None, None))
        return Dataset(file.stem, "image", *splits["train"], *splits["test"], num_classes,
                       x_val=x_val, y_val=y_val)
    return _multi_label(file, splits, labels, widths.pop())


def _multi_label(file: Path, splits: dict, labels: str, width: int) -> Dataset:
    names = (list(CHESTMNIST_LABELS) if width == len(CHESTMNIST_LABELS)
             and file.stem.lower().startswith("chestmnist") else
             [f"label_{i}" for i in range(width)])
    chosen = choose_labels(names, labels)
    for split, (_, y) in splits.items():
        if not np.isin(y, (0, 1)).all():
            raise DatasetError(f"{file}: {split} multi-label entries must be 0 or 1")
    picked = {s: (x, y[:, chosen].astype(LABEL_DTYPE)) for s, (x, y) in splits.items()}
    x_val, y_val = picked.get("val", (None, None))
    return Dataset(file.stem, "image", *picked["train"], *picked["test"], len(chosen),
                   x_val=x_val, y_val=y_val, class_names=[names[i] for i in chosen])


def _images(array: np.ndarray) -> np.ndarray:
    images = array.astype(np.float32) / 255.0
    return images[..., None] if images.ndim == 3 else images


def _labels(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] > 1:
        return array
    return array.reshape(-1).astype(np.int64)
