"""What the aggregator leaves behind: final weights, per-round and per-client metrics, the
summed confusion matrix and ROC counts, a summary and an HTML report."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from contract.file_names import (  # noqa: F401 (re-exported: the names of --out)
    CLIENT_METRICS,
    EVALUATION,
    FINAL_WEIGHTS,
    MODEL_ARCHITECTURE,
    REPORT,
    ROUND_METRICS,
    SUMMARY,
)
from server_component.coordinator import RoundCoordinator


@dataclass(frozen=True)
class OutputPaths:
    """Where each output goes: the files of ``--out``, or a pipeline task's artifacts."""

    model_dir: Path  # final weights, the registered architecture and the run summary
    round_metrics: Path  # CSV: one row per round
    client_metrics: Path  # CSV: one row per client and round, plus the final evaluation
    report: Path  # the self-contained HTML report
    evaluation: Path | None = None  # summed confusion matrix and ROC counts (JSON)

    @classmethod
    def in_directory(cls, out: str | os.PathLike) -> OutputPaths:
        """The ``--out`` layout: every file side by side in one directory."""
        out = Path(out)
        return cls(out, out / ROUND_METRICS, out / CLIENT_METRICS, out / REPORT,
                   out / EVALUATION)

    def directories(self) -> list[Path]:
        """Every directory the outputs go in, each once, for creating them before writing."""
        files = (self.round_metrics, self.client_metrics, self.report, self.evaluation)
        return list(dict.fromkeys([self.model_dir, *(f.parent for f in files if f)]))


def write_outputs(paths: OutputPaths, coordinator: RoundCoordinator,
                  parameters: Mapping[str, object] | None = None) -> dict:
    """Write the run's outputs where ``paths`` say; returns the summary it wrote.

    ``parameters`` are the aggregator's own settings; the report adds the clients' settings
    (sent with their init) to them."""
    for directory in paths.directories():
        directory.mkdir(parents=True, exist_ok=True)
    final = coordinator.final_model()
    if final is not None:
        _atomic_write(paths.model_dir / FINAL_WEIGHTS, final)
        if coordinator.run_info.architecture:
            _atomic_write(paths.model_dir / MODEL_ARCHITECTURE,
                          coordinator.run_info.architecture.encode())
        if coordinator.round_models is not None:
            coordinator.round_models.copy_rounds(paths.model_dir)
    for path, table in ((paths.round_metrics, round_metrics_table(coordinator)),
                        (paths.client_metrics, client_metrics_table(coordinator))):
        _atomic_write(path, table.to_csv(index=False).encode())
    counts = coordinator.final_counts()
    if counts is not None and paths.evaluation is not None:
        _atomic_write(paths.evaluation, json.dumps(counts.to_json(), indent=1).encode())
    summary = build_summary(coordinator)
    _atomic_write(paths.model_dir / SUMMARY,
                  json.dumps(summary, indent=2, sort_keys=True).encode())
    from server_component.report import ReportData, render_report  # matplotlib: only here

    report = ReportData(
        # The aggregator's own values win over what a client said about the run.
        parameters={**coordinator.run_info.client_settings, **(parameters or {}),
                    **({"exported_model": summary["selected_model"]["description"]}
                       if summary["selected_model"] else {})},
        num_clients=coordinator.num_clients,
        history=coordinator.history, final_metrics=summary["final_metrics"],
        client_final_metrics=coordinator.final_client_metrics(),
        partitions=coordinator.run_info.partitions, counts=counts, totals=summary["totals"],
        error=coordinator.failure)
    _atomic_write(paths.report, render_report(report).encode())
    return summary


