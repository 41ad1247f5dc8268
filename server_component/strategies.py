"""Aggregation strategies: small pure functions over lists of numpy arrays (as Flower's
``aggregate``, ``aggregate_median``, ``aggregate_trimmed_avg`` and ``FedAdam``), and the
per-round accumulators the coordinator feeds as updates arrive.

FedAvg, FedAvgM, FedAdam, FedNova and SCAFFOLD fold each update into a running weighted sum:
O(model size) memory for any number of clients. Median and trimmed mean need every update of
a round at once: they keep up to ``num_clients`` updates, O(num_clients × model size), and
say so at start.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from contract import wire
from contract.errors import IncompatibleUpdate, MalformedRequest
from server_component.chunked import CHUNK, add_scaled

NDArrays = list[np.ndarray]
Tensors = dict[str, np.ndarray]


class StrategyError(ValueError):
    """An unknown strategy name or a bad strategy parameter."""


# ---- pure functions ---------------------------------------------------------------------

def weighted_average(results: Sequence[tuple[Sequence[np.ndarray], int]]) -> NDArrays:
    """FedAvg over (weights, num_examples) pairs."""
    if not results:
        raise ValueError("weighted_average needs at least one result")
    total = sum(n for _, n in results)
    if total <= 0:
        raise ValueError("the example counts must sum to a positive number")
    averaged = []
    for layers in zip(*(weights for weights, _ in results), strict=True):
        acc = sum(np.asarray(layer, np.float64) * n
                  for layer, (_, n) in zip(layers, results, strict=True))
        averaged.append((acc / total).astype(layers[0].dtype))
    return averaged


def coordinate_median(updates: Sequence[Sequence[np.ndarray]]) -> NDArrays:
    """Coordinate-wise median of the updates (unweighted, robust to outliers)."""
    if not updates:
        raise ValueError("coordinate_median needs at least one update")
    return [np.median(np.stack(layers), axis=0).astype(layers[0].dtype)
            for layers in zip(*updates, strict=True)]


def trimmed_mean(updates: Sequence[Sequence[np.ndarray]], beta: float) -> NDArrays:
    """Coordinate-wise mean after cutting the ``beta`` fraction of lowest and highest values."""
    if not updates:
        raise ValueError("trimmed_mean needs at least one update")
    if not 0 <= beta < 0.5:
        raise ValueError(f"beta must be in [0, 0.5), got {beta}")
    cut = int(beta * len(updates))
    out = []
    for layers in zip(*updates, strict=True):
        ordered = np.sort(np.stack(layers), axis=0)
        out.append(ordered[cut:len(updates) - cut].mean(axis=0).astype(layers[0].dtype))
    return out


@dataclass(frozen=True)
class AdamParams:
    """FedAdam's server optimizer (Flower's defaults): step size ``eta``, moment decays
    ``beta_1`` and ``beta_2``, and ``tau``, added to sqrt(v) so the step stays finite."""

    eta: float = 0.1
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 1e-9


def fedadam_step(current: Sequence[np.ndarray], aggregated: Sequence[np.ndarray],
                 m: Sequence[np.ndarray] | None, v: Sequence[np.ndarray] | None,
                 server_round: int, params: AdamParams = AdamParams()
                 ) -> tuple[NDArrays, NDArrays, NDArrays]:
    """One server-side Adam step on the pseudo-gradient ``aggregated - current`` (Reddi et
    al., Adaptive Federated Optimization), with Flower's bias-corrected step size."""
    delta = [a.astype(np.float64) - c.astype(np.float64)
             for a, c in zip(aggregated, current, strict=True)]
    m = [np.zeros_like(d) for d in delta] if m is None else m
    v = [np.zeros_like(d) for d in delta] if v is None else v
    m = [params.beta_1 * mi + (1 - params.beta_1) * d for mi, d in zip(m, delta, strict=True)]
    v = [params.beta_2 * vi + (1 - params.beta_2) * d * d for vi, d in zip(v, delta, strict=True)]
    eta_norm = (params.eta * math.sqrt(1 - params.beta_2 ** (server_round + 1.0))
                / (1 - params.beta_1 ** (server_round + 1.0)))
    new = [(c + eta_norm * mi / (np.sqrt(vi) + params.tau)).astype(c.dtype)
           for c, mi, vi in zip(current, m, v, strict=True)]
    return new, m, v


