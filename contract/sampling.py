"""Which clients train in a round: Flower's ``fraction_fit`` and ``min_fit_clients``.

Each round the aggregator samples ``max(int(N x fraction_fit), min_fit_clients, 1)`` of
the N clients without replacement, from a generator seeded with the run's ``seed`` and the
round number: the same run draws the same samples, and a restarted aggregator draws the
resumed round's sample again. With client-level differential privacy each client is instead
taken independently with probability ``fraction_fit`` (Poisson sampling, as in DP-FedAvg),
drawn from the operating system's entropy: the privacy amplification by sampling that the
accountant credits holds only if no one can predict the sample, and a seed in the run's
parameters would let anyone. The aggregator announces each round's sample in
``/v1/status`` (``selected``); a client not in it waits for the next round.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from contract.settings import Namer, at_least, setting


def fraction_setting():
    """``fraction_fit``: the share of the clients sampled each round."""
    return setting(1.0, "share of the clients that train each round (Flower's fraction_fit): "
                   "max(int(num_clients x fraction_fit), min_fit_clients, 1) sampled per round, "
                   "seeded by seed; 1: all", check=_fraction)


def min_fit_setting():
    """``min_fit_clients``: the fewest clients sampled each round."""
    return setting(0, "fewest clients sampled each round when fraction_fit < 1 (Flower's "
                   "min_fit_clients)", check=at_least(0))


def sampling_problem(values: Mapping, name: Namer) -> str | None:
    """Refuse a ``min_fit_clients`` above ``num_clients``."""
    if values["min_fit_clients"] > values["num_clients"]:
        return (f"{name('min_fit_clients')} must be at most {name('num_clients')}="
                f"{values['num_clients']}, got {values['min_fit_clients']}")
    return None


CROSS_NAMES = ("min_fit_clients", "num_clients")


@dataclass(frozen=True)
class ClientSampling:
    """How a run picks each round's clients."""

    num_clients: int
    fraction: float = 1.0
    min_clients: int = 0
    seed: int = 0
    poisson: bool = False  # each client with probability ``fraction``, unseeded (client-level DP)

    @property
    def everyone(self) -> bool:
        """True when every client trains every round (no sampling)."""
        return self.fraction >= 1.0

    @property
    def sample_size(self) -> int:
        """Clients per round (its expectation, rounded down, under Poisson sampling)."""
        if self.everyone:
            return self.num_clients
        return min(self.num_clients,
                   max(int(self.num_clients * self.fraction), self.min_clients, 1))

    @property
    def expected_clients(self) -> float:
        """The expected number of clients per round: DP-FedAvg's fixed denominator."""
        if self.poisson and not self.everyone:
            return self.num_clients * self.fraction
        return float(self.sample_size)

    @property
    def rate(self) -> float:
        """The probability that a given client trains in a given round."""
        if self.poisson:
            return min(self.fraction, 1.0)
        return self.sample_size / self.num_clients

    def select(self, round_: int) -> list[int]:
        """The clients of round ``round_``, ascending."""
        if self.everyone:
            return list(range(self.num_clients))
        if self.poisson:
            rng = np.random.default_rng(secrets.randbits(128))
            return [c for c, u in enumerate(rng.random(self.num_clients)) if u < self.fraction]
        rng = np.random.default_rng([self.seed, round_])
        return sorted(int(c) for c in rng.choice(self.num_clients, self.sample_size,
                                                 replace=False))

    def describe(self) -> str:
        """One phrase for logs: "3 of 5 clients per round (seed 0)"."""
        if self.everyone:
            return "all clients every round"
        if self.poisson:
            return (f"each client with probability {self.fraction:g} per round "
                    "(Poisson, unseeded)")
        return f"{self.sample_size} of {self.num_clients} clients per round (seed {self.seed})"


def _fraction(name: str, value: float) -> str | None:
    if 0 < value <= 1:
        return None
    return f"{name} must be in (0, 1], got {value}"
