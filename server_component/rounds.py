"""One round of the coordinator: the open round's bookkeeping while updates arrive, and the
record it leaves once closed (``checkpoint.RoundRecord``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from server_component.checkpoint import RoundRecord
from server_component.secure_round import SecureRound


@dataclass
class OpenRound:
    """The round collecting updates: its accumulator and who sent what."""

    number: int
    accumulator: object
    started: float
    deadline: float | None
    digests: dict[int, str] = field(default_factory=dict)  # client id -> update digest
    examples: dict[int, int] = field(default_factory=dict)
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    secure: SecureRound | None = None  # the round's secure aggregation, when the run uses it
    selected: list[int] = field(default_factory=list)  # the clients sampled to train in it

    def record(self, num_clients: int, now: float) -> RoundRecord:
        """What this round looked like when it closed at ``now``."""
        return RoundRecord(
            round=self.number,
            client_ids=sorted(self.digests),
            num_examples=sum(self.examples.values()),
            metrics=weighted_metrics(self.metrics, self.examples),
            duration_s=now - self.started,
            client_metrics={str(c): dict(m) for c, m in sorted(self.metrics.items())},
            client_examples={str(c): n for c, n in sorted(self.examples.items())},
            missing=[c for c in self.selected if c not in self.digests],
            selected=list(self.selected),
        )


def weighted_metrics(
    metrics: Mapping[int, Mapping[str, float]], weights: Mapping[int, int]
) -> dict[str, float]:
    """Average each metric over the clients that reported it, weighted by their examples."""
    names = sorted({name for m in metrics.values() for name in m})
    averaged = {}
    for name in names:
        pairs = [(m[name], weights[cid]) for cid, m in metrics.items() if name in m]
        averaged[name] = sum(v * w for v, w in pairs) / sum(w for _, w in pairs)
    return averaged


def format_round(record: RoundRecord, rounds: int) -> str:
    """A closed round as one log line's ``key=value`` fields."""
    metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted(record.metrics.items()))
    late = f" missing={record.missing}" if record.missing else ""
    return (f"round={record.round}/{rounds} clients={len(record.client_ids)} "
            f"examples={record.num_examples} {metrics} duration_s={record.duration_s:.2f}{late}")
