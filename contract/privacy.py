"""Differential privacy: the settings both runtimes share, their checks, and the accountant.

Two guarantees, chosen by ``dp``:

- ``example``: each site trains with DP-SGD (Abadi et al. 2016): Poisson-sampled batches of
  expected size ``batch_size``, every example's gradient clipped to ``dp_clip_norm``, Gaussian
  noise of standard deviation ``dp_noise_multiplier x dp_clip_norm`` added to the batch's sum.
  A site's privacy loss is one Poisson-subsampled Gaussian event per optimizer step.
- ``client``: DP-FedAvg (McMahan et al. 2018): each client's update (new - served weights) is
  clipped to ``dp_clip_norm`` in L2 norm, every client weighs the same, and Gaussian noise of
  standard deviation ``dp_noise_multiplier x dp_clip_norm`` is added to the round's sum. The
  run's privacy loss is one Gaussian event per round, subsampled by the fraction of clients the
  round asked (all of them: 1).

Both are accounted with Google's ``dp-accounting`` package, its RDP accountant
(``dp_accounting.rdp.RdpAccountant``, Mironov 2017, on its default orders that are whole
numbers), and reported as
ε at δ = ``dp_delta``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from contract.secagg.params import SecAggParams
from contract.settings import at_least, one_of, setting

if TYPE_CHECKING:
    import dp_accounting

MODES = ("off", "example", "client")
SETTING_NAMES = ("dp", "dp_noise_multiplier", "dp_clip_norm", "dp_delta", "dp_target_epsilon")
DEFAULT_DELTA = 1e-5
Namer = Callable[[str], str]


@functools.cache
def rdp_orders() -> tuple[float, ...]:
    """dp-accounting's default RDP orders that are whole numbers: its series for fractional
    orders of the subsampled Gaussian does not converge at some sampling rates (dp-accounting
    then logs a warning and drops the order); whole orders have a closed form, and the ε they
    give is within about 1 % of the full set's at the settings this project uses.

    dp-accounting (with scipy) is imported here, on first use, not with this module: it costs
    every aggregator and client process about 55 MiB of memory, DP or not."""
    from dp_accounting import rdp

    return tuple(o for o in rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS
                 if o >= 2 and float(o).is_integer())


def mode_setting() -> object:
    """The ``dp`` field of a settings class."""
    return setting("off", "differential privacy: `example` (DP-SGD at each site: patient-level "
                   "ε), `client` (DP-FedAvg: clipped, noised client updates, site-level ε), "
                   "`off`", check=one_of(MODES))


def noise_setting() -> object:
    """The ``dp_noise_multiplier`` field: the noise's standard deviation in clip norms."""
    return setting(1.0, "Gaussian noise standard deviation, in units of `dp_clip_norm`; 0 "
                   "with `dp_target_epsilon`: calibrated so that the budget is spent exactly "
                   "at the last round (each site for its own data with `example`, for the "
                   "rounds with `client`)", check=at_least(0))


def clip_setting() -> object:
    """The ``dp_clip_norm`` field: the L2 bound on one example's gradient or one update."""
    return setting(1.0, "L2 bound on one example's gradient (`example`) or one client's "
                   "update (`client`)", check=at_least(0, strict=True))


def delta_setting() -> object:
    """The ``dp_delta`` field: the δ at which ε is reported (0: the default for the data)."""
    return setting(0.0, "δ of the reported (ε, δ); 0: min(1e-5, 1/(10 n)), n the site's "
                   "training examples (`example`) or the clients (`client`)",
                   check=_probability_or_zero)


def _probability_or_zero(name: str, value: float) -> str | None:
    return None if 0 <= value < 1 else f"{name} must be in [0, 1), got {value!r}"


def target_setting() -> object:
    """The ``dp_target_epsilon`` field: the budget no step may exceed (0: none)."""
    return setting(0.0, "privacy budget: no step is taken that would make ε exceed it; the "
                   "run then finishes with the last model (0: no budget)", check=at_least(0))


def settings_problem(values: Mapping, name: Namer) -> str | None:
    """One sentence on settings that cannot work together, or None."""
    mode, noise, target = values["dp"], values["dp_noise_multiplier"], values["dp_target_epsilon"]
    if mode == "off":
        if target > 0:
            return f"{name('dp_target_epsilon')} needs {name('dp')}=example or client"
        return None
    if noise <= 0 and target <= 0:
        return (f"{name('dp')}={mode} needs {name('dp_noise_multiplier')} > 0, or 0 with "
                f"{name('dp_target_epsilon')} > 0 to calibrate it (without noise ε is "
                "infinite)")
    return None


BUDGET_NAMES = ("dp", "dp_noise_multiplier", "dp_delta", "dp_target_epsilon", "num_clients")


