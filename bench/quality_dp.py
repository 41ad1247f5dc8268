"""``python -m bench.quality --dp 1,3,8``: test AUC of example-level DP (DP-SGD) runs at each
ε against the same run without DP, side by side in one run, for each partition.

Every run is the real thing (an aggregator process and client processes over loopback). For
each ε the noise multiplier is calibrated with the RDP accountant so that the site that spends
fastest (the largest sampling rate q = batch / n for its steps) reaches exactly ε at δ after
all rounds, and ``dp_target_epsilon`` = ε is enforced, so no site ever exceeds it. One summary
line per (partition, ε):

    quality_dp: data=... partition=... epsilon=... delta=... noise_multiplier=...
    rounds=... auc=... nonprivate_auc=... time_s=... nonprivate_time_s=... time_ratio=...
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import markdown_table


def site_examples(args: argparse.Namespace, partition: str) -> list[int]:
    """Training examples of each site under ``partition`` (as the clients will split)."""
    from bench.quality import load_data
    from client_component.local_data import client_shard

    data = load_data(args)
    return [len(client_shard(data, cid, args.clients, partition, args.seed).y_train)
            for cid in range(args.clients)]


def calibrated_noise(examples: list[int], args: argparse.Namespace, epsilon: float) -> float:
    """The smallest noise multiplier with which every site's ε after all rounds is at most
    ``epsilon`` (bisection on the accountant, per site; the largest wins)."""
    from contract import privacy

    def site_epsilon(sigma: float, n: int) -> float:
        steps = args.rounds * (args.local_steps or args.local_epochs * math.ceil(
            n / args.batch_size))
        return privacy.Mechanism(sigma, min(1.0, args.batch_size / n)).epsilon(
            steps, args.dp_delta)

    needed = []
    for n in examples:
        low, high = 0.3, 50.0
        for _ in range(40):
            middle = (low + high) / 2
            low, high = (low, middle) if site_epsilon(middle, n) <= epsilon else (middle, high)
        needed.append(high)
    return max(needed)


def run_dp(args: argparse.Namespace) -> int:
    """Every partition: a run without DP, then one per ε; a table and the summary lines."""
    from bench.quality import evaluate_weights, run_federated

    epsilons = [float(e) for e in args.dp.split(",")]
    rows, lines = [], []
    for partition in args.dp_partitions.split(","):
        base = copy.copy(args)
        base.partition, base.logit_adjustment = partition, "none"
        plain_auc, plain_time = _run(base, [], run_federated, evaluate_weights)
        examples = site_examples(base, partition)
        for epsilon in epsilons:
            sigma = calibrated_noise(examples, base, epsilon)
            flags = ["--dp", "example", "--dp-noise-multiplier", f"{sigma:.6f}",
                     "--dp-clip-norm", str(args.dp_clip_norm), "--dp-delta",
                     str(args.dp_delta), "--dp-target-epsilon", str(epsilon)]
            auc, seconds = _run(base, flags, run_federated, evaluate_weights)
            rows.append((partition, f"{epsilon:g}", f"{sigma:.3f}", f"{auc:.4f}",
                         f"{plain_auc:.4f}", f"{seconds / plain_time:.2f}"))
            lines.append(
                f"quality_dp: data={Path(args.data).stem} partition={partition} "
                f"clients={args.clients} epsilon={epsilon:g} delta={args.dp_delta:g} "
                f"noise_multiplier={sigma:.4f} rounds={args.rounds} auc={auc:.4f} "
                f"nonprivate_auc={plain_auc:.4f} time_s={seconds:.1f} "
                f"nonprivate_time_s={plain_time:.1f} time_ratio={seconds / plain_time:.2f}")
    print(markdown_table(["partition", "ε", "noise multiplier", "test AUC (DP-SGD)",
                          "test AUC (no DP)", "wall time ratio"], rows))
    print("\n".join(lines))
    return 0


def _run(args, client_flags, run_federated, evaluate_weights) -> tuple[float, float]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fl-quality-dp-") as workdir:
        result = run_federated(args, Path(workdir), client_flags)
        metrics = (result["client_metrics"] if args.data == "breast_cancer"
                   else evaluate_weights(args, result["weights"]))
    return float(metrics.get("auc", np.nan)), time.perf_counter() - started