def fedavgm_step(current: Sequence[np.ndarray], averaged: Sequence[np.ndarray],
                 velocity: Sequence[np.ndarray] | None, momentum: float,
                 server_lr: float = 1.0) -> tuple[NDArrays, NDArrays]:
    """One FedAvgM step (Hsu et al. 2019, as Flower's ``FedAvgM``): the pseudo-gradient
    ``current - averaged`` accumulates into a velocity, and the model moves against it."""
    gradient = [c.astype(np.float64) - a.astype(np.float64)
                for c, a in zip(current, averaged, strict=True)]
    if velocity is not None and momentum > 0:
        gradient = [momentum * v + g for v, g in zip(velocity, gradient, strict=True)]
    new = [(c - server_lr * g).astype(c.dtype) for c, g in zip(current, gradient, strict=True)]
    return new, gradient


def fednova_step(current: Sequence[np.ndarray],
                 updates: Sequence[tuple[Sequence[np.ndarray], int, float]],
                 max_extrapolation: float = 1.0) -> NDArrays:
    """FedNova over (weights, num_examples, norm a_i) triples: the examples-weighted average
    of each client's displacement per unit step, times tau_eff unit steps,
    x - tau_eff * sum_i p_i (x - y_i) / a_i.

    The paper's tau_eff = sum_i p_i a_i (``max_extrapolation=inf``) moves the model
    (sum_i p_i a_i)(sum_i p_i / a_i) times as far as the convex combination of the clients'
    models with weights p_i / a_i does; with sites of 1 and 65 steps that is ~9x, and the
    model overshoots until every output saturates. ``tau_eff`` is capped at
    ``max_extrapolation`` times the p-weighted harmonic mean of the a_i (1: that convex
    combination, never beyond the clients' own models); the direction is the paper's."""
    total = sum(n for _, n, _ in updates)
    tau_eff = _fednova_tau(sum(n * a for _, n, a in updates) / total,
                           sum(n / a for _, n, a in updates) / total, max_extrapolation)
    out = []
    for i, x in enumerate(current):
        direction = sum(n / total * (x.astype(np.float64) - w[i].astype(np.float64)) / a
                        for w, n, a in updates)
        out.append((x - tau_eff * direction).astype(x.dtype))
    return out


def _fednova_tau(mean_norm: float, mean_inverse_norm: float, max_extrapolation: float) -> float:
    """tau_eff: the paper's sum_i p_i a_i, at most ``max_extrapolation`` / sum_i p_i / a_i."""
    return min(mean_norm, max_extrapolation / mean_inverse_norm)


# ---- per-round accumulators -------------------------------------------------------------

