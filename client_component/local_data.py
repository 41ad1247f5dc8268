"""One client's share of a dataset: local train, held-out validation and test splits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from client_component.datasets import Dataset, ImageFiles
from client_component.datasets.chexpert import patient_of
from client_component.datasets.labels import partition_keys, positive_counts
from client_component.partition import partition_indices, partition_stats

log = logging.getLogger(__name__)
Features = np.ndarray | ImageFiles


@dataclass(frozen=True)
class LocalData:
    """What one client trains and evaluates on (``client_shard``); ``stats`` is its
    partition's examples and label histogram, reported to the aggregator."""

    x_train: Features
    y_train: np.ndarray
    x_val: Features
    y_val: np.ndarray
    x_test: Features
    y_test: np.ndarray
    num_classes: int  # multi-label: the number of observations L
    kind: str
    stats: dict = field(default_factory=dict)
    label_names: tuple[str, ...] = ()  # multi-label: the observations, in column order

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example, the model's input: (F,) or (H, W, C)."""
        return tuple(self.x_train.shape[1:])

    @property
    def multi_label(self) -> bool:
        """Whether each example carries ``num_classes`` findings rather than one class."""
        return self.y_train.ndim == 2


def client_shard(dataset: Dataset, client_id: int, num_clients: int, partition: str = "iid",
                 seed: int = 0, val_fraction: float = 0.2) -> LocalData:
    """The client's partition of train (by ``partition``) and its iid shares of validation
    (a held-out part of its train share when the source has no validation split) and test.

    Tables are standardised with the client's own training statistics: raw data and its
    statistics never leave the client.
    """
    keys = partition_keys(dataset.y_train) if dataset.multi_label else dataset.y_train
    parts = partition_indices(keys, num_clients, partition, seed)
    stats = _stats(dataset, parts, client_id)
    log.info("event=partition client=%d spec=%s examples=%d labels=%s", client_id, partition,
             stats["examples"], stats["labels"])
    train_idx = parts[client_id]
    x_train, y_train = dataset.x_train[train_idx], dataset.y_train[train_idx]
    if dataset.y_val is not None and len(dataset.y_val) >= num_clients:
        val_idx = partition_indices(len(dataset.y_val), num_clients, "iid", seed)[client_id]
        x_val, y_val = dataset.x_val[val_idx], dataset.y_val[val_idx]
    else:
        rng = np.random.default_rng(seed + 7919 * (client_id + 1))
        order, n_val = _held_out_order(x_train, len(y_train), val_fraction, rng)
        x_val, y_val = x_train[order[:n_val]], y_train[order[:n_val]]
        x_train, y_train = x_train[order[n_val:]], y_train[order[n_val:]]
    test_idx = partition_indices(len(dataset.y_test), num_clients, "iid", seed)[client_id]
    x_test, y_test = dataset.x_test[test_idx], dataset.y_test[test_idx]
    if dataset.kind == "table":
        mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
        x_train, x_val, x_test = ((x - mean) / std for x in (x_train, x_val, x_test))
    names = tuple(dataset.class_names) if dataset.multi_label else ()
    return LocalData(x_train, y_train, x_val, y_val, x_test, y_test, dataset.num_classes,
                     dataset.kind, stats, names)


def _held_out_order(x_train: Features, n: int, val_fraction: float, rng: np.random.Generator
                    ) -> tuple[np.ndarray, int]:
    """(an order of the n training examples, how many of its first ones are validation).
    Images of known patients (CheXpert) are held out by patient: one patient's studies never
    sit in both the site's training and validation splits."""
    patients = ([patient_of(p) for p in x_train.paths] if isinstance(x_train, ImageFiles)
                else [])
    if not patients or None in patients:
        order = rng.permutation(n)
        return order, int(round(n * val_fraction)) if n > 1 else 0
    names, group = np.unique(patients, return_inverse=True)
    shuffled = rng.permutation(len(names))
    order = np.concatenate([np.flatnonzero(group == g) for g in shuffled])
    sizes = np.cumsum(np.bincount(group, minlength=len(names))[shuffled])
    wanted = n * val_fraction if len(names) > 1 else 0
    n_val = int(sizes[np.argmin(np.abs(sizes - wanted))]) if wanted else 0
    return order, min(n_val, int(sizes[-2]) if len(names) > 1 else 0)


def _stats(dataset: Dataset, parts: list[np.ndarray], client_id: int) -> dict:
    """The client's examples and label histogram (multi-label: positives per observation)."""
    if not dataset.multi_label:
        return partition_stats(dataset.y_train, parts, dataset.num_classes)[client_id]
    part = parts[client_id]
    return {"client_id": client_id, "examples": int(len(part)),
            "labels": positive_counts(dataset.y_train[part])}
