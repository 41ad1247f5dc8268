"""The aggregator as a pipeline task runs it: plain values and artifact paths in, the
values its artifacts log out (no kfp here: the component logs them)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors

from server_component.cli import main
from server_component.outputs import (
    CLIENT_METRICS,
    EVALUATION,
    FINAL_WEIGHTS,
    REPORT,
    ROUND_METRICS,
    SUMMARY,
)


@dataclass(frozen=True)
class AggregatorSettings:
    num_clients: int
    rounds: int
    port: int
    token: str = ""
    strategy: str = "fedavg"
    min_clients: int = 0
    round_timeout: float = 0.0
    checkpoint_dir: str = ""

    def argv(self, host: str, out_dir: str) -> list[str]:
        return ["--host", host, "--port", str(self.port), "--num-clients", str(self.num_clients),
                "--rounds", str(self.rounds), "--strategy", self.strategy,
                "--min-clients", str(self.min_clients),
                "--round-timeout", str(self.round_timeout),
                "--checkpoint-dir", self.checkpoint_dir, "--out", out_dir]


@dataclass(frozen=True)
class ArtifactPaths:
    """Where the task's KFP output artifacts go (each artifact's ``.path``)."""

    model_dir: str  # final weights (safetensors) and the run summary
    round_metrics: str  # CSV: one row per round
    client_metrics: str  # CSV: one row per client and round, plus the final evaluation
    report: str  # the self-contained HTML report


@dataclass
class TaskResult:
    metrics: dict[str, float]  # scalars for the Metrics artifact
    model_metadata: dict  # for the Model artifact's metadata
    evaluation: dict | None  # summed confusion matrix and ROC (EvaluationCounts.to_json)


def run_aggregator_task(settings: AggregatorSettings, paths: ArtifactPaths) -> TaskResult:
    """Serve all rounds, then place each output where its artifact lives.

    Binds ``FL_HOST`` (default 0.0.0.0: the Service routes to the pod IP).
    """
    if settings.token:
        os.environ["FL_TOKEN"] = settings.token  # env, not argv: argv shows in listings
    out = Path(paths.model_dir)
    exit_code = main(settings.argv(os.environ.get("FL_HOST", "0.0.0.0"), str(out)))
    if exit_code:
        raise SystemExit(exit_code)
    for name, target in ((ROUND_METRICS, paths.round_metrics),
                         (CLIENT_METRICS, paths.client_metrics), (REPORT, paths.report)):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(out / name, target)  # each file once, in the artifact that types it
    evaluation_file = out / EVALUATION
    evaluation = json.loads(evaluation_file.read_text()) if evaluation_file.exists() else None
    evaluation_file.unlink(missing_ok=True)
    summary = json.loads((out / SUMMARY).read_text())
    return TaskResult(metrics=_scalars(summary), model_metadata=model_metadata(summary),
                      evaluation=evaluation)


def _scalars(summary: dict) -> dict[str, float]:
    return {**{k: float(v) for k, v in summary["totals"].items()},
            **{k: float(v) for k, v in summary["final_metrics"].items()}}


def model_metadata(summary: dict) -> dict:
    """What the KFP UI shows beside the model: how it was trained and how well it does."""
    settings = summary.get("client_settings", {})
    return {
        "format": "safetensors (" + FINAL_WEIGHTS + "), tensors in Keras get_weights() order",
        "rounds": summary["rounds_completed"], "clients": summary["num_clients"],
        "strategy": summary["strategy"], "dataset": settings.get("dataset", "unknown"),
        "model": settings.get("model", "unknown"),
        "framework": settings.get("framework", "unknown"),
        "aggregator": f"numpy {np.__version__}, safetensors {safetensors.__version__}",
        **{f"final_{k}": round(v, 6) for k, v in summary["final_metrics"].items()},
    }