class RunningWeightedSum:
    """Folds each update into a float64 running sum as it arrives (streaming FedAvg).

    The products are formed a chunk at a time, so adding an update allocates a few MiB
    whatever the model size. The sums are kept from round to round (``reset``): a fresh
    model-sized allocation every round costs more page faults than the additions themselves."""

    keeps_all_updates = False

    def __init__(self) -> None:
        self._sums: Tensors = {}
        self._dtypes: dict[str, np.dtype] = {}
        self.total_weight: float = 0
        self.count = 0  # updates folded this round

    @classmethod
    def from_sums(cls, sums: Tensors, dtypes: Mapping[str, np.dtype], total_weight: float
                  ) -> RunningWeightedSum:
        """A round's sums computed elsewhere (secure aggregation's unmasked total)."""
        accumulator = cls()
        accumulator._sums, accumulator._dtypes = dict(sums), dict(dtypes)
        accumulator.total_weight, accumulator.count = total_weight, 1
        return accumulator

    @property
    def sums(self) -> Mapping[str, np.ndarray]:
        """The running float64 sums, by tensor name (read them, do not keep them)."""
        return self._sums

    def reset(self) -> RunningWeightedSum:
        """Start a new round in the same buffers (the next update overwrites them)."""
        self.total_weight, self.count = 0, 0
        return self

    def add(self, tensors: Mapping[str, np.ndarray], weight: float) -> None:
        """Fold an update held in memory, as ``add_chunks`` folds a streamed one."""
        layout = {name: (a.shape, a.dtype) for name, a in tensors.items()}
        chunks = ((name, 0, np.ravel(a)) for name, a in tensors.items())
        self.add_chunks(layout, chunks, weight)

    def add_chunks(self, layout: Mapping[str, tuple[tuple[int, ...], np.dtype]],
                   chunks: Iterable[tuple[str, int, np.ndarray]], weight: float) -> None:
        """Fold an update given as (name, first flat index, 1-D values) pieces covering every
        tensor, as a streamed request body yields them."""
        if weight <= 0:
            raise ValueError(f"weight must be positive, got {weight}")
        for name, (shape, dtype) in layout.items():
            if name not in self._sums:
                self._sums[name] = np.empty(shape, np.float64)
                self._dtypes[name] = dtype
        first = self.total_weight == 0  # the round's first update overwrites the sums
        scratch = np.empty(CHUNK, np.float64)
        for name, start, values in chunks:
            target = self._sums[name].reshape(-1)[start:start + values.size]
            if first:
                np.multiply(values, weight, out=target, dtype=np.float64)
            else:
                add_scaled(target, values, weight, scratch)
        self.total_weight += weight
        self.count += 1

    def average(self, dtypes: Mapping[str, np.dtype] | None = None) -> Tensors:
        """The weighted average, in ``dtypes`` (default: the first update's dtypes; pass the
        global model's when updates may arrive narrower, as float16)."""
        out = {name: np.empty(acc.shape, (dtypes or self._dtypes)[name])
               for name, acc in self._sums.items()}
        self.average_into(out)
        return out

    def average_into(self, out: Mapping[str, np.ndarray]) -> None:
        """Write the weighted average into ``out`` (in its dtypes) without temporaries."""
        if self.total_weight == 0:
            raise ValueError("no update was added")
        for name, acc in self._sums.items():
            np.divide(acc, self.total_weight, out=out[name], casting="unsafe")


class NormalizedSum(RunningWeightedSum):
    """A running sum that also totals the examples and the examples x step norms (FedNova)."""

    def __init__(self) -> None:
        super().__init__()
        self.examples, self.weighted_norms = 0, 0.0

    def reset(self) -> NormalizedSum:
        """Start a new round: the sums and both totals start again from zero."""
        super().reset()
        self.examples, self.weighted_norms = 0, 0.0
        return self


class UpdateList:
    """Keeps every update of a round (for the robust strategies)."""

    keeps_all_updates = True

    def __init__(self) -> None:
        self.updates: list[Tensors] = []

    def reset(self) -> UpdateList:
        """Start a new round: the last round's updates are released."""
        self.updates = []
        return self

    def add(self, tensors: Mapping[str, np.ndarray], weight: int) -> None:
        """Keep the update; ``weight`` is unused (the robust strategies are unweighted)."""
        self.updates.append(dict(tensors))  # decoded arrays are already private copies


Accumulator = RunningWeightedSum | UpdateList  # what a strategy folds a round's updates into

# ---- strategies ------------------------------------------------------------------------

REGISTRY: dict[str, type[Strategy]] = {}  # command-line name -> class, in definition order


def registered(cls: type[Strategy]) -> type[Strategy]:
    """Make a strategy class reachable by its name (``--strategy``, the pipeline parameter)."""
    REGISTRY[cls.usage.partition("[")[0]] = cls
    return cls


