"""``python -m bench.scale --clients 50 --rounds 10``: many concurrent clients, one machine.

N client processes run the real federated client loop (``federate``: fetch, train, post,
resynchronise when out of step, done) against the real aggregator process. Each trains a tiny
softmax regression (scikit-learn's digits, 64 features x 10 classes, its own shard) with numpy,
so the aggregator's coordination is what is measured, not TensorFlow start-up on 2 cores.
Reports round time percentiles (from the aggregator's round records), errors, and the
aggregator's resident memory at start and peak.
Final line: ``scale: clients=<n> rounds=<r> completed=<yes|no> errors=<k> round_p50=<s>s
round_p90=<s>s round_max=<s>s wall=<s>s aggregator_peak_mib=<x>``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.harness import AggregatorProcess, markdown_table
from server_component.outputs import ROUND_METRICS, SUMMARY

TOKEN = "bench-scale"


class SoftmaxLearner:
    """Softmax regression trained by full-batch gradient descent on one client's shard."""

    def __init__(self, client_id: int, num_clients: int, steps: int = 20, lr: float = 0.5):
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        order = np.random.default_rng(0).permutation(len(y))
        shard = order[client_id::num_clients]
        self.x, self.y = x[shard] / 16.0, y[shard]
        self.weights = [np.zeros((64, 10), np.float32), np.zeros(10, np.float32)]
        self.steps, self.lr = steps, lr

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.weights = [np.array(w, np.float32) for w in weights]

    def _probabilities(self) -> np.ndarray:
        logits = self.x @ self.weights[0] + self.weights[1]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def fit(self, round_: int) -> tuple[int, dict[str, float]]:
        onehot = np.eye(10)[self.y]
        for _ in range(self.steps):
            grad = (self._probabilities() - onehot) / len(self.y)
            self.weights[0] -= self.lr * (self.x.T @ grad).astype(np.float32)
            self.weights[1] -= self.lr * grad.sum(axis=0).astype(np.float32)
        return len(self.y), self._metrics()

    def evaluate_test(self) -> tuple[int, dict[str, float]]:
        return len(self.y), self._metrics()

    def _metrics(self) -> dict[str, float]:
        return {"accuracy": float((self._probabilities().argmax(axis=1) == self.y).mean())}


def _client(url: str, client_id: int, num_clients: int, rounds: int, errors) -> None:
    from client_component.federated_client import ClientConfig, federate
    from client_component.transport import AggregatorClient

    try:
        config = ClientConfig(server=url, client_id=client_id, num_clients=num_clients,
                              rounds=rounds, token=TOKEN, connect_timeout_s=120)
        federate(SoftmaxLearner(client_id, num_clients), AggregatorClient(url, TOKEN), config)
    except Exception as exc:  # counted and reported by the parent
        errors.put(f"client {client_id}: {exc!r}")
        raise


def run(num_clients: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        out = Path(tmp) / "out"
        server = AggregatorProcess("--num-clients", str(num_clients), "--rounds", str(rounds),
                                   "--token", TOKEN, "--out", str(out),
                                   "--threads", str(num_clients + 8), "--shutdown-grace", "60")
        start_rss = server.rss_mib("VmRSS")
        server.track_peak()
        ctx = mp.get_context("spawn")
        errors = ctx.Queue()
        started = time.perf_counter()
        procs = [ctx.Process(target=_client, args=(server.url, cid, num_clients, rounds, errors))
                 for cid in range(num_clients)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=900)
        exit_code = server.stop(timeout=120)
        peak = server.peak_mib
        wall = time.perf_counter() - started
        failures = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
        failures += [f"client process exit {p.exitcode}" for p in procs if p.exitcode]
        summary = json.loads((out / SUMMARY).read_text()) if exit_code == 0 else {}
        durations = (pd.read_csv(out / ROUND_METRICS)["duration_s"].tolist()
                     if exit_code == 0 else [])
    return {"exit_code": exit_code, "failures": failures, "wall": wall, "peak": peak,
            "start_rss": start_rss, "durations": durations,
            "final": summary.get("final_metrics", {})}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rounds < 1:
        parser.error("--clients and --rounds must be at least 1")
    result = run(args.clients, args.rounds)
    durations = result["durations"]
    completed = result["exit_code"] == 0 and not result["failures"] and \
        len(durations) == args.rounds
    q = (statistics.quantiles(durations, n=10, method="inclusive") if len(durations) >= 2
         else durations * 9)
    print(markdown_table(
        ["clients", "rounds closed", "round p50 s", "round p90 s", "round max s", "wall s",
         "aggregator start MiB", "aggregator peak MiB", "final test accuracy"],
        [(args.clients, len(durations), f"{statistics.median(durations):.3f}" if durations
          else "-", f"{q[8]:.3f}" if durations else "-",
          f"{max(durations):.3f}" if durations else "-", f"{result['wall']:.1f}",
          f"{result['start_rss']:.0f}", f"{result['peak']:.0f}",
          f"{result['final'].get('test_accuracy', float('nan')):.3f}")]))
    for failure in result["failures"][:10]:
        print(f"error: {failure}")
    p50 = f"{statistics.median(durations):.3f}s" if durations else "nan"
    print(f"scale: clients={args.clients} rounds={args.rounds} "
          f"completed={'yes' if completed else 'no'} errors={len(result['failures'])} "
          f"round_p50={p50} round_p90={q[8] if durations else float('nan'):.3f}s "
          f"round_max={max(durations) if durations else float('nan'):.3f}s "
          f"wall={result['wall']:.1f}s aggregator_peak_mib={result['peak']:.0f}")
    return 0 if completed else 1


if __name__ == "__main__":
    sys.exit(main())
