"""Multi-label files in the real formats, for the tests and ``make bench-multilabel`` (no
package on the registries ships ChestMNIST or CheXpert; both are downloads behind a
licence): a ChestMNIST-layout ``.npz`` and a CheXpert-layout folder (PNGs plus
``train.csv``/``valid.csv`` with 1/0/-1/blank). The films are noise; each finding is drawn
into them as a bright patch in its own place, and only in 80 % of the films that have it, so
the labels can be learnt but not perfectly.

``python -m bench.multilabel_files OUT.npz`` writes the benchmark's file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from client_component.datasets.npz import CHESTMNIST_LABELS

CHEXPERT_COLUMNS = ("No Finding", "Cardiomegaly", "Edema", "Consolidation", "Atelectasis",
                    "Pleural Effusion")


def films(labels: np.ndarray, size: int = 28, seed: int = 0) -> np.ndarray:
    """uint8 (N, size, size) films: noise, plus a patch per present finding (visible in
    80 % of the films that have it)."""
    rng = np.random.default_rng(seed)
    n, count = labels.shape
    images = rng.normal(90, 30, (n, size, size))
    cells = int(np.ceil(np.sqrt(count)))
    step = size // cells
    for column in range(count):
        top, left = (column // cells) * step, (column % cells) * step
        shown = (labels[:, column] == 1) & (rng.random(n) < 0.8)
        images[shown, top:top + step - 1, left:left + step - 1] += 70
    return np.clip(images, 0, 255).astype(np.uint8)


def findings(n: int, count: int, seed: int, rate: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, count)) < rate).astype(np.uint8)


def write_chestmnist(path: Path, train: int = 400, val: int = 100, test: int = 200,
                     size: int = 28) -> Path:
    """A ``chestmnist``-named npz with 14 labels of shape (N, 14), as MedMNIST ships it."""
    arrays = {}
    for offset, (split, n) in enumerate((("train", train), ("val", val), ("test", test))):
        labels = findings(n, len(CHESTMNIST_LABELS), seed=10 + offset)
        arrays[f"{split}_images"] = films(labels, size, seed=20 + offset)
        arrays[f"{split}_labels"] = labels
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def write_chexpert(root: Path, train: int = 60, valid: int = 20, size: int = 32,
                   uncertain_rate: float = 0.1, seed: int = 0) -> Path:
    """``root`` = ``CheXpert-v1.0-small``: PNGs under train/ and valid/ with the official
    CSV columns; Path is relative to the folder's parent, as in the official CSVs; some
    entries uncertain (-1) and some blank."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("valid", valid)):
        labels = findings(n, len(CHEXPERT_COLUMNS), seed=seed + len(split))
        images = films(labels, size, seed=seed + 1)
        rows = []
        for i in range(n):
            relative = f"{root.name}/{split}/patient{i // 2:05d}/study1/view{i % 2 + 1}_frontal.png"
            (root.parent / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(root.parent / relative)
            values: list[object] = [float(v) for v in labels[i]]
            for column in range(len(values)):
                draw = rng.random()
                if draw < uncertain_rate:
                    values[column] = -1.0
                elif draw < 2 * uncertain_rate and values[column] == 0.0:
                    values[column] = None  # not mentioned
            rows.append([relative, "Female", 60, "Frontal", "PA", *values])
        frame = pd.DataFrame(rows, columns=["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA",
                                            *CHEXPERT_COLUMNS])
        frame.to_csv(root / f"{split}.csv", index=False)
    return root


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/chestmnist_written.npz")
    print(write_chestmnist(target, train=3000, val=500, test=1000))