class Strategy(ABC):
    """Turns one round's updates plus the current global model into the next one.

    A new strategy is one ``@registered`` subclass: its ``usage`` (name and optional numeric
    parameters, ``fedavgm[:momentum[:server_lr]]``), ``params`` (those parameters' keyword
    names, in order), and ``aggregate``; the hooks below have FedAvg's defaults.
    ``accumulator_type`` is what a round's updates are folded into (one is made per strategy
    and reused from round to round): a ``RunningWeightedSum`` (O(model)) or an ``UpdateList``,
    which keeps every update, O(N x model) (``keeps_all_updates``, said at start).
    ``needs_current`` False: the current model may be released before aggregating.

    The coordinator calls, in order: ``bind`` once; ``initial_model`` on the adopted init;
    per round ``serve`` (the model published) and ``new_round``, then per update
    ``check_update`` (before anything is folded: a refusal leaves the round as it was) and
    ``fold``, then ``aggregate_into``; ``state`` and ``load_state`` around checkpoints."""

    name: str  # the instance's canonical spec, as checkpoints and reports show it
    usage: ClassVar[str]
    params: ClassVar[tuple[str, ...]] = ()
    needs_current: ClassVar[bool] = True
    accumulator_type: ClassVar[type[Accumulator]] = RunningWeightedSum
    _accumulator: Accumulator | None = None  # this strategy's, made at its first round

    @property
    def keeps_all_updates(self) -> bool:
        """Whether a round holds every update in memory, O(N x model)."""
        return self.accumulator_type.keeps_all_updates

    def bind(self, num_clients: int) -> None:
        """Learn the run's number of clients (strategies that scale by participation)."""
        return None

    def initial_model(self, tensors: Tensors) -> Tensors:
        """The tensors served as model version 0, from the adopted init's."""
        return tensors

    def serve(self, tensors: Tensors) -> None:
        """The model just published, which the next round's updates start from."""
        return None

    def check_update(self, meta: wire.UpdateMeta, layout: wire.Layout) -> None:
        """Refuse (an HTTP 4xx error) an update this strategy cannot use."""
        return None

    def fold(self, accumulator: Accumulator, message: wire.Message | wire.StreamedMessage,
             meta: wire.UpdateMeta) -> None:
        """Add one update to the round (FedAvg's weight: the client's examples)."""
        if isinstance(accumulator, UpdateList):
            accumulator.add(message.materialize().tensors, meta.num_examples)
        else:
            accumulator.add_chunks(message.layout, message.chunks(), meta.num_examples)

    def new_round(self) -> Accumulator:
        """The accumulator of a new round (the previous round's, emptied)."""
        if self._accumulator is None:
            self._accumulator = self.accumulator_type()
        return self._accumulator.reset()

    def aggregate_into(self, accumulator: Accumulator, current: Tensors | None,
                       server_round: int, out: Mapping[str, np.ndarray]) -> None:
        """Write the new global model into ``out`` (views into its encoded body)."""
        for name, array in self.aggregate(accumulator, current, server_round).items():
            out[name][...] = array

    @abstractmethod
    def aggregate(self, accumulator: Accumulator, current: Tensors,
                  server_round: int) -> Tensors:
        """The new global model from this round's accumulator."""

    def state(self) -> Tensors:
        """Tensors to checkpoint beside the global model (optimizer moments)."""
        return {}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what ``state`` returned; stateless strategies accept only nothing."""
        if state:
            raise StrategyError(f"strategy {self.name} has no state, got {sorted(state)}")


@registered
class FedAvg(Strategy):
    """Sample-weighted average of the updates (McMahan et al. 2017)."""

    name = usage = "fedavg"
    needs_current = False

    def aggregate(self, accumulator: RunningWeightedSum, current: Tensors | None,
                  server_round: int) -> Tensors:
        """The examples-weighted average, in the global model's dtypes (else the updates')."""
        return accumulator.average(_dtypes(current) if current else None)

    def aggregate_into(self, accumulator: RunningWeightedSum, current: Tensors | None,
                       server_round: int, out: Mapping[str, np.ndarray]) -> None:
        """Average straight into ``out``: no model-sized temporary."""
        accumulator.average_into(out)


@registered
class FedAvgM(Strategy):
    """FedAvg with server momentum: the averaged update, smoothed over rounds, so that one
    round's skewed participants pull the model less far off course."""

    usage, params = "fedavgm[:momentum[:server_lr]]", ("momentum", "server_lr")

    def __init__(self, momentum: float = 0.9, server_lr: float = 1.0) -> None:
        if not 0 <= momentum < 1:
            raise StrategyError(f"fedavgm momentum must be in [0, 1), got {momentum}")
        if not 0 < server_lr <= 10:
            raise StrategyError(f"fedavgm server learning rate must be in (0, 10], got "
                                f"{server_lr}")
        self.momentum, self.server_lr = momentum, server_lr
        self.name = f"fedavgm:{momentum:g}" + (f":{server_lr:g}" if server_lr != 1 else "")
        self._velocity: Tensors | None = None

    def aggregate(self, accumulator: RunningWeightedSum, current: Tensors,
                  server_round: int) -> Tensors:
        """One ``fedavgm_step`` from this round's average; the velocity carries over."""
        names = sorted(current)
        averaged = accumulator.average(_dtypes(current))
        new, velocity = fedavgm_step(
            [current[n] for n in names], [averaged[n] for n in names],
            None if self._velocity is None else [self._velocity[n] for n in names],
            self.momentum, self.server_lr)
        self._velocity = dict(zip(names, velocity, strict=True))
        return dict(zip(names, new, strict=True))

    def state(self) -> Tensors:
        """The velocity as ``velocity/<name>`` tensors (none before the first round)."""
        return {f"velocity/{k}": a for k, a in (self._velocity or {}).items()}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore the velocity from the ``velocity/<name>`` tensors."""
        if state:
            self._velocity = {k.removeprefix("velocity/"): a for k, a in state.items()}


@registered
class FedAdam(Strategy):
    """Server-side Adam on the averaged pseudo-gradient (Reddi et al. 2021)."""

    name = usage = "fedadam"

    def __init__(self, params: AdamParams = AdamParams()) -> None:
        self.params = params
        self._m: Tensors | None = None
        self._v: Tensors | None = None

    def aggregate(self, accumulator: RunningWeightedSum, current: Tensors,
                  server_round: int) -> Tensors:
        """One ``fedadam_step`` from this round's average; the moments carry over."""
        names = sorted(current)
        averaged = accumulator.average(_dtypes(current))
        new, m, v = fedadam_step(
            [current[n] for n in names], [averaged[n] for n in names],
            None if self._m is None else [self._m[n] for n in names],
            None if self._v is None else [self._v[n] for n in names],
            server_round, self.params)
        self._m, self._v = dict(zip(names, m, strict=True)), dict(zip(names, v, strict=True))
        return dict(zip(names, new, strict=True))

    def state(self) -> Tensors:
        """The moments as ``m/<name>`` and ``v/<name>`` tensors (none before the first round)."""
        if self._m is None or self._v is None:
            return {}
        return {**{f"m/{k}": a for k, a in self._m.items()},
                **{f"v/{k}": a for k, a in self._v.items()}}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore the moments from the ``m/<name>`` and ``v/<name>`` tensors."""
        if state:
            self._m = {k[2:]: a for k, a in state.items() if k.startswith("m/")}
            self._v = {k[2:]: a for k, a in state.items() if k.startswith("v/")}


@registered
class FedNova(Strategy):
    """FedNova (Wang et al. 2020): each update counts by its displacement per local step, so
    a large site that ran ten times the steps of a small one (``local_epochs`` over more
    data) does not pull the model ten times as far. Needs each update's ``local_steps`` (and
    ``momentum``) metadata; with equal steps everywhere it is FedAvg.

    ``max_extrapolation`` bounds the step (``fednova_step``): 1, the default, keeps the new
    model a convex combination of the clients' (weights n_i / a_i); ``fednova:inf`` is the
    paper's tau_eff, which collapsed the X-ray model under strong label skew (README)."""

    usage, params = "fednova[:max_extrapolation]", ("max_extrapolation",)
    accumulator_type = NormalizedSum

    def __init__(self, max_extrapolation: float = 1.0) -> None:
        if not max_extrapolation >= 1:
            raise StrategyError(f"fednova max_extrapolation must be at least 1 (inf: the "
                                f"paper's tau_eff), got {max_extrapolation}")
        self.max_extrapolation = max_extrapolation
        self.name = "fednova" + (f":{max_extrapolation:g}" if max_extrapolation != 1 else "")

    def check_update(self, meta: wire.UpdateMeta, layout: wire.Layout) -> None:
        """Refuse (400) an update without ``local_steps``: its step norm would be unknown."""
        if meta.local_steps is None:
            raise MalformedRequest(f"strategy fednova needs the update's {wire.META_LOCAL_STEPS!r}"
                                   " metadata: the optimizer steps it took this round")

    def fold(self, accumulator: NormalizedSum, message: wire.Message | wire.StreamedMessage,
             meta: wire.UpdateMeta) -> None:
        """Add the update weighted by examples / step norm a_i, and total the examples and
        examples x a_i."""
        norm = wire.step_norm(meta.local_steps, meta.momentum)
        # sum_i (n_i / a_i) y_i and sum_i n_i / a_i; with sum n_i and sum n_i a_i that is
        # all the normalised step needs, so memory stays one running sum.
        accumulator.add_chunks(message.layout, message.chunks(), meta.num_examples / norm)
        accumulator.examples += meta.num_examples
        accumulator.weighted_norms += meta.num_examples * norm

    def aggregate(self, accumulator: NormalizedSum, current: Tensors,
                  server_round: int) -> Tensors:
        """``fednova_step``, computed from the running sums instead of every update."""
        # x - tau_eff * sum_i p_i (x - y_i) / a_i  ==  x + scale * (avg - x), avg being the
        # running sum's average (weights n_i / a_i), scale = tau_eff * sum_i (n_i / a_i) / N.
        averaged = accumulator.average(_dtypes(current))
        mean_inverse_norm = accumulator.total_weight / accumulator.examples
        tau_eff = _fednova_tau(accumulator.weighted_norms / accumulator.examples,
                               mean_inverse_norm, self.max_extrapolation)
        scale = tau_eff * mean_inverse_norm
        return {name: (x + scale * (averaged[name].astype(np.float64) - x)).astype(x.dtype)
                for name, x in current.items()}


