"""MedMNIST ``.npz`` files: ``train_images``/``train_labels``/``test_*`` (and ``val_*``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from client_component.datasets.base import Dataset, DatasetError

REQUIRED = ("train_images", "train_labels", "test_images", "test_labels")


def medmnist_npz(path: str | Path) -> Dataset:
    """A MedMNIST file's splits as they are, the images scaled to [0, 1]."""
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
    num_classes = int(max(y.max() for _, y in splits.values())) + 1
    x_val, y_val = splits.get("val", (None, None))
    return Dataset(file.stem, "image", *splits["train"], *splits["test"], num_classes,
                   x_val=x_val, y_val=y_val)


def _images(array: np.ndarray) -> np.ndarray:
    images = array.astype(np.float32) / 255.0
    return images[..., None] if images.ndim == 3 else images


def _labels(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] > 1:
        raise DatasetError("multi-label MedMNIST files (e.g. ChestMNIST) are not supported yet")
    return array.reshape(-1).astype(np.int64)
