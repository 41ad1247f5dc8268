"""Who holds whose shares, how many are needed, and the settings that choose them.

Each client secret-shares its two secrets among its *holders*: itself and its neighbours. With
at most ``ALL_NEIGHBOURS_UP_TO`` clients every client is every other's neighbour (SecAgg,
Bonawitz et al. 2017); above, the neighbours are the ``k`` nearest ids on a ring, k = 2
ceil(log2 N) by default (SecAgg+, Bell et al. 2020): the cost per client grows with log N
instead of N. The threshold ``t`` is a strict majority of the holders by default and never
less: fewer would let two disjoint groups each rebuild a secret.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from contract.settings import at_least, one_of, setting

MODES = ("off", "secagg")
ALL_NEIGHBOURS_UP_TO = 20


class SecAggParamsError(ValueError):
    """A threshold or neighbourhood that cannot work for the run's number of clients."""


@dataclass(frozen=True)
class SecAggParams:
    """A run's secure-aggregation parameters (0 = the documented default)."""

    num_clients: int
    threshold: int = 0
    neighbours: int = 0
    clip: float = 1.0
    max_examples: int = 100_000

    def __post_init__(self) -> None:
        if self.num_clients < 1:
            raise SecAggParamsError(f"num_clients must be >= 1, got {self.num_clients}")
        if self.neighbours < 0 or self.neighbours % 2:
            raise SecAggParamsError(f"secagg_neighbours must be 0 (default) or a positive "
                                    f"even number (a ring), got {self.neighbours}")
        shares, majority = self.share_count, self.share_count // 2 + 1
        if self.threshold and not majority <= self.threshold <= shares:
            raise SecAggParamsError(
                f"secagg_threshold must be 0 (a majority, {majority}) or in {majority}.."
                f"{shares} (each secret has {shares} holders), got {self.threshold}")

    @property
    def ring_size(self) -> int:
        """Neighbours per client (others, not itself)."""
        if self.neighbours:
            return min(self.neighbours, self.num_clients - 1)
        if self.num_clients <= ALL_NEIGHBOURS_UP_TO:
            return self.num_clients - 1
        return min(2 * math.ceil(math.log2(self.num_clients)), self.num_clients - 1)

    @property
    def share_count(self) -> int:
        """How many holders each secret has (the client and its neighbours)."""
        return len(self.holders(0))

    @property
    def t(self) -> int:
        """Shares needed to rebuild a secret."""
        return self.threshold or self.share_count // 2 + 1

    def quorum(self, min_clients: int) -> int:
        """Fewest clients a stage may close with at its deadline."""
        return max(min_clients, self.t)

    def holders(self, client_id: int) -> list[int]:
        """``client_id`` and its neighbours, sorted: who holds shares of its secrets."""
        n, k = self.num_clients, self.ring_size
        if k >= n - 1:
            return list(range(n))
        half = k // 2
        return sorted({(client_id + d) % n for d in range(-half, half + 1)})

    def neighbours_of(self, client_id: int) -> list[int]:
        """The clients ``client_id`` shares pairwise masks with (its holders but itself)."""
        return [c for c in self.holders(client_id) if c != client_id]


# ---- the settings (the aggregator's and every client's: the pipeline gives both the same) --

SETTING_NAMES = ("secure_aggregation", "secagg_threshold", "secagg_neighbours", "secagg_clip",
                 "secagg_max_examples")


def mode_setting() -> object:
    """``secure_aggregation``: off, or secagg (the aggregator learns only the sum)."""
    return setting("off", "`secagg`: the aggregator learns only the sum of the clients' "
                   "updates, never one (SecAgg+; README: Secure aggregation); `off`",
                   check=one_of(MODES))


def threshold_setting() -> object:
    """``secagg_threshold``: shares needed to rebuild a client's secret."""
    return setting(0, "shares that rebuild a client's secret (t); 0: a majority of its "
                   "holders. More tolerates fewer dropouts, fewer colluders learn nothing",
                   check=at_least(0))


def neighbours_setting() -> object:
    """``secagg_neighbours``: each client's neighbours (holders of its shares)."""
    return setting(0, "neighbours per client (an even ring size); 0: all clients up to "
                   f"{ALL_NEIGHBOURS_UP_TO}, 2*ceil(log2 N) above", check=at_least(0))


def clip_setting() -> object:
    """``secagg_clip``: the clipping range of update coordinates."""
    return setting(1.0, "update coordinates (new - served weights) are clipped to "
                   "+-this before quantisation", check=at_least(0, strict=True))


def max_examples_setting() -> object:
    """``secagg_max_examples``: the largest site, which sets the quantisation step."""
    return setting(100_000, "the most training examples one site may have; with `secagg_clip` "
                   "it sets the quantisation step (README: the error bound)",
                   check=at_least(1))


CROSS_NAMES = ("secure_aggregation", "num_clients", *SETTING_NAMES[1:])


def params_of(values: Mapping) -> SecAggParams:
    """The run's parameters from settings values (SecAggParamsError if they cannot work)."""
    return SecAggParams(values["num_clients"], values["secagg_threshold"],
                        values["secagg_neighbours"], values["secagg_clip"],
                        values["secagg_max_examples"])


def settings_problem(values: Mapping, name: Callable[[str], str]) -> str | None:
    """A CrossCheck: the secure-aggregation settings work for the run's number of clients."""
    from contract.secagg.quantize import QuantisationError, Quantizer

    if values["secure_aggregation"] == "off":
        return None
    try:
        params = params_of(values)
        Quantizer(params.clip, params.max_examples, params.num_clients)
    except (SecAggParamsError, QuantisationError) as exc:
        return f"{name('secure_aggregation')}=secagg: {exc}"
    return None
