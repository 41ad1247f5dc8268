"""The round coordinator: all aggregator state behind one lock/condition.

Round r (1-based) trains from model version r-1 and, once every client reported, publishes
version r. Version 0 is the first valid init a client posts. Handlers block on the
condition with timeouts; nothing polls.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from server_component import wire
from server_component.errors import MalformedRequest, RoundConflict, TrainingFinished
from server_component.model_spec import ModelSpec
from server_component.strategies import RunningWeightedSum

log = logging.getLogger(__name__)


class Phase(str, Enum):
    WAITING = "waiting"  # collecting updates (or, in round 0, the init)
    PUBLISHED = "published"  # the final model is out; waiting for clients to say done
    DONE = "done"  # every client said done


@dataclass
class RoundRecord:
    """What one closed round looked like: who reported, how much data, their metrics."""

    round: int
    client_ids: list[int]
    num_examples: int
    metrics: dict[str, float]
    duration_s: float


@dataclass
class _OpenRound:
    number: int
    started: float = field(default_factory=time.monotonic)
    digests: dict[int, str] = field(default_factory=dict)
    examples: dict[int, int] = field(default_factory=dict)
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    sum: RunningWeightedSum = field(default_factory=RunningWeightedSum)


def weighted_metrics(
    metrics: Mapping[int, Mapping[str, float]], weights: Mapping[int, int]
) -> dict[str, float]:
    """Average each metric over the clients that reported it, weighted by their examples."""
    names = sorted({name for m in metrics.values() for name in m})
    averaged = {}
    for name in names:
        pairs = [(m[name], weights[cid]) for cid, m in metrics.items() if name in m]
        total = sum(w for _, w in pairs)
        averaged[name] = sum(v * w for v, w in pairs) / total
    return averaged


class RoundCoordinator:
    """Owns the global model, the open round and the shutdown handshake."""

    def __init__(self, num_clients: int, rounds: int) -> None:
        if num_clients < 1 or rounds < 1:
            raise ValueError("num_clients and rounds must be at least 1")
        self.num_clients = num_clients
        self.rounds = rounds
        self._cond = threading.Condition()
        self._spec: ModelSpec | None = None
        self._model_body: bytes | None = None  # encoded global model, version self._version
        self._version = -1
        self._open: _OpenRound | None = None
        self._done: dict[int, tuple[int, dict[str, float]]] = {}
        self.history: list[RoundRecord] = []
        self.bytes_received = 0

    # ---- inputs -------------------------------------------------------------------------

    def submit_init(self, message: wire.Message) -> bool:
        """Adopt the first valid init as model version 0; later inits are ignored."""
        client_id = wire.parse_client_id(message.metadata)
        self._check_client(client_id)
        spec = ModelSpec.of(message.tensors)
        spec.check(message.tensors)
        body = wire.encode(message.tensors, {wire.META_ROUND: "0"})
        with self._cond:
            if self._version >= 0:
                return False
            self._spec, self._model_body, self._version = spec, body, 0
            self._open = _OpenRound(number=1)
            self._cond.notify_all()
        log.info("event=init client=%d tensors=%d parameters=%d",
                 client_id, len(spec.tensors), spec.num_parameters)
        return True

    def submit_update(self, message: wire.Message) -> str:
        """Fold one client's update into the open round; 'accepted' or 'duplicate'."""
        meta = wire.parse_update_meta(message.metadata)
        body_digest = wire.content_digest(message)
        self._check_client(meta.client_id)
        spec = self._spec  # fixed once set: validate outside the lock
        if spec is not None:
            spec.check(message.tensors)
        with self._cond:
            open_round = self._require_open_round(meta.round)
            previous = open_round.digests.get(meta.client_id)
            if previous is not None:
                if previous == body_digest:
                    return "duplicate"
                raise RoundConflict(
                    f"client {meta.client_id} already sent a different update "
                    f"for round {meta.round}"
                )
            open_round.sum.add(message.tensors, meta.num_examples)
            open_round.digests[meta.client_id] = body_digest
            open_round.examples[meta.client_id] = meta.num_examples
            open_round.metrics[meta.client_id] = meta.metrics
            log.info("event=update round=%d client=%d examples=%d reported=%d/%d",
                     meta.round, meta.client_id, meta.num_examples,
                     len(open_round.digests), self.num_clients)
            if len(open_round.digests) == self.num_clients:
                self._close_round(open_round)
            return "accepted"

    def submit_done(self, client_id: int, metrics: Mapping[str, float], num_examples: int) -> None:
        self._check_client(client_id)
        with self._cond:
            self._done[client_id] = (num_examples, dict(metrics))
            self._cond.notify_all()
        log.info("event=done client=%d done=%d/%d", client_id, len(self._done), self.num_clients)

    # ---- outputs ------------------------------------------------------------------------

    def wait_for_model(self, version: int, timeout: float) -> bytes | None:
        """The encoded model of ``version`` once it exists, or None after ``timeout`` seconds."""
        if version < 0:
            raise MalformedRequest(f"round must be >= 0, got {version}")
        if version > self.rounds:
            raise TrainingFinished(f"round {version} is past the last round ({self.rounds})")
        with self._cond:
            self._cond.wait_for(lambda: self._version >= version, timeout=timeout)
            if self._version < version:
                return None
            if self._version > version:
                raise RoundConflict(
                    f"model version {version} was superseded by version {self._version}"
                )
            return self._model_body

    def wait_until_complete(self, timeout: float | None = None) -> bool:
        """Block until the final model is out and every client said done."""
        with self._cond:
            return self._cond.wait_for(self._complete, timeout=timeout)

    def wait_until_published(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._version == self.rounds, timeout=timeout)

    @property
    def phase(self) -> Phase:
        with self._cond:
            return self._phase_locked()

    def final_model(self) -> bytes | None:
        with self._cond:
            return self._model_body if self._version == self.rounds else None

    def final_metrics(self) -> dict[str, float]:
        """Clients' evaluation of the final model, weighted by their test examples."""
        with self._cond:
            metrics = {cid: m for cid, (_, m) in self._done.items() if m}
            weights = {cid: n for cid, (n, _) in self._done.items()}
        return weighted_metrics(metrics, weights) if metrics else {}

    def status(self) -> dict:
        with self._cond:
            return {
                "round": self._open.number if self._open else max(self._version, 0),
                "rounds": self.rounds,
                "phase": self._phase_locked().value,
                "model_version": self._version,
                "num_clients": self.num_clients,
                "reported": sorted(self._open.digests) if self._open else [],
                "done": sorted(self._done),
                "last_metrics": self.history[-1].metrics if self.history else {},
            }

    # ---- internals ----------------------------------------------------------------------

    def _complete(self) -> bool:
        return self._version == self.rounds and len(self._done) == self.num_clients

    def _phase_locked(self) -> Phase:
        if self._complete():
            return Phase.DONE
        if self._version == self.rounds:
            return Phase.PUBLISHED
        return Phase.WAITING

    def _check_client(self, client_id: int) -> None:
        if not 0 <= client_id < self.num_clients:
            raise MalformedRequest(
                f"unknown client id {client_id}: this run has clients 0..{self.num_clients - 1}"
            )

    def _require_open_round(self, round_: int) -> _OpenRound:
        if self._version >= self.rounds:
            raise TrainingFinished(f"training finished after round {self.rounds}")
        if self._open is None:
            raise RoundConflict("no round is open: the initial model was not posted yet")
        if round_ != self._open.number:
            raise RoundConflict(f"round {round_} is not the open round {self._open.number}")
        return self._open

    def _close_round(self, open_round: _OpenRound) -> None:
        averaged = open_round.sum.average()
        self._model_body = wire.encode(averaged, {wire.META_ROUND: str(open_round.number)})
        self._version = open_round.number
        record = RoundRecord(
            round=open_round.number,
            client_ids=sorted(open_round.digests),
            num_examples=sum(open_round.examples.values()),
            metrics=weighted_metrics(open_round.metrics, open_round.examples),
            duration_s=time.monotonic() - open_round.started,
        )
        self.history.append(record)
        more = open_round.number < self.rounds
        self._open = _OpenRound(number=open_round.number + 1) if more else None
        self._cond.notify_all()
        log.info("event=round_closed %s", format_round(record, self.rounds))


def format_round(record: RoundRecord, rounds: int) -> str:
    metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted(record.metrics.items()))
    return (f"round={record.round}/{rounds} clients={len(record.client_ids)} "
            f"examples={record.num_examples} {metrics} duration_s={record.duration_s:.2f}")