@registered
class Scaffold(Strategy):
    """SCAFFOLD (Karimireddy et al. 2020, option II, as NVIDIA FLARE ships it): the server
    keeps a control variate c, served beside the model as ``control/<name>`` tensors; each
    client corrects its local gradients by c - c_i and returns its new weights plus the
    change of its own c_i under the same names. Both are averaged by examples; c moves by
    that average times the share of clients that took part."""

    usage, params = "scaffold[:server_lr]", ("server_lr",)

    def __init__(self, server_lr: float = 1.0) -> None:
        if not 0 < server_lr <= 10:
            raise StrategyError(f"scaffold server learning rate must be in (0, 10], got "
                                f"{server_lr}")
        self.server_lr = server_lr
        self.name = "scaffold" + (f":{server_lr:g}" if server_lr != 1 else "")
        self.num_clients = 1

    def bind(self, num_clients: int) -> None:
        """Keep the number of clients: c moves by the share of them that took part."""
        self.num_clients = num_clients

    def initial_model(self, tensors: Tensors) -> Tensors:
        """The init's weights plus the server's control variate c, zero, as ``control/<name>``."""
        return {**tensors, **{wire.control_name(name): np.zeros_like(array)
                              for name, array in tensors.items()}}

    def check_update(self, meta: wire.UpdateMeta, layout: wire.Layout) -> None:
        """Refuse (422) an update without ``control/<name>`` tensors."""
        if not any(name.startswith(wire.CONTROL_PREFIX) for name in layout):
            raise IncompatibleUpdate(
                f"strategy {self.name} needs the change of the client's control variate as "
                f"{wire.CONTROL_PREFIX}<name> tensors beside the weights (the served model "
                "carries the server's); this client does not speak SCAFFOLD")

    def aggregate(self, accumulator: RunningWeightedSum, current: Tensors,
                  server_round: int) -> Tensors:
        """The weights move ``server_lr`` of the way to their average; c moves by the average
        change of c_i times the share of clients that took part."""
        averaged = accumulator.average(_dtypes(current))
        share = accumulator.count / self.num_clients
        out = {}
        for name, x in current.items():
            mean = averaged[name].astype(np.float64)
            if name.startswith(wire.CONTROL_PREFIX):
                out[name] = (x + share * mean).astype(x.dtype)
            else:
                out[name] = (x + self.server_lr * (mean - x)).astype(x.dtype)
        return out


