"""Partitions: sizes, determinism, every client served, and label skew measured."""

import numpy as np
import pytest

from client_component.partition import partition_indices, partition_stats


def labels(n=1000, classes=2, seed=0):
    return np.random.default_rng(seed).integers(0, classes, n)


@pytest.mark.parametrize("spec", ["iid", "dirichlet:0.5", "dirichlet:0.05", "quantity:0.3"])
def test_every_spec_is_disjoint_complete_deterministic_and_serves_everyone(spec):
    y = labels()
    parts = partition_indices(y, 10, spec, seed=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(y)))
    assert min(len(p) for p in parts) >= 1
    again = partition_indices(y, 10, spec, seed=3)
    assert all((a == b).all() for a, b in zip(parts, again, strict=True))


def _dominant_share(y, parts):
    return np.mean([np.bincount(y[p], minlength=2).max() / len(p) for p in parts])


def test_dirichlet_skews_labels_more_as_alpha_shrinks():
    y = labels(4000)
    iid = _dominant_share(y, partition_indices(y, 8, "iid", seed=0))
    mild = _dominant_share(y, partition_indices(y, 8, "dirichlet:1.0", seed=0))
    strong = _dominant_share(y, partition_indices(y, 8, "dirichlet:0.1", seed=0))
    assert iid < 0.56 and iid < mild < strong and strong > 0.85


def test_quantity_makes_unequal_sizes_with_mixed_labels():
    y = labels(4000)
    sizes = [len(p) for p in partition_indices(y, 8, "quantity:0.5", seed=1)]
    iid_sizes = [len(p) for p in partition_indices(y, 8, "iid", seed=1)]
    assert np.std(sizes) > 10 * np.std(iid_sizes) + 50
    assert _dominant_share(y, partition_indices(y, 8, "quantity:0.5", seed=1)) < 0.6


def test_stats_report_examples_and_label_histograms():
    y = np.array([0, 0, 1, 1, 1, 0])
    stats = partition_stats(y, [np.array([0, 2]), np.array([1, 3, 4, 5])], 2)
    assert stats == [{"client_id": 0, "examples": 2, "labels": [1, 1]},
                     {"client_id": 1, "examples": 4, "labels": [2, 2]}]


def test_tiny_sets_still_give_each_client_one_example():
    parts = partition_indices(np.array([0, 0, 0, 1, 1]), 5, "dirichlet:0.01", seed=0)
    assert sorted(len(p) for p in parts) == [1, 1, 1, 1, 1]
