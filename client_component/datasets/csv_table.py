"""CSV tables read with pandas: one file with a label column, or a directory holding one CSV
per class (``normal.csv`` / ``abnormal.csv``, as in the hemodialysis data of the KFP sample).
Feature columns must be numeric; rows with missing or unparseable values are dropped and
counted."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from client_component.datasets.base import Dataset, DatasetError, stratified_split

log = logging.getLogger(__name__)


def csv_table(path: str | Path, label_column: str = "", seed: int = 0,
              test_fraction: float = 0.2) -> Dataset:
    """The table at ``path`` (a CSV with ``label_column``, or a directory of per-class CSVs),
    classes numbered in sorted order, split ``test_fraction`` for testing."""
    source = Path(path)
    if source.is_dir():
        frame, classes = _one_file_per_class(source)
        label_column = "__class__"
    elif source.is_file():
        if not label_column:
            raise DatasetError(f"{path}: a single CSV needs --label-column (or pass a "
                               "directory with one CSV per class)")
        frame = _read(source)
        if label_column not in frame.columns:
            raise DatasetError(f"{path}: no column {label_column!r}; columns are "
                               f"{list(frame.columns)}")
        classes = sorted(frame[label_column].dropna().astype(str).unique())
        frame[label_column] = frame[label_column].astype(str).map(
            {c: i for i, c in enumerate(classes)})
    else:
        raise DatasetError(f"CSV file or directory not found: {str(path)!r}")
    x, y = _features_and_labels(frame, label_column, str(path))
    if len(classes) < 2:
        raise DatasetError(f"{path}: need at least two classes, found {classes}")
    train, test = stratified_split(y, test_fraction, seed)
    return Dataset(source.stem, "table", x[train], y[train], x[test], y[test], len(classes),
                   class_names=classes)


def _read(file: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(file)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DatasetError(f"{file}: not a readable CSV ({exc})") from None
    if all(_is_number(c) for c in frame.columns):  # no header row: the first row is data
        frame = pd.read_csv(file, header=None)
        frame.columns = [f"f{i}" for i in range(frame.shape[1])]
    return frame


def _one_file_per_class(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    files = sorted(folder.glob("*.csv"))
    if len(files) < 2:
        raise DatasetError(f"{folder}: one CSV per class needs at least two .csv files")
    classes = [f.stem for f in files]
    frames = [_read(f).assign(__class__=i) for i, f in enumerate(files)]
    columns = {tuple(f.columns) for f in frames}
    if len(columns) > 1:
        raise DatasetError(f"{folder}: the per-class CSVs have different columns")
    return pd.concat(frames, ignore_index=True), classes


def _features_and_labels(frame: pd.DataFrame, label_column: str, where: str
                         ) -> tuple[np.ndarray, np.ndarray]:
    features = frame.drop(columns=[label_column])
    numeric = features.apply(pd.to_numeric, errors="coerce")
    text_columns = [c for c in features.columns
                    if numeric[c].isna().all() and features[c].notna().any()]
    if text_columns:
        raise DatasetError(f"{where}: non-numeric feature columns {text_columns}; encode "
                           "them as numbers or drop them")
    labels = pd.to_numeric(frame[label_column], errors="coerce")
    keep = numeric.notna().all(axis=1) & labels.notna()
    dropped = int((~keep).sum())
    if dropped:
        log.warning("event=rows_dropped source=%s bad_rows=%d kept=%d", where, dropped,
                    int(keep.sum()))
    if not keep.any():
        raise DatasetError(f"{where}: no complete numeric rows")
    return (numeric[keep].to_numpy(np.float32), labels[keep].to_numpy(np.int64))


def _is_number(text: object) -> bool:
    try:
        float(str(text))
        return True
    except ValueError:
        return False
