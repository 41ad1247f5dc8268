"""Simulation partitions: which examples of one dataset each client holds (by seed)."""

from __future__ import annotations

import numpy as np

PARTITIONS = ("iid",)


class PartitionError(ValueError):
    """A partition spec that cannot be honoured; the message names the accepted forms."""


def partition_indices(
    num_examples: int, num_clients: int, spec: str = "iid", seed: int = 0
) -> list[np.ndarray]:
    """Disjoint index arrays, one per client, covering all examples; deterministic by seed."""
    if num_clients < 1:
        raise PartitionError(f"num_clients must be at least 1, got {num_clients}")
    if num_examples < num_clients:
        raise PartitionError(
            f"{num_examples} examples cannot give each of {num_clients} clients at least one"
        )
    if spec != "iid":
        raise PartitionError(f"unknown partition {spec!r}; accepted: {', '.join(PARTITIONS)}")
    order = np.random.default_rng(seed).permutation(num_examples)
    return [np.sort(part) for part in np.array_split(order, num_clients)]
