"""What operators see: Prometheus metrics read from the coordinator at scrape time, and a
small human status page. Neither shows the token or any other secret."""

from __future__ import annotations

import html

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from server_component.coordinator import RoundCoordinator

DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, float("inf"))


class CoordinatorCollector:
    """Exports the coordinator's counters and round history (no state of its own)."""

    def __init__(self, coordinator: RoundCoordinator) -> None:
        self.coordinator = coordinator

    def collect(self):
        """The metric families of one scrape, read from the coordinator at that moment."""
        c = self.coordinator
        status = c.status()
        counters = c.counters.snapshot()
        durations = [r.duration_s for r in c.history]
        yield CounterMetricFamily("fl_rounds_closed", "Rounds closed",
                                  value=counters.rounds_closed)
        yield CounterMetricFamily("fl_updates_accepted", "Updates accepted",
                                  value=counters.updates_accepted)
        yield CounterMetricFamily("fl_updates_duplicate", "Identical re-sends of an update",
                                  value=counters.updates_duplicate)
        by_reason = CounterMetricFamily("fl_updates_rejected", "Requests refused, by error code",
                                        labels=["reason"])
        for reason, count in sorted(counters.rejected.items()):
            by_reason.add_metric([reason], count)
        yield by_reason
        yield CounterMetricFamily("fl_bytes_received", "Bytes of accepted updates",
                                  value=counters.bytes_received)
        yield GaugeMetricFamily("fl_round", "Open round (0 before init)", value=status.round)
        yield GaugeMetricFamily("fl_clients_reported", "Clients reported in the open round",
                                value=len(status.reported))
        yield GaugeMetricFamily("fl_clients_done", "Clients that said done",
                                value=len(status.done))
        yield _histogram(durations)


def _histogram(durations: list[float]) -> HistogramMetricFamily:
    buckets = [(_le(b), sum(1 for d in durations if d <= b)) for b in DURATION_BUCKETS]
    return HistogramMetricFamily("fl_round_duration_seconds", "Time from open to close",
                                 buckets=buckets, sum_value=sum(durations))


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else str(bound)


def metrics_text(coordinator: RoundCoordinator) -> bytes:
    """The ``/metrics`` body: the coordinator's metrics in Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CoordinatorCollector(coordinator))
    return generate_latest(registry)


def status_page(coordinator: RoundCoordinator) -> str:
    """The status page at ``/`` (HTML): phase, round, strategy, who reported and who is done,
    the last round's metrics and why the run failed, if it did; it reloads every 5 s."""
    s = coordinator.status()
    metrics = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>"
                      for k, v in sorted(s.last_metrics.items()))
    error = f"<p class=err>{html.escape(s.error)}</p>" if s.error else ""
    return f"""<!doctype html><html><head><meta charset=utf-8>
<title>fl-on-kubeflow aggregator</title><meta http-equiv=refresh content=5>
<style>body{{font-family:sans-serif;margin:2em}}td{{padding:0 1em}}.err{{color:#b00}}</style>
</head><body><h1>Federated aggregator</h1>{error}
<table><tr><td>phase</td><td>{s.phase.value}</td></tr>
<tr><td>round</td><td>{s.round} / {s.rounds}</td></tr>
<tr><td>strategy</td><td>{html.escape(s.strategy)}</td></tr>
<tr><td>reported this round</td>
<td>{len(s.reported)} / {s.num_clients} {s.reported}</td></tr>
<tr><td>done</td><td>{len(s.done)} / {s.num_clients}</td></tr></table>
<h2>Last round (clients' held-out metrics, weighted)</h2><table>{metrics}</table>
</body></html>"""
