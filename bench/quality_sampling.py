"""``python -m bench.quality --fraction-fit 0.5``: test AUC of a run that samples a share of
the clients each round against full participation, same data, model and rounds, side by
side in one run (real aggregator and client processes over loopback). One summary line:

    quality_sampling: data=... partition=... clients=... rounds=... fraction_fit=...
    clients_per_round=... auc=... full_auc=... client_rounds=... full_client_rounds=...
    time_s=... full_time_s=...

``client_rounds`` counts the local trainings the run paid for (rounds x clients sampled).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import markdown_table


def run_sampling(args: argparse.Namespace) -> int:
    """Full participation, then ``--fraction-fit``; a table and the summary line."""
    full = _run(args, [])
    sampled = _run(args, ["--fraction-fit", str(args.fraction_fit), "--seed", str(args.seed)])
    per_round = sampled["client_rounds"] / args.rounds
    print(markdown_table(
        ["partition", "fraction_fit", "clients per round", "test AUC", "local trainings",
         "wall time (s)"],
        [(args.partition, "1", str(args.clients), f"{full['auc']:.4f}",
          str(full["client_rounds"]), f"{full['seconds']:.0f}"),
         (args.partition, f"{args.fraction_fit:g}", f"{per_round:g}", f"{sampled['auc']:.4f}",
          str(sampled["client_rounds"]), f"{sampled['seconds']:.0f}")]))
    print(f"quality_sampling: data={Path(args.data).stem} partition={args.partition} "
          f"clients={args.clients} rounds={args.rounds} fraction_fit={args.fraction_fit:g} "
          f"clients_per_round={per_round:g} auc={sampled['auc']:.4f} "
          f"full_auc={full['auc']:.4f} client_rounds={sampled['client_rounds']} "
          f"full_client_rounds={full['client_rounds']} time_s={sampled['seconds']:.1f} "
          f"full_time_s={full['seconds']:.1f}")
    return 0


def _run(args: argparse.Namespace, aggregator_flags: list[str]) -> dict:
    from bench.quality import evaluate_weights, run_federated

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fl-quality-sampling-") as workdir:
        result = run_federated(args, Path(workdir), aggregator_flags=aggregator_flags)
        metrics = (result["client_metrics"] if args.data == "breast_cancer"
                   else evaluate_weights(args, result["weights"]))
        with (Path(workdir) / "out" / "round_metrics.csv").open() as table:
            client_rounds = sum(int(row["clients"]) for row in csv.DictReader(table))
    return {"auc": float(metrics.get("auc", np.nan)), "client_rounds": client_rounds,
            "seconds": time.perf_counter() - started}
