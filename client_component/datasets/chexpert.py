"""The CheXpert layout (Irvin et al. 2019): a folder with ``train.csv`` and ``valid.csv``
(and optionally ``test.csv``), a ``Path`` column naming each image relative to the folder or
to its parent (``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``), and one
column per observation holding 1, 0, -1 (uncertain) or blank (not mentioned).

``valid.csv`` (radiologist-labelled) is the test split unless a ``test.csv`` exists, in which
case it is the validation split; without either, a fifth of the patients is held out for
testing (split by patient: one patient's studies never sit on both sides)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from client_component.datasets.base import Dataset, DatasetError, ImageFiles
from client_component.datasets.labels import apply_uncertainty, choose_labels

log = logging.getLogger(__name__)
NOT_OBSERVATIONS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
# The five observations of the CheXpert competition, evaluated in the paper.
COMPETITION_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
                      "Pleural Effusion")
_PATIENT = re.compile(r"patient\d+")


def chexpert(root: str | Path, labels: str = "", uncertainty: str = "u_ones",
             image_size: int = 28, channels: int = 1, seed: int = 0,
             test_fraction: float = 0.2) -> Dataset:
    """The folder's splits as lazily decoded images with (N, L) targets: the ``labels``
    chosen (default: the five competition observations), uncertain mentions per
    ``uncertainty`` (u_ones, u_zeros, ignore)."""
    base = Path(root)
    if not (base / "train.csv").is_file():
        raise DatasetError(f"{root}: not a CheXpert folder (no train.csv)")
    frames = {name: _read(base / f"{name}.csv") for name in ("train", "valid", "test")
              if (base / f"{name}.csv").is_file()}
    names = [c for c in frames["train"].columns if c not in NOT_OBSERVATIONS]
    default = COMPETITION_LABELS if set(COMPETITION_LABELS) <= set(names) else names
    chosen = [names[i] for i in choose_labels(names, labels, default)]

    def split(frame: pd.DataFrame, name: str) -> tuple[ImageFiles, np.ndarray]:
        missing = [c for c in chosen if c not in frame.columns]
        if missing:
            raise DatasetError(f"{root}: {name}.csv has no column(s) {missing}")
        paths, keep = _image_paths(base, frame["Path"].astype(str), name)
        targets = apply_uncertainty(frame.loc[keep, chosen].to_numpy(np.float64), uncertainty)
        return ImageFiles(np.array(paths, dtype=object), image_size, channels), targets

    if "test" in frames:
        parts = {"train": split(frames["train"], "train"), "test": split(frames["test"], "test")}
        if "valid" in frames:
            parts["val"] = split(frames["valid"], "valid")
    elif "valid" in frames:
        parts = {"train": split(frames["train"], "train"), "test": split(frames["valid"], "valid")}
    else:
        parts = _patient_split(*split(frames["train"], "train"), test_fraction, seed)
    x_val, y_val = parts.get("val", (None, None))
    return Dataset(base.name, "image", *parts["train"], *parts["test"], len(chosen),
                   x_val=x_val, y_val=y_val, class_names=chosen)


def patient_of(path: str) -> str | None:
    """The patient an image belongs to (``patient00001`` in CheXpert paths), or None."""
    found = _PATIENT.search(path)
    return found.group(0) if found else None


def _read(file: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(file)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{file}: not a readable CSV ({exc})") from None
    if "Path" not in frame.columns:
        raise DatasetError(f"{file}: no Path column; columns are {list(frame.columns)}")
    return frame


def _image_paths(base: Path, relative: pd.Series, name: str) -> tuple[list[str], np.ndarray]:
    """Each row's image file (relative to the folder, or to its parent as in the official
    CSVs); rows whose file is missing are dropped and counted."""
    found, keep = [], np.zeros(len(relative), bool)
    for i, rel in enumerate(relative):
        for candidate in (base / rel, base.parent / rel):
            if candidate.is_file():
                found.append(str(candidate))
                keep[i] = True
                break
    if not found:
        raise DatasetError(f"{base}: none of the {len(relative)} images of {name}.csv exists "
                           f"(e.g. {relative.iloc[0] if len(relative) else '-'})")
    if not keep.all():
        log.warning("event=images_missing split=%s missing=%d of=%d", name,
                    int((~keep).sum()), len(keep))
    return found, keep


def _patient_split(files: ImageFiles, y: np.ndarray, test_fraction: float, seed: int
                   ) -> dict[str, tuple[ImageFiles, np.ndarray]]:
    from sklearn.model_selection import GroupShuffleSplit

    groups = [patient_of(p) or p for p in files.paths]
    if len(set(groups)) < 2:
        raise DatasetError("a CheXpert folder without valid.csv needs images of at least two "
                           "patients to hold some out for testing")
    train, test = next(GroupShuffleSplit(1, test_size=test_fraction, random_state=seed)
                       .split(y, groups=groups))
    train, test = np.sort(train), np.sort(test)
    return {"train": (files[train], y[train]), "test": (files[test], y[test])}
