"""The clients' evaluations of the final model (``POST /v1/done``): kept per client, and
combined into the run's final metrics and summed confusion-matrix/ROC counts. The coordinator
calls it under its lock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from contract.errors import MalformedRequest
from server_component.evaluation_counts import Counts, summed
from server_component.rounds import weighted_metrics


@dataclass(frozen=True)
class Evaluation:
    """One client's evaluation of the final model on its test split."""

    num_examples: int
    metrics: dict[str, float]
    counts: Counts | None = None


class FinalEvaluations:
    """Every client's latest evaluation (a repeated done replaces its own entry)."""

    def __init__(self) -> None:
        self._by_client: dict[int, Evaluation] = {}

    def record(self, client_id: int, metrics: Mapping[str, float], num_examples: int,
               counts: Counts | None = None) -> None:
        """Keep ``client_id``'s evaluation; counts must have the others' classes and ROC
        thresholds (MalformedRequest if not, and nothing is kept)."""
        others = [e.counts for c, e in self._by_client.items() if e.counts and c != client_id]
        if counts is not None and not all(counts.compatible(o) for o in others):
            raise MalformedRequest(f"client {client_id}'s counts have other classes or "
                                   "ROC thresholds than the other clients'")
        self._by_client[client_id] = Evaluation(num_examples, dict(metrics), counts)

    @property
    def client_ids(self) -> list[int]:
        """The clients that sent an evaluation (said done), in ascending order."""
        return sorted(self._by_client)

    def metrics(self) -> dict[str, float]:
        """The clients' metrics, each weighted by the client's test examples."""
        metrics = {c: e.metrics for c, e in self._by_client.items() if e.metrics}
        weights = {c: e.num_examples for c, e in self._by_client.items()}
        return weighted_metrics(metrics, weights) if metrics else {}

    def per_client(self) -> dict[int, dict[str, float]]:
        """Each client's own metrics, by client id."""
        return {c: dict(e.metrics) for c, e in sorted(self._by_client.items())}

    def examples(self) -> dict[int, int]:
        """How many test examples each client evaluated on, by client id."""
        return {c: e.num_examples for c, e in sorted(self._by_client.items())}

    def counts(self) -> Counts | None:
        """The clients' confusion-matrix and ROC counts, summed."""
        return summed(e.counts for e in self._by_client.values() if e.counts is not None)

    def __len__(self) -> int:
        return len(self._by_client)