def build_summary(coordinator: RoundCoordinator) -> dict:
    """The run in one JSON object: setup, totals, final and last-round metrics."""
    counters = coordinator.counters.snapshot()
    partitions = coordinator.run_info.partitions
    totals = {
        "rounds_completed": len(coordinator.history),
        "clients_completed": len(coordinator.final_client_metrics()),
        "wall_time_s": round(coordinator.elapsed_s, 3),
        "bytes_received": counters.bytes_received,
        "bytes_sent": counters.bytes_sent,
        "bytes_exchanged": counters.bytes_received + counters.bytes_sent,
    }
    if coordinator.selection is not None:
        totals["selected_round"] = coordinator.selection.round
    return {
        "rounds": coordinator.rounds,
        "rounds_completed": len(coordinator.history),
        "num_clients": coordinator.num_clients,
        "strategy": coordinator.strategy.name,
        "error": coordinator.failure,
        "final_metrics": coordinator.final_metrics(),
        "last_round_metrics": coordinator.history[-1].metrics if coordinator.history else {},
        "partitions": [partitions[c] for c in sorted(partitions)],
        "client_settings": coordinator.run_info.client_settings,
        "totals": totals,
        "privacy": privacy_summary(coordinator),
        "selected_model": selection_summary(coordinator),
    }


def selection_summary(coordinator: RoundCoordinator) -> dict:
    """Which round the final (exported) model is from, by which rule; {} before it exists."""
    selection = coordinator.selection
    if selection is None:
        return {}
    summary = {"round": selection.round, "rule": selection.rule,
               "description": selection.describe()}
    if selection.value is not None:
        summary["value"] = selection.value
    return summary


def privacy_summary(coordinator: RoundCoordinator) -> dict:
    """The run's differential privacy: mode, ε at δ, noise, clip norm, steps (DP-SGD steps of
    the most-spent site, or rounds of noised sums), and why training ended early if it did."""
    ledger = coordinator.privacy
    if ledger.mode == "off":
        return {"dp_mode": "off"}
    steps = (ledger.rounds_released if ledger.mode == "client"
             else max(ledger.client_steps.values(), default=0))
    return {"dp_mode": ledger.mode, "epsilon": ledger.epsilon, "delta": ledger.reported_delta,
            "noise_multiplier": ledger.reported_noise, "clip_norm": ledger.clip_norm,
            "steps": steps, "target_epsilon": ledger.target_epsilon,
            "final_version": coordinator.final_version, "stopped": ledger.stopped}


def round_metrics_table(coordinator: RoundCoordinator):
    """One row per closed round: who reported, who was missing, examples, duration and the
    clients' validation metrics weighted by examples (and who was sampled, with
    fraction_fit < 1); a pandas DataFrame."""
    import pandas as pd  # the aggregator needs it only at the very end

    rows = [{"round": r.round, "clients": len(r.client_ids),
             "missing": " ".join(map(str, r.missing)), "num_examples": r.num_examples,
             "duration_s": round(r.duration_s, 3), **r.metrics,
             **({"epsilon": r.privacy["epsilon"]} if r.privacy else {}),
             **({"sampled": " ".join(map(str, r.selected))}
                if 0 < len(r.selected) < coordinator.num_clients else {})}
            for r in coordinator.history]
    columns = ["round", "clients", "missing", "num_examples", "duration_s"]
    return pd.DataFrame(rows, columns=columns + sorted(
        {k for row in rows for k in row} - set(columns)))


def client_metrics_table(coordinator: RoundCoordinator):
    """One row per client and round (its validation metrics and examples), then one per
    client for the final model (``round`` = final: its test metrics); a pandas DataFrame."""
    import pandas as pd

    rows = [{"round": str(r.round), "client_id": int(cid),
             "examples": r.client_examples.get(cid), **metrics, **_client_epsilon(r, cid)}
            for r in coordinator.history for cid, metrics in r.client_metrics.items()]
    examples = coordinator.final_client_examples()
    rows += [{"round": "final", "client_id": cid, "examples": examples[cid], **metrics}
             for cid, metrics in coordinator.final_client_metrics().items()]
    columns = ["round", "client_id", "examples"]
    table = pd.DataFrame(rows, columns=columns + sorted(
        {k for row in rows for k in row} - set(columns)))
    return table.astype({"client_id": "Int64", "examples": "Int64"})


def _client_epsilon(record, client_id: str) -> dict[str, float]:
    """dp=example: the site's ε after the round (its DP-SGD ledger), as a table column."""
    spent = record.privacy.get("client_epsilon", {}).get(client_id)
    return {} if spent is None else {"epsilon": spent}


def ensure_writable(directory: str | os.PathLike) -> None:
    """Create ``directory`` if needed and prove a file can be written there (OSError if not)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
        pass


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
