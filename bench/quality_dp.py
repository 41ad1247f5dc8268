"""``python -m bench.quality --dp 1,3,8``: test AUC of example-level DP (DP-SGD) runs at each
ε against the same run without DP, side by side in one run, for each partition.

Every run is the real thing (an aggregator process and client processes over loopback), with
``dp_noise_multiplier=0`` and ``dp_target_epsilon=ε``: each site calibrates its own noise
multiplier (RDP accountant) so that its budget is spent exactly at the last round, and no
site ever exceeds it. Both runs use ``logit_adjustment=none`` (DP-SGD refuses the label-prior
loss). One summary line per (partition, ε):

    quality_dp: data=... partition=... clients=... epsilon=<target> delta=...
    spent_epsilon=<largest site's> noise_multiplier=<smallest site's> rounds=... auc=...
    nonprivate_auc=... time_s=... nonprivate_time_s=... time_ratio=...
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import markdown_table


def run_dp(args: argparse.Namespace) -> int:
    """Every partition: a run without DP, then one per ε; a table and the summary lines."""
    epsilons = [float(e) for e in args.dp.split(",")]
    rows, lines = [], []
    for partition in args.dp_partitions.split(","):
        base = copy.copy(args)
        base.partition, base.logit_adjustment = partition, "none"
        plain_auc, plain_time, _ = _run(base, [])
        for epsilon in epsilons:
            flags = ["--dp", "example", "--dp-noise-multiplier", "0",
                     "--dp-clip-norm", str(args.dp_clip_norm), "--dp-delta",
                     str(args.dp_delta), "--dp-target-epsilon", str(epsilon)]
            auc, seconds, spent = _run(base, flags)
            ratio = seconds / plain_time
            rows.append((partition, f"{epsilon:g}", f"{spent.get('epsilon', np.nan):.3f}",
                         f"{spent.get('noise_multiplier', np.nan):.3f}", f"{auc:.4f}",
                         f"{plain_auc:.4f}", f"{ratio:.2f}"))
            lines.append(
                f"quality_dp: data={Path(args.data).stem} partition={partition} "
                f"clients={args.clients} epsilon={epsilon:g} delta={args.dp_delta:g} "
                f"spent_epsilon={spent.get('epsilon', np.nan):.4f} "
                f"noise_multiplier={spent.get('noise_multiplier', np.nan):.4f} "
                f"rounds={args.rounds} auc={auc:.4f} nonprivate_auc={plain_auc:.4f} "
                f"time_s={seconds:.1f} nonprivate_time_s={plain_time:.1f} "
                f"time_ratio={ratio:.2f}")
    print(markdown_table(["partition", "target ε", "spent ε", "noise multiplier (smallest)",
                          "test AUC (DP-SGD)", "test AUC (no DP)", "wall time ratio"], rows))
    print("\n".join(lines))
    return 0


def _run(args: argparse.Namespace, dp_flags: list[str]) -> tuple[float, float, dict]:
    from bench.quality import evaluate_weights, run_federated

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fl-quality-dp-") as workdir:
        result = run_federated(args, Path(workdir), dp_flags)
        metrics = (result["client_metrics"] if args.data == "breast_cancer"
                   else evaluate_weights(args, result["weights"]))
    return (float(metrics.get("auc", np.nan)), time.perf_counter() - started,
            result["privacy"])