def client_budget_problem(values: Mapping, name: Namer) -> str | None:
    """dp=client: a budget below one round's ε could train nothing (checked at start)."""
    target, noise = values["dp_target_epsilon"], values["dp_noise_multiplier"]
    if values["dp"] != "client" or target <= 0 or noise <= 0:
        return None  # a calibrated noise fits the budget by construction
    delta = values["dp_delta"] or default_delta(values["num_clients"])
    one_round = Mechanism(noise).epsilon(1, delta)
    if one_round <= target:
        return None
    return (f"{name('dp_target_epsilon')}={target:g} is below one round's ε={one_round:.3g} "
            f"({name('dp_noise_multiplier')}={noise:g}, δ={delta:g}): raise the budget or "
            "the noise")


def calibrate(sampling_rate: float, releases: int, target: float, delta: float) -> float:
    """The smallest noise multiplier (to 0.1 %) with which ``releases`` releases at
    ``sampling_rate`` spend at most ``target`` at ``delta`` (bisection on the accountant)."""
    low, high = 0.05, 1000.0
    if Mechanism(high, sampling_rate).epsilon(releases, delta) > target:
        raise ValueError(f"no noise multiplier up to {high:g} keeps ε ≤ {target:g} over "
                         f"{releases} releases")
    while high / low > 1.001:
        middle = math.sqrt(low * high)
        if Mechanism(middle, sampling_rate).epsilon(releases, delta) <= target:
            high = middle
        else:
            low = middle
    return high


def client_noise(values: Mapping) -> float:
    """dp=client's noise multiplier: the setting's, or calibrated for every round (0)."""
    noise = values["dp_noise_multiplier"]
    if noise > 0 or values["dp"] != "client" or values["dp_target_epsilon"] <= 0:
        return noise
    delta = values["dp_delta"] or default_delta(values["num_clients"])
    return calibrate(1.0, values["rounds"], values["dp_target_epsilon"], delta)


def default_delta(units: int) -> float:
    """δ below 1/units (units: a site's examples, or the run's clients)."""
    return min(DEFAULT_DELTA, 1.0 / (10 * max(units, 1)))


@dataclass(frozen=True)
class Mechanism:
    """One private release, repeated: a Gaussian of ``noise_multiplier`` (noise standard
    deviation over sensitivity), each unit in it with probability ``sampling_rate``."""

    noise_multiplier: float
    sampling_rate: float = 1.0

    def __post_init__(self) -> None:
        if self.noise_multiplier <= 0:
            raise ValueError(f"noise_multiplier must be > 0, got {self.noise_multiplier}")
        if not 0 < self.sampling_rate <= 1:
            raise ValueError(f"sampling_rate must be in (0, 1], got {self.sampling_rate}")

    def event(self) -> dp_accounting.DpEvent:
        """One release as a ``dp_accounting`` event."""
        import dp_accounting

        gaussian = dp_accounting.GaussianDpEvent(self.noise_multiplier)
        if self.sampling_rate == 1:
            return gaussian
        return dp_accounting.PoissonSampledDpEvent(self.sampling_rate, gaussian)

    def epsilon(self, releases: int, delta: float) -> float:
        """ε at ``delta`` after ``releases`` releases (RDP accountant); 0 for none."""
        if releases <= 0:
            return 0.0
        from dp_accounting import rdp

        accountant = rdp.RdpAccountant(list(rdp_orders()))
        accountant.compose(self.event(), releases)
        return float(accountant.get_epsilon(delta))

    def releases_within(self, target: float, delta: float, spent: int, wanted: int) -> int:
        """How many of ``wanted`` further releases keep ε ≤ ``target`` after ``spent``
        (bisection: ε grows with every release)."""
        if target <= 0:
            return wanted
        low, high = 0, wanted
        while low < high:
            middle = (low + high + 1) // 2
            if self.epsilon(spent + middle, delta) <= target:
                low = middle
            else:
                high = middle - 1
        return low


