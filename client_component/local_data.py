"""One client's share of a dataset: local train, held-out validation and test splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from client_component.data import Dataset
from client_component.partition import partition_indices


@dataclass(frozen=True)
class LocalData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    kind: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def client_shard(
    dataset: Dataset, client_id: int, num_clients: int, partition: str = "iid",
    seed: int = 0, val_fraction: float = 0.2,
) -> LocalData:
    """The client's partition of train (split again into train/val) and of test.

    Tables are standardised with the client's own training statistics: raw data and its
    statistics never leave the client.
    """
    train_idx = partition_indices(len(dataset.y_train), num_clients, partition, seed)[client_id]
    test_idx = partition_indices(len(dataset.y_test), num_clients, "iid", seed)[client_id]
    rng = np.random.default_rng(seed + 7919 * (client_id + 1))
    train_idx = rng.permutation(train_idx)
    n_val = int(round(len(train_idx) * val_fraction)) if len(train_idx) > 1 else 0
    val_idx, fit_idx = train_idx[:n_val], train_idx[n_val:]
    x_fit, x_val = dataset.x_train[fit_idx], dataset.x_train[val_idx]
    x_test = dataset.x_test[test_idx]
    if dataset.kind == "table":
        mean, std = x_fit.mean(axis=0), x_fit.std(axis=0) + 1e-6
        x_fit, x_val, x_test = ((x - mean) / std for x in (x_fit, x_val, x_test))
    return LocalData(
        x_fit, dataset.y_train[fit_idx], x_val, dataset.y_train[val_idx],
        x_test, dataset.y_test[test_idx], dataset.num_classes, dataset.kind,
    )
