"""What the aggregator leaves behind: final weights, per-round metrics, a summary."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

from server_component.coordinator import RoundCoordinator

FINAL_WEIGHTS = "final_weights.safetensors"
ROUND_METRICS = "round_metrics.csv"
SUMMARY = "summary.json"


def write_outputs(out_dir: str | os.PathLike, coordinator: RoundCoordinator) -> dict:
    """Write the run's artifacts into ``out_dir``; returns the summary it wrote."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = coordinator.final_model()
    if final is not None:
        _atomic_write(out / FINAL_WEIGHTS, final)
    _write_round_metrics(out / ROUND_METRICS, coordinator)
    summary = {
        "rounds": coordinator.rounds,
        "rounds_completed": len(coordinator.history),
        "num_clients": coordinator.num_clients,
        "strategy": coordinator.strategy.name,
        "error": coordinator.failure,
        "final_metrics": coordinator.final_metrics(),
        "last_round_metrics": coordinator.history[-1].metrics if coordinator.history else {},
        "partitions": [coordinator.partitions[c] for c in sorted(coordinator.partitions)],
    }
    _atomic_write(out / SUMMARY, json.dumps(summary, indent=2, sort_keys=True).encode())
    return summary


def ensure_writable(directory: str | os.PathLike) -> None:
    """Create ``directory`` if needed and prove a file can be written there (OSError if not)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
        pass


def _write_round_metrics(path: Path, coordinator: RoundCoordinator) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        _write_csv(tmp, coordinator)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_csv(tmp: Path, coordinator: RoundCoordinator) -> None:
    metric_names = sorted({name for r in coordinator.history for name in r.metrics})
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round", "clients", "missing", "num_examples", "duration_s",
                         *metric_names])
        for r in coordinator.history:
            writer.writerow([
                r.round, len(r.client_ids), " ".join(map(str, r.missing)), r.num_examples,
                f"{r.duration_s:.3f}",
                *(r.metrics.get(name, "") for name in metric_names),
            ])


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
