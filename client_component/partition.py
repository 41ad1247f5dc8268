"""Simulation partitions: which examples of one dataset each client holds. Deterministic by
seed; every client gets at least one example.

- ``iid``: a shuffled even split.
- ``dirichlet:<alpha>``: label skew; each class is spread over clients by proportions drawn
  from Dirichlet(alpha) (small alpha: each client sees few classes).
- ``quantity:<beta>``: unequal sizes drawn from Dirichlet(beta), labels mixed.
"""

from __future__ import annotations

import numpy as np

PARTITIONS = ("iid", "dirichlet:<alpha>", "quantity:<beta>")


class PartitionError(ValueError):
    """A partition spec that cannot be honoured; the message names the accepted forms."""


def parse_partition(spec: str) -> tuple[str, float | None]:
    """(kind, its alpha or beta; None for iid) from a spec, or PartitionError."""
    kind, _, arg = spec.strip().partition(":")
    if kind == "iid" and not arg:
        return "iid", None
    if kind in ("dirichlet", "quantity"):
        try:
            value = float(arg)
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise PartitionError(f"partition {spec!r}: {kind} needs a positive number, "
                                 f"e.g. {kind}:0.5")
        return kind, value
    raise PartitionError(f"unknown partition {spec!r}; accepted: {', '.join(PARTITIONS)}")


def partition_indices(labels_or_count: np.ndarray | int, num_clients: int, spec: str = "iid",
                      seed: int = 0) -> list[np.ndarray]:
    """Disjoint sorted index arrays, one per client, covering every example."""
    labels = (np.zeros(labels_or_count, np.int64) if isinstance(labels_or_count, int)
              else np.asarray(labels_or_count))
    n = len(labels)
    if num_clients < 1:
        raise PartitionError(f"num_clients must be at least 1, got {num_clients}")
    if n < num_clients:
        raise PartitionError(f"{n} examples cannot give each of {num_clients} clients "
                             "at least one")
    kind, value = parse_partition(spec)
    rng = np.random.default_rng(seed)
    if kind == "iid":
        parts = np.array_split(rng.permutation(n), num_clients)
    elif kind == "quantity":
        parts = _by_proportions(rng.permutation(n), rng.dirichlet([value] * num_clients))
    else:
        parts = _label_skew(labels, num_clients, value, rng)
    return [np.sort(p) for p in _ensure_nonempty(parts, rng)]


def _by_proportions(order: np.ndarray, proportions: np.ndarray) -> list[np.ndarray]:
    cuts = (np.cumsum(proportions)[:-1] * len(order)).astype(int)
    return list(np.split(order, cuts))


def _label_skew(labels: np.ndarray, num_clients: int, alpha: float,
                rng: np.random.Generator) -> list[np.ndarray]:
    buckets: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        for client, part in enumerate(_by_proportions(members, rng.dirichlet([alpha] *
                                                                             num_clients))):
            buckets[client].append(part)
    return [np.concatenate(b) if b else np.array([], np.int64) for b in buckets]


def _ensure_nonempty(parts: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Move one example from the largest part to each empty one."""
    parts = [np.asarray(p, np.int64) for p in parts]
    for i, part in enumerate(parts):
        if len(part) == 0:
            donor = int(np.argmax([len(p) for p in parts]))
            take = int(rng.integers(len(parts[donor])))
            parts[i] = parts[donor][take:take + 1]
            parts[donor] = np.delete(parts[donor], take)
    return parts


def partition_stats(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> list[dict]:
    """Per client: number of examples and label histogram."""
    return [{"client_id": cid, "examples": int(len(p)),
             "labels": np.bincount(labels[p], minlength=num_classes).tolist()}
            for cid, p in enumerate(parts)]
