"""Client-level differential privacy at the aggregator: DP-FedAvg with central noise
(McMahan et al. 2018, "Learning Differentially Private Recurrent Language Models").

Every update's displacement from the served model, d_i = w_i - served, is clipped to L2 norm
``clip_norm`` as it streams in (two passes over the spooled body: its norm, then the fold;
O(chunk) extra memory). All clients weigh the same. At the round's close Gaussian noise of
standard deviation ``noise_multiplier x clip_norm`` is added to the sum, which is divided by the
number of clients the round asked (a fixed denominator: a client's absence must not change the
scale), and the wrapped strategy (FedAvg, FedAvgM, FedAdam) takes that noised average as the
round's average. The sum has sensitivity ``clip_norm`` to one client's presence: one Gaussian
release per round, as ``contract.privacy`` accounts it.

With ``clip_quantile`` > 0 the clip norm adapts each round (Andrew et al. 2021, "Differentially
Private Learning with Adaptive Clipping"): C <- C exp(-0.2 (b - quantile)), b the fraction of
this round's updates that were not clipped, released with Gaussian noise of standard deviation
num_clients / 20 on the centred count; the sum's noise multiplier is raised so that the two
releases together are one Gaussian of ``noise_multiplier`` (``privacy.adaptive_sum_noise``): the
accountant's per-round event is unchanged.

The noise draws from the operating system's entropy (numpy's PCG64 seeded by ``SeedSequence``),
never from a run setting; tests pass ``seed``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping

import numpy as np

from contract import privacy, wire
from server_component.strategies import RunningWeightedSum, Strategy, Tensors

log = logging.getLogger(__name__)
CLIP_STATE = "dp/clip_norm"  # the adapted clip norm, checkpointed beside the model


class ClientLevelDp(Strategy):
    """``inner`` on clipped, equally weighted, centrally noised updates."""

    def __init__(self, inner: Strategy, clip_norm: float, noise_multiplier: float,
                 seed: int | None = None, clip_quantile: float = 0.0,
                 denominator: float | None = None) -> None:
        self.inner, self.clip_norm, self.noise_multiplier = inner, clip_norm, noise_multiplier
        self.clip_quantile = clip_quantile  # 0: fixed clipping; else adaptive (Andrew et al.)
        self.last_clip_norm = clip_norm  # the clip norm the last aggregated round used
        self.name = inner.name
        self._rng = np.random.default_rng(seed)
        self._served: Tensors = {}
        self._num_clients: float = 1
        self._denominator = denominator  # expected clients per round; None: all of them
        self._sum_noise = noise_multiplier  # raised in bind when the clip norm adapts
        self._factors: list[float] = []  # the open round's clip factors
        self.last_clip_factors: list[float] = []  # the last aggregated round's

    def bind(self, num_clients: int) -> None:
        """The fixed denominator: the clients a round asks (all, or the expected number
        under client sampling, as in DP-FedAvg)."""
        self._num_clients = self._denominator or num_clients
        self._sum_noise = (privacy.adaptive_sum_noise(self.noise_multiplier, self._num_clients)
                           if self.clip_quantile else self.noise_multiplier)
        self.inner.bind(num_clients)

    def serve(self, tensors: Tensors) -> None:
        """The model this round's updates started from (their displacement is clipped)."""
        self._served = tensors

    def initial_model(self, tensors: Tensors) -> Tensors:
        """The wrapped strategy's model version 0."""
        return self.inner.initial_model(tensors)

    def check_update(self, meta: wire.UpdateMeta, layout: wire.Layout) -> None:
        """The wrapped strategy's checks."""
        self.inner.check_update(meta, layout)

    def new_round(self) -> RunningWeightedSum:
        """A running sum of the clipped models, emptied for the round."""
        self._factors = []
        return super().new_round()

    def fold(self, accumulator: RunningWeightedSum,
             message: wire.Message | wire.StreamedMessage, meta: wire.UpdateMeta) -> None:
        """Add served + min(1, C / ||d||) d, with weight 1."""
        factor = min(1.0, self.clip_norm / max(self._norm(message), 1e-12))
        self._factors.append(factor)
        accumulator.add_chunks(message.layout, self._clipped(message, factor), 1.0)

    def aggregate(self, accumulator: RunningWeightedSum, current: Tensors,
                  server_round: int) -> Tensors:
        """The wrapped strategy on served + (sum of clipped d_i + noise) / num_clients."""
        sigma = self._sum_noise * self.clip_norm
        self.last_clip_factors, self.last_clip_norm = self._factors, self.clip_norm
        log.info("event=dp_client round=%d clipped=%d/%d noise_std=%.4g denominator=%.4g",
                 server_round, sum(f < 1 for f in self._factors), len(self._factors), sigma,
                 self._num_clients)
        averaged = {}
        for name in current:
            served = current[name].astype(np.float64)
            # A round Poisson sampling left empty releases noise only (the sums then hold
            # an earlier round's values: they are kept for reuse).
            displacement = (accumulator.sums[name] - accumulator.count * served
                            if accumulator.count else np.zeros_like(served))
            noise = self._rng.normal(0.0, sigma, size=served.shape)
            averaged[name] = served + (displacement + noise) / self._num_clients
        noised = RunningWeightedSum.from_sums(
            averaged, {n: a.dtype for n, a in current.items()}, 1.0)
        if self.clip_quantile:
            unclipped = sum(f == 1.0 for f in self._factors)
            self.clip_norm = privacy.next_clip(self.clip_norm, unclipped, self._num_clients,
                                               self.clip_quantile, self._rng)
            log.info("event=dp_adaptive_clip round=%d unclipped=%d/%d next_clip_norm=%.4g",
                     server_round, unclipped, len(self._factors), self.clip_norm)
        return self.inner.aggregate(noised, current, server_round)

    def state(self) -> Tensors:
        """The wrapped strategy's state (FedAvgM's velocity, FedAdam's moments), and the
        clip norm when it adapts."""
        state = self.inner.state()
        if self.clip_quantile:
            state[CLIP_STATE] = np.array([self.clip_norm], np.float64)
        return state

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore the wrapped strategy's state and the adapted clip norm."""
        state = dict(state)
        clip = state.pop(CLIP_STATE, None)
        if clip is not None:
            self.clip_norm = self.last_clip_norm = float(clip[0])
        self.inner.load_state(state)

    def _norm(self, message: wire.Message | wire.StreamedMessage) -> float:
        squares = 0.0
        for name, start, values in message.chunks():
            served = self._served[name].reshape(-1)[start:start + values.size]
            squares += float(np.sum(np.square(values.astype(np.float64) - served)))
        return math.sqrt(squares)

    def _clipped(self, message: wire.Message | wire.StreamedMessage, factor: float
                 ) -> Iterator[tuple[str, int, np.ndarray]]:
        for name, start, values in message.chunks():
            served = self._served[name].reshape(-1)[start:start + values.size]
            yield name, start, served + factor * (values.astype(np.float64) - served)
