"""Multi-label findings: labels of shape (N, L) with 1 (present), 0 (absent) and MASKED
(left out of the loss and the metrics), the CheXpert uncertainty policies that produce them,
and choosing which observations a run learns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from client_component.datasets.base import DatasetError
from contract.wire import label_metric_key as metric_key

MASKED = -1  # an entry that neither trains nor counts (CheXpert's "uncertain" under `ignore`)
LABEL_DTYPE = np.int8
# Irvin et al. 2019 (CheXpert), section 3: how an uncertain mention (-1) becomes a target.
UNCERTAINTY_POLICIES = ("u_ones", "u_zeros", "ignore")
_UNCERTAIN_AS = {"u_ones": 1, "u_zeros": 0, "ignore": MASKED}


def apply_uncertainty(raw: np.ndarray, policy: str) -> np.ndarray:
    """CheXpert-coded values (1 positive, 0 negative, -1 uncertain, NaN not mentioned) as
    multi-label targets: not mentioned is negative (as in the CheXpert paper's training),
    uncertain follows ``policy``."""
    if policy not in _UNCERTAIN_AS:
        raise DatasetError(f"uncertainty policy {policy!r} is not one of "
                           f"{', '.join(UNCERTAINTY_POLICIES)}")
    values = np.nan_to_num(np.asarray(raw, np.float64), nan=0.0)
    unknown = sorted(set(np.unique(values).tolist()) - {-1.0, 0.0, 1.0})
    if unknown:
        raise DatasetError(f"CheXpert labels are 1, 0, -1 or blank; found {unknown[:5]}")
    targets = values.astype(LABEL_DTYPE)
    targets[values == -1] = _UNCERTAIN_AS[policy]
    return targets


def choose_labels(names: Sequence[str], wanted: str, default: Sequence[str] = ()
                  ) -> list[int]:
    """Positions in ``names`` of the comma-separated ``wanted`` observations (case and
    spacing ignored); ``default`` (or every name) when ``wanted`` is empty."""
    requested = [w.strip() for w in wanted.split(",") if w.strip()] or list(default or names)
    by_key = {metric_key(n): i for i, n in enumerate(names)}
    missing = [w for w in requested if metric_key(w) not in by_key]
    if missing:
        raise DatasetError(f"labels {missing} are not in this dataset; it has "
                           f"{', '.join(names)}")
    positions = [by_key[metric_key(w)] for w in requested]
    if len(set(positions)) != len(positions):
        raise DatasetError(f"labels name an observation twice: {wanted!r}")
    return positions


def positive_counts(y: np.ndarray) -> list[int]:
    """Per label: how many examples have it (masked entries not counted)."""
    return (np.asarray(y) == 1).sum(axis=0).astype(int).tolist()


def partition_keys(y: np.ndarray) -> np.ndarray:
    """One key per example for label-skewed partitioning of multi-label data: its rarest
    present label (rarest over the whole dataset), or L for an example with no finding.
    Dirichlet skew then spreads each key's examples over the sites, so sites differ in which
    findings they see, as hospitals with different specialties do."""
    y = np.asarray(y)
    counts = np.asarray(positive_counts(y), np.float64)
    rarity = np.where(y == 1, counts[None, :], np.inf)
    keys = rarity.argmin(axis=1)
    keys[~np.isfinite(rarity.min(axis=1))] = y.shape[1]
    return keys.astype(np.int64)
