"""Image folders: ``<root>/<split>/<class>/*.png|jpg|jpeg`` (the Kaggle chest_xray layout) or
``<root>/<class>/...``. Files are checked at load time and decoded with Pillow in batches at
training time; corrupt or non-image files are skipped and counted, never a crash."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from client_component.datasets.base import Dataset, DatasetError, ImageFiles, stratified_split

log = logging.getLogger(__name__)
EXTENSIONS = {".png", ".jpg", ".jpeg"}
SPLITS = ("train", "val", "test")


def image_folder(root: str | Path, image_size: int = 28, channels: int = 1, seed: int = 0,
                 test_fraction: float = 0.2) -> Dataset:
    """The images under ``root``, classes in sorted folder order; the folder's own train/test
    (and val) splits if it has them, else a ``test_fraction`` split."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"image folder not found: {str(root)!r}")
    if channels not in (1, 3):
        raise DatasetError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    split_dirs = {s: base / s for s in SPLITS if (base / s).is_dir()}
    layout = split_dirs if {"train", "test"} <= set(split_dirs) else {"all": base}
    classes = sorted({d.name for folder in layout.values() for d in folder.iterdir()
                      if d.is_dir()})
    if len(classes) < 2:
        raise DatasetError(f"{root}: need at least two class folders, found {classes}")
    scanned = {split: _scan(folder, classes) for split, folder in layout.items()}

    def files(paths: list[str]) -> ImageFiles:
        return ImageFiles(np.array(paths, dtype=object), image_size, channels)

    if "all" in scanned:
        paths, labels = scanned["all"]
        train, test = stratified_split(labels, test_fraction, seed)
        parts = {"train": (files(list(np.array(paths, dtype=object)[train])), labels[train]),
                 "test": (files(list(np.array(paths, dtype=object)[test])), labels[test])}
    else:
        parts = {split: (files(p), y) for split, (p, y) in scanned.items()}
    x_val, y_val = parts.get("val", (None, None))
    return Dataset(base.name, "image", *parts["train"], *parts["test"], len(classes),
                   x_val=x_val, y_val=y_val, class_names=classes)


def _scan(folder: Path, classes: list[str]) -> tuple[list[str], np.ndarray]:
    paths, labels, skipped = [], [], 0
    for label, name in enumerate(classes):
        for file in sorted((folder / name).glob("*")) if (folder / name).is_dir() else []:
            if file.suffix.lower() not in EXTENSIONS:
                continue
            if _is_image(file):
                paths.append(str(file))
                labels.append(label)
            else:
                skipped += 1
    if skipped:
        log.warning("event=images_skipped folder=%s corrupt_or_not_images=%d", folder, skipped)
    if not paths:
        raise DatasetError(f"{folder}: no readable .png/.jpg/.jpeg images under {classes}")
    return paths, np.array(labels, dtype=np.int64)


def _is_image(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


def decode_images(files: ImageFiles) -> np.ndarray:
    """Decode, convert and resize ``files`` to float32 in [0, 1], shape (N, H, W, C).
    A file that fails to decode now (truncated data) becomes a blank image, logged."""
    out = np.zeros(files.shape, dtype=np.float32)
    mode = "L" if files.channels == 1 else "RGB"
    for i, path in enumerate(files.paths):
        try:
            with Image.open(path) as image:
                resized = image.convert(mode).resize((files.image_size, files.image_size))
            array = np.asarray(resized, dtype=np.float32) / 255.0
            out[i] = array[..., None] if files.channels == 1 else array
        except (OSError, ValueError) as exc:
            log.warning("event=image_decode_failed path=%s error=%s", path, exc)
    return out
