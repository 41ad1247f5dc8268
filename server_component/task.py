"""The aggregator as a pipeline task runs it: plain values in, final scalars out (no kfp)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from server_component.cli import main
from server_component.outputs import ROUND_METRICS, SUMMARY


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


def run_aggregator_task(settings: AggregatorSettings, *, out_dir: str,
                        round_metrics_path: str) -> dict[str, float]:
    """Serve all rounds, write outputs to ``out_dir``, copy the round metrics CSV to
    ``round_metrics_path``; returns the final scalars for the Metrics artifact.

    Binds ``FL_HOST`` (default 0.0.0.0: the Service routes to the pod IP).
    """
    if settings.token:
        os.environ["FL_TOKEN"] = settings.token  # env, not argv: argv shows in listings
    exit_code = main(settings.argv(os.environ.get("FL_HOST", "0.0.0.0"), out_dir))
    if exit_code:
        raise SystemExit(exit_code)
    Path(round_metrics_path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(out_dir) / ROUND_METRICS, round_metrics_path)
    summary = json.loads((Path(out_dir) / SUMMARY).read_text())
    return {"rounds_completed": float(summary["rounds_completed"]),
            **{k: float(v) for k, v in summary["final_metrics"].items()}}
