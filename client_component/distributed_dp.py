"""Client-level DP under secure aggregation (``dp=client`` with ``secure_aggregation=secagg``):
the aggregator never sees one update, so each client clips its own and adds its share of the
round's noise before masking; the unmasked sum then carries the whole noise.

Each client adds Gaussian noise of standard deviation ``noise_multiplier x clip_norm /
sqrt(t)``, t the secure-aggregation threshold: a round unmasks only with at least t survivors,
so the sum carries at least the variance of the central mechanism (``noise_multiplier x
clip_norm`` squared) with up to N - t dropouts. Clients that collude with the aggregator know
their own shares: against c colluders the noise multiplier falls to
``noise_multiplier x sqrt((t - c) / t)`` (README: Differential privacy).
"""

from __future__ import annotations

import math

import numpy as np


def clipped_noised(update: list[np.ndarray], clip_norm: float, noise_multiplier: float,
                   threshold: int, rng: np.random.Generator | None = None
                   ) -> tuple[list[np.ndarray], float]:
    """(the update clipped to L2 norm ``clip_norm`` plus this client's noise share, the
    update's norm before clipping). The noise comes from the OS's entropy unless ``rng``."""
    rng = rng or np.random.default_rng()
    norm = math.sqrt(sum(float(np.sum(np.square(u, dtype=np.float64))) for u in update))
    factor = min(1.0, clip_norm / max(norm, 1e-12))
    std = noise_multiplier * clip_norm / math.sqrt(threshold)
    return [u * factor + rng.normal(0.0, std, size=u.shape) for u in update], norm
