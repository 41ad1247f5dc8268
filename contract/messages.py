"""The JSON messages of protocol v1, typed: what each endpoint answers or accepts, with the
status codes that carry meaning. Both sides use these classes, so a field is named once;
``contract.openapi`` describes the same messages for clients written elsewhere.

Clients rely on status codes first (202 adopted/accepted, 200 ignored/duplicate, 204 not yet,
409 out of step, 410 over) and only on the JSON fields documented here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum

from contract.errors import MalformedRequest


class Phase(str, Enum):
    """Where a run is, as ``GET /v1/status`` reports it."""

    WAITING = "waiting"  # collecting the init (round 0) or the open round's updates
    PUBLISHED = "published"  # the final model is out; waiting for clients to say done
    DONE = "done"  # every client said done
    FAILED = "failed"  # a round missed its quorum at the deadline


# Status codes of the calls whose success comes in two kinds.
INIT_ADOPTED, INIT_IGNORED = 202, 200  # POST /v1/init: version 0, or a later init ignored
UPDATE_ACCEPTED, UPDATE_DUPLICATE = 202, 200  # POST /v1/update: folded, or identical re-send
MODEL_NOT_YET = 204  # GET /v1/model: not published within the long poll


class StatusReplyError(ValueError):
    """A ``/v1/status`` answer that lacks a documented field or has the wrong type."""


@dataclass(frozen=True)
class Status:
    """``GET /v1/status``: the run's position, enough for a client to resynchronise."""

    round: int  # the open round (1-based), or the last version once training is over
    rounds: int
    phase: Phase
    model_version: int  # -1 before the first init
    num_clients: int
    min_clients: int
    strategy: str
    reported: list[int] = field(default_factory=list)  # client ids with an update this round
    done: list[int] = field(default_factory=list)  # client ids that said done
    last_metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # why the run failed
    secure_aggregation: str = "off"  # "secagg": updates go through /v1/secagg/*
    secagg_session: str = ""  # the open round's secure-aggregation session
    secagg_stage: str = ""  # keys, shares, masked, unmask (empty: none open)
    final_version: int = -1  # the version training ends at (-1: rounds, an older aggregator)
    dp: str = "off"  # differential privacy: off, example, client
    epsilon: float = 0.0  # ε spent so far (example: the largest site's)
    dp_steps: dict[str, int] = field(default_factory=dict)  # client id -> DP-SGD steps recorded
    stopped: str = ""  # why training ended before the last round (the privacy budget)
    selected: list[int] = field(default_factory=list)  # the open round's sampled clients
    fraction_fit: float = 1.0  # share of the clients sampled per round (1: all)

    @property
    def last_version(self) -> int:
        """The model version training ends at."""
        return self.rounds if self.final_version < 0 else self.final_version

    def trains(self, client_id: int, round_: int) -> bool | None:
        """Whether ``client_id`` trains in ``round_``: True or False while that round is
        open, None once it is not (it closed, or training is over). An aggregator that does
        not sample (or predates sampling) asks every client."""
        if round_ != self.round or self.phase != Phase.WAITING:
            return None
        return self.fraction_fit >= 1 or client_id in self.selected

    def to_json(self) -> dict:
        """The reply body, with the phase as its string value."""
        return {**asdict(self), "phase": self.phase.value}

    @classmethod
    def from_json(cls, data: object) -> Status:
        """Parse an aggregator's answer; StatusReplyError names what is missing or wrong."""
        if not isinstance(data, dict):
            raise StatusReplyError("GET /v1/status must answer a JSON object")
        try:
            phase = Phase(data.get("phase"))
        except ValueError:
            raise StatusReplyError(f"status phase {data.get('phase')!r} is not one of "
                                   f"{[p.value for p in Phase]}") from None
        values = {"phase": phase}
        for name, kind in _STATUS_FIELDS.items():
            if name not in data and name in _STATUS_OPTIONAL:
                continue
            value = data.get(name)
            if not _is_a(value, kind):
                raise StatusReplyError(f"status field {name!r} must be {_kind_name(kind)}, "
                                       f"got {value!r}")
            values[name] = value
        return cls(**values)


_STATUS_FIELDS = {"round": int, "rounds": int, "model_version": int, "num_clients": int,
                  "min_clients": int, "strategy": str, "reported": list, "done": list,
                  "last_metrics": dict, "error": (str, type(None)),
                  "secure_aggregation": str, "secagg_session": str, "secagg_stage": str,
                  "final_version": int, "dp": str, "epsilon": (int, float), "dp_steps": dict,
                  "stopped": str, "selected": list, "fraction_fit": (int, float)}
_STATUS_OPTIONAL = {"last_metrics", "error", "done", "secure_aggregation", "secagg_session",
                    "secagg_stage", "final_version", "dp", "epsilon", "dp_steps", "stopped",
                    "selected", "fraction_fit"}


def _is_a(value: object, kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


@dataclass(frozen=True)
class DoneReport:
    """``POST /v1/done``: a client's evaluation of the final model on its test split."""

    client_id: int
    metrics: dict[str, float] = field(default_factory=dict)
    num_examples: int = 1
    counts: dict | None = None  # confusion matrix and ROC counts (evaluation_counts)

    def to_json(self) -> dict:
        """The request body; ``counts`` only when there are any."""
        body = {"client_id": self.client_id, "metrics": dict(self.metrics),
                "num_examples": self.num_examples}
        if self.counts:
            body["counts"] = dict(self.counts)
        return body

    @classmethod
    def from_json(cls, payload: object) -> DoneReport:
        """Validate a request body: MalformedRequest (400) naming the field."""
        from contract.wire import check_metrics

        if not isinstance(payload, dict) or not _is_int(payload.get("client_id")):
            raise MalformedRequest('body must be JSON {"client_id": <int>}')
        num_examples = payload.get("num_examples", 1)
        if not _is_int(num_examples) or num_examples < 1:
            raise MalformedRequest("num_examples must be a positive integer")
        counts = payload.get("counts")
        if counts is not None and not isinstance(counts, dict):
            raise MalformedRequest("counts must be a JSON object")
        return cls(payload["client_id"], check_metrics(payload.get("metrics", {})),
                   num_examples, counts)


@dataclass(frozen=True)
class ErrorReply:
    """Every refusal: ``{"error": code, "detail": text}``; the state is left as it was."""

    error: str
    detail: str

    @classmethod
    def from_json(cls, data: object, fallback: str = "") -> ErrorReply:
        """Read a refusal's body; one that is not a JSON object gives error ``?`` with
        ``fallback`` (the start of the response text) as the detail."""
        if isinstance(data, Mapping):
            return cls(str(data.get("error", "?")), str(data.get("detail", "")))
        return cls("?", fallback)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
