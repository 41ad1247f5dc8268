"""The aggregator as a pipeline task runs it: plain paths in, final scalars out (no kfp here)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from server_component.cli import main
from server_component.outputs import ROUND_METRICS, SUMMARY


def run_aggregator_task(*, num_clients: int, rounds: int, port: int, token: str,
                        out_dir: str, round_metrics_path: str) -> dict[str, float]:
    """Serve all rounds, write outputs to ``out_dir``, copy the round metrics CSV to
    ``round_metrics_path``; returns the final scalars for the Metrics artifact.

    Binds ``FL_HOST`` (default 0.0.0.0: the Service routes to the pod IP).
    """
    argv = ["--host", os.environ.get("FL_HOST", "0.0.0.0"), "--port", str(port),
            "--num-clients", str(num_clients), "--rounds", str(rounds), "--out", out_dir]
    if token:
        os.environ["FL_TOKEN"] = token  # env, not argv: argv shows in process listings
    exit_code = main(argv)
    if exit_code:
        raise SystemExit(exit_code)
    Path(round_metrics_path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(out_dir) / ROUND_METRICS, round_metrics_path)
    summary = json.loads((Path(out_dir) / SUMMARY).read_text())
    return {"rounds_completed": float(summary["rounds_completed"]),
            **{k: float(v) for k, v in summary["final_metrics"].items()}}