@dataclass
class PrivacyBudget:
    """A mechanism's releases so far against an optional target: what one site (``example``)
    or the aggregator (``client``) spends, checked before every release."""

    mechanism: Mechanism
    delta: float
    target_epsilon: float = 0.0  # 0: no budget
    spent: int = 0  # releases accounted so far
    exhausted: bool = False  # the next full round would exceed the target

    @property
    def epsilon(self) -> float:
        """ε spent so far, at ``delta``."""
        return self.mechanism.epsilon(self.spent, self.delta)

    def allow(self, wanted: int) -> int:
        """How many of ``wanted`` releases fit the budget now."""
        return self.mechanism.releases_within(self.target_epsilon, self.delta, self.spent,
                                              wanted)

    def spend(self, releases: int, next_round: int) -> None:
        """Account ``releases``; exhausted once ``next_round`` more would not fit."""
        self.spent += releases
        self.exhausted = self.allow(next_round) < next_round

    def restore(self, spent: int) -> None:
        """Never fewer releases than recorded elsewhere (the aggregator's ledger, after a
        restart of this process): a retry cannot reset the budget."""
        self.spent = max(self.spent, spent)

    def report(self) -> dict[str, float]:
        """ε, δ and the releases, as update metadata and metrics carry them."""
        return {"epsilon": _finite(self.epsilon), "delta": self.delta,
                "steps": float(self.spent), "exhausted": float(self.exhausted),
                "noise_multiplier": self.mechanism.noise_multiplier}


def _finite(value: float) -> float:
    """JSON has no infinity: an unbounded ε is reported as a very large number."""
    return value if math.isfinite(value) else 1e308


def secagg_params(params: SecAggParams, values: Mapping) -> SecAggParams:
    """Secure aggregation's parameters as ``dp=client`` needs them: every client weighs 1
    (so ``max_examples`` is 1), and each coordinate's range leaves room for a client's share
    of the noise (at least ``dp_clip_norm x (1 + 6 x dp_noise_multiplier)``: six standard
    deviations of the whole noise, more than any one share has)."""
    if values["dp"] != "client":
        return params
    noise_range = values["dp_clip_norm"] * (1 + 6 * client_noise(values))
    return dataclasses.replace(params, max_examples=1, clip=max(params.clip, noise_range))


# ---- adaptive clipping (Andrew et al. 2021), dp=client with central noise -------------------

CLIP_LEARNING_RATE = 0.2  # the paper's geometric step size, eta_C


def quantile_setting() -> object:
    """The ``dp_clip_quantile`` field: 0, fixed clipping; else the target quantile."""
    return setting(0.0, "`dp=client`: 0 clips at `dp_clip_norm` every round; in (0, 1) the "
                   "clip norm adapts each round towards this quantile of the clients' update "
                   "norms (Andrew et al. 2021; starts at `dp_clip_norm`; needs more than "
                   "10 x `dp_noise_multiplier` clients; not with `secure_aggregation`)",
                   check=_quantile)


def _quantile(name: str, value: float) -> str | None:
    return None if 0 <= value < 1 else f"{name} must be in [0, 1), got {value!r}"


def count_noise(num_clients: int) -> float:
    """Standard deviation of the noise on the count of unclipped updates: the paper's
    expected clients / 20."""
    return num_clients / 20


def adaptive_sum_noise(noise_multiplier: float, num_clients: int) -> float:
    """The sum's noise multiplier z_sum such that the sum and the noised count together are a
    Gaussian of ``noise_multiplier`` (Andrew et al. 2021, Theorem 1):
    z_sum = (z^-2 - (2 sigma_b)^-2)^(-1/2), the count's sensitivity being 1/2 once centred."""
    count_multiplier = 2 * count_noise(num_clients)
    if count_multiplier <= noise_multiplier:
        raise ValueError(f"adaptive clipping with dp_noise_multiplier={noise_multiplier:g} "
                         f"needs more than {10 * noise_multiplier:g} clients, got {num_clients}")
    return (noise_multiplier ** -2 - count_multiplier ** -2) ** -0.5


ADAPTIVE_NAMES = ("dp", "dp_clip_quantile", "dp_noise_multiplier", "num_clients",
                  "secure_aggregation", "rounds", "dp_delta", "dp_target_epsilon")


def adaptive_problem(values: Mapping, name: Namer) -> str | None:
    """Adaptive clipping is built for dp=client with central noise and enough clients."""
    if values["dp_clip_quantile"] == 0:
        return None
    if values["dp"] != "client" or values["secure_aggregation"] != "off":
        return (f"{name('dp_clip_quantile')} needs {name('dp')}=client without "
                f"{name('secure_aggregation')} (the aggregator adapts the clip norm)")
    try:
        adaptive_sum_noise(client_noise(values), values["num_clients"])
    except ValueError as exc:
        return f"{name('dp_clip_quantile')}: {exc}"
    return None


def next_clip(clip: float, unclipped: int, clients: int, quantile: float,
              rng: np.random.Generator) -> float:
    """One geometric step of the clip norm: C exp(-eta (b - gamma)), b the noised fraction of
    updates that were not clipped (centred indicators, noise sigma_b)."""
    centred = unclipped - clients / 2 + rng.normal(0.0, count_noise(clients))
    fraction = centred / clients + 0.5
    return clip * math.exp(-CLIP_LEARNING_RATE * (fraction - quantile))