@registered
class Median(Strategy):
    """Coordinate-wise median, unweighted (robust to a minority of outliers)."""

    name = usage = "median"
    accumulator_type = UpdateList

    def aggregate(self, accumulator: UpdateList, current: Tensors, server_round: int) -> Tensors:
        """The coordinate-wise median of the round's updates, in the model's dtypes."""
        names = sorted(current)
        med = coordinate_median([[u[n] for n in names] for u in accumulator.updates])
        return _cast_like(dict(zip(names, med, strict=True)), current)


@registered
class TrimmedMean(Strategy):
    """Coordinate-wise mean after cutting the ``beta`` fraction at each end."""

    usage, params = "trimmed-mean[:beta]", ("beta",)
    accumulator_type = UpdateList

    def __init__(self, beta: float = 0.1) -> None:
        if not 0 <= beta < 0.5:
            raise StrategyError(f"trimmed-mean beta must be in [0, 0.5), got {beta}")
        self.beta = beta
        self.name = f"trimmed-mean:{beta:g}"

    def aggregate(self, accumulator: UpdateList, current: Tensors, server_round: int) -> Tensors:
        """The coordinate-wise ``beta``-trimmed mean of the round's updates, in the model's
        dtypes."""
        names = sorted(current)
        mean = trimmed_mean([[u[n] for n in names] for u in accumulator.updates], self.beta)
        return _cast_like(dict(zip(names, mean, strict=True)), current)


def _dtypes(tensors: Tensors) -> dict[str, np.dtype]:
    return {name: array.dtype for name, array in tensors.items()}


def _cast_like(tensors: Tensors, model: Tensors) -> Tensors:
    """Keep the global model's dtypes when updates came narrower (float16 updates)."""
    return {name: a.astype(model[name].dtype, copy=False) for name, a in tensors.items()}


def parse_strategy(spec: str) -> Strategy:
    """A strategy from its spec: a registered name, then up to ``params`` numbers after colons
    (``fedavgm:0.5:0.5``; an empty one keeps its default, ``fedavgm::0.5``)."""
    name, *args = spec.strip().lower().split(":")
    cls = REGISTRY.get(name)
    if cls is None or len(args) > len(cls.params):
        raise StrategyError(f"unknown strategy {spec!r}; accepted: {', '.join(STRATEGIES)}")
    values = {}
    for param, arg in zip(cls.params, args, strict=False):
        if arg:
            try:
                values[param] = float(arg)
            except ValueError:
                raise StrategyError(f"bad {name} {param} {arg!r}: not a number") from None
    return cls(**values)


STRATEGIES = tuple(cls.usage for cls in REGISTRY.values())  # for help texts and errors
