"""scikit-learn's bundled Wisconsin diagnostic breast-cancer table: 569 patients, 30 features."""

from __future__ import annotations

import numpy as np

from client_component.datasets.base import Dataset, stratified_split


def breast_cancer(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """The table, split ``test_fraction`` for testing, stratified by diagnosis."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x, y = bunch.data.astype(np.float32), bunch.target.astype(np.int64)
    train, test = stratified_split(y, test_fraction, seed)
    return Dataset("breast_cancer", "table", x[train], y[train], x[test], y[test], 2,
                   class_names=[str(c) for c in bunch.target_names])
