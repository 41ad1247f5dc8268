"""``python -m bench.quality --sweep``: federated against centralized quality over a grid of
label skew (Dirichlet alpha), client counts, seeds and strategies.

Every federated run is real: an aggregator process and one client process per site over
loopback HTTP (``bench.client_pool`` keeps the client processes alive between runs, so the
grid is not spent importing TensorFlow). The centralized baseline is trained once per seed
on the union of the data (it does not depend on the split). Both report the final model on
the official test split. Prints one table row per (strategy, alpha, clients) and one summary
line per strategy::

    quality_sweep: strategy=fedavg runs=60 worst_auc=0.9012 median_gap=0.0150 (alpha>=0.3)
        worst_auc_alpha_0.1=0.8801 median_auc_alpha_0.1=0.9100 centralized_median=0.9412
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.client_pool import ClientPool, ClientRunFailed
from bench.harness import AggregatorProcess, markdown_table

# The target of the skew issue is stated over alpha >= 0.3; alpha = 0.1 is reported apart.
HARD_ALPHA = 0.1


@dataclass(frozen=True)
class SweepRun:
    strategy: str
    alpha: float
    clients: int
    seed: int
    auc: float


def parse_list(text: str, kind=float) -> list:
    return [kind(item) for item in text.split(",") if item.strip()]


def client_jobs(args: argparse.Namespace, url: str, clients: int, alpha: float, seed: int,
                strategy: str) -> list[dict]:
    """One ClientConfig (as keyword arguments) per site, with the bench's training settings."""
    from bench.quality import dataset_kwargs

    mu = args.mu if strategy == "fedprox" else 0.0
    return [{"server": url, "client_id": cid, "num_clients": clients, "rounds": args.rounds,
             **dataset_kwargs(args.data), "partition": f"dirichlet:{alpha:g}", "seed": seed,
             "local_epochs": args.local_epochs, "local_steps": args.local_steps,
             "batch_size": args.batch_size, "fedprox_mu": mu,
             "class_weights": args.class_weights, "logit_adjustment": args.logit_adjustment,
             "update_dtype": args.update_dtype, "connect_timeout_s": 60.0,
             "fresh_optimizer": args.fresh_optimizer, "model_width": args.width,
             "model_depth": args.depth, "norm": args.norm, "optimizer": args.optimizer,
             "learning_rate": args.learning_rate}
            for cid in range(clients)]


def federated_auc(args: argparse.Namespace, pool: ClientPool, workdir: Path, clients: int,
                  alpha: float, seed: int, strategy: str) -> float:
    from bench.quality import evaluate_weights

    out = workdir / f"{strategy}-{alpha:g}-{clients}-{seed}"
    server_strategy = "fedavg" if strategy == "fedprox" else strategy
    server = AggregatorProcess("--num-clients", str(clients), "--rounds", str(args.rounds),
                               "--strategy", server_strategy, "--out", str(out),
                               "--shutdown-grace", "60")
    try:
        pool.run(client_jobs(args, server.url, clients, alpha, seed, strategy),
                 on_failure=server.proc.kill)
    except ClientRunFailed:
        server.stop(timeout=10)
        raise
    if server.stop(timeout=120):
        raise RuntimeError("aggregator failed:\n" + "".join(server.lines[-20:]))
    if args.data == "breast_cancer":  # tables: only the clients can feed the model
        import json

        return json.loads((out / "summary.json").read_text())["final_metrics"]["test_auc"]
    seeded = argparse.Namespace(**{**vars(args), "seed": seed})
    return evaluate_weights(seeded, out / "final_weights.safetensors")["auc"]


def run_sweep(args: argparse.Namespace) -> int:
    from bench.quality import run_centralized

    alphas, sizes = parse_list(args.alphas), parse_list(args.clients_list, int)
    strategies, seeds = args.strategies.split(","), range(args.seed, args.seed + args.seeds)
    centralized = {seed: run_centralized(argparse.Namespace(**{**vars(args), "seed": seed}))
                   ["auc"] for seed in seeds}
    runs: list[SweepRun] = []
    with ClientPool(max(sizes)) as pool, tempfile.TemporaryDirectory(prefix="fl-sweep-") as tmp:
        for strategy in strategies:
            for alpha in alphas:
                for clients in sizes:
                    for seed in seeds:
                        auc = federated_auc(args, pool, Path(tmp), clients, alpha, seed,
                                            strategy)
                        runs.append(SweepRun(strategy, alpha, clients, seed, auc))
                        print(f"sweep_run: strategy={strategy} alpha={alpha:g} "
                              f"clients={clients} seed={seed} auc={auc:.4f}", flush=True)
    print(sweep_table(runs, centralized))
    for line in summary_lines(runs, centralized):
        print(line)
    return 0


def sweep_table(runs: Sequence[SweepRun], centralized: dict[int, float]) -> str:
    cells = sorted({(r.strategy, r.alpha, r.clients) for r in runs})
    rows = []
    for strategy, alpha, clients in cells:
        aucs = [r.auc for r in runs if (r.strategy, r.alpha, r.clients) == (strategy, alpha,
                                                                             clients)]
        rows.append((strategy, f"{alpha:g}", clients, len(aucs), f"{min(aucs):.4f}",
                     f"{statistics.median(aucs):.4f}",
                     f"{statistics.median(centralized.values()):.4f}"))
    return markdown_table(["strategy", "alpha", "clients", "seeds", "worst AUC", "median AUC",
                           "centralized median AUC"], rows)


def summary_lines(runs: Sequence[SweepRun], centralized: dict[int, float]) -> list[str]:
    central = statistics.median(centralized.values())
    lines = []
    for strategy in dict.fromkeys(r.strategy for r in runs):
        mine = [r for r in runs if r.strategy == strategy]
        easy = [r.auc for r in mine if r.alpha > HARD_ALPHA] or [float("nan")]
        hard = [r.auc for r in mine if r.alpha <= HARD_ALPHA] or [float("nan")]
        lines.append(
            f"quality_sweep: strategy={strategy} runs={len(mine)} "
            f"worst_auc={min(easy):.4f} median_gap={central - statistics.median(easy):.4f} "
            f"(alpha>={0.3:g}) worst_auc_alpha_{HARD_ALPHA:g}={min(hard):.4f} "
            f"median_auc_alpha_{HARD_ALPHA:g}={statistics.median(hard):.4f} "
            f"centralized_median={central:.4f}")
    return lines
