"""``python -m bench.training``: client training throughput inside the FL client vs plain Keras.

The same data, model and batch size are trained twice in this process, one Keras round
(``--local-epochs`` epochs in one ``model.fit`` call) at a time:
  plain  a fresh model and ``model.fit`` called once per round, nothing else;
  fl     the real federated client (``federate`` with the ``KerasLearner``) against a real
         aggregator process, one client, the same rounds: weights fetched and set, trained,
         evaluated on the validation split, posted.
Throughput is training examples per second of time spent in ``model.fit``; the first round of
each is warm-up (tracing) and not counted. The FL client's whole round time (training plus
evaluation and transport) is reported beside it.
DP-SGD (``dp=example``): the same model trained by the client's DP-SGD (Poisson batches of
expected size ``--batch-size``, per-example clipping, noise), one round of expected examples
per round, timed like ``model.fit``: ``training_dp: dp_vs_plain=<ratio>
dp_examples_per_s=<x> plain_examples_per_s=<x>`` (before the final line).
Final line: ``training: fl_vs_plain=<ratio> fl_examples_per_s=<x> plain_examples_per_s=<x>
fl_round_overhead=<fraction of an FL round not spent training>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness import REPO_ROOT, AggregatorProcess, markdown_table

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "pneumoniamnist.npz"


class FitTimer:
    """Wraps a Keras model's ``fit`` to record the wall time of each call."""

    def __init__(self, model) -> None:
        self.times: list[float] = []
        self._fit = model.fit
        model.fit = self

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self._fit(*args, **kwargs)
        finally:
            self.times.append(time.perf_counter() - start)


def build(args: argparse.Namespace):
    from client_component.datasets import load_dataset
    from client_component.keras_learner import KerasLearner, TrainingConfig
    from client_component.local_data import client_shard
    from client_component.model import build_model
    from client_component.model_config import ModelConfig

    dataset = (load_dataset("npz", str(args.data), seed=0) if args.data != "breast_cancer"
               else load_dataset("breast_cancer", seed=0))
    data = client_shard(dataset, 0, 1, "iid", seed=0)
    model = build_model(data.input_shape, data.num_classes, data.kind,
                        ModelConfig(width=args.width, depth=args.depth), seed=0)
    return KerasLearner(model, data, TrainingConfig(args.local_epochs, args.batch_size))


def run_plain(args: argparse.Namespace) -> tuple[list[float], int]:
    learner = build(args)
    x, y = learner.data.x_train, learner.data.y_train
    timer = FitTimer(learner.model)
    for _ in range(args.rounds):
        learner.model.fit(x, y, batch_size=args.batch_size, epochs=args.local_epochs,
                          verbose=0, shuffle=True)
    return timer.times, len(y)


def run_fl(args: argparse.Namespace) -> tuple[list[float], list[float], int]:
    from client_component.federated_client import ClientConfig, federate
    from client_component.transport import AggregatorClient

    learner = build(args)
    timer = FitTimer(learner.model)
    round_ends: list[float] = []
    fit = learner.fit

    def timed_round_fit(round_: int):
        result = fit(round_)
        round_ends.append(time.perf_counter())
        return result

    learner.fit = timed_round_fit
    server = AggregatorProcess("--num-clients", "1", "--rounds", str(args.rounds),
                               "--shutdown-grace", "30")
    try:
        config = ClientConfig(server=server.url, client_id=0, num_clients=1, rounds=args.rounds,
                              local_epochs=args.local_epochs, batch_size=args.batch_size)
        federate(learner, AggregatorClient(server.url), config)
    finally:
        if server.stop(timeout=60) != 0:
            raise RuntimeError("aggregator failed:\n" + "".join(server.lines[-20:]))
    round_times = [b - a for a, b in zip(round_ends, round_ends[1:], strict=False)]
    return timer.times, round_times, len(learner.data.y_train)


def run_dp_sgd(args: argparse.Namespace) -> tuple[list[float], int]:
    """Seconds per round of DP-SGD and the expected examples a round samples."""
    from client_component.dp_sgd import DpSgdParams

    learner = build(args)
    learner.training.logit_adjustment = "none"
    learner.with_dp_sgd(DpSgdParams(args.batch_size, 1.0, 1.0))
    steps = learner.private_steps_per_round()
    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        learner._dp_sgd.train(learner.data.x_train, learner.data.y_train, steps)
        times.append(time.perf_counter() - start)
    return times, steps * args.batch_size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="a MedMNIST .npz, or breast_cancer (default: PneumoniaMNIST)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, the first is warm-up")
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2)
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the first one is warm-up)")
    if args.data != "breast_cancer" and not Path(args.data).is_file():
        parser.error(f"--data {args.data}: no such file (see ../shared/data/README.md)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    plain_times, examples = run_plain(args)
    fl_times, fl_rounds, fl_examples = run_fl(args)
    dp_times, dp_examples = run_dp_sgd(args)
    plain_rate = examples * args.local_epochs / statistics.median(plain_times[1:])
    dp_rate = dp_examples / statistics.median(dp_times[1:])
    fl_rate = fl_examples * args.local_epochs / statistics.median(fl_times[1:])
    round_s = statistics.median(fl_rounds) if fl_rounds else float("nan")
    overhead = 1 - statistics.median(fl_times[1:]) / round_s
    print(markdown_table(
        ["path", "examples/round", "median fit s", "examples/s", "median round s"],
        [("plain model.fit", examples * args.local_epochs,
          f"{statistics.median(plain_times[1:]):.2f}", f"{plain_rate:.0f}", "-"),
         ("FL client", fl_examples * args.local_epochs,
          f"{statistics.median(fl_times[1:]):.2f}", f"{fl_rate:.0f}", f"{round_s:.2f}")]))
    print(f"training_dp: dp_vs_plain={dp_rate / plain_rate:.3f} "
          f"dp_examples_per_s={dp_rate:.0f} plain_examples_per_s={plain_rate:.0f}")
    print(f"training: fl_vs_plain={fl_rate / plain_rate:.3f} fl_examples_per_s={fl_rate:.0f} "
          f"plain_examples_per_s={plain_rate:.0f} fl_round_overhead={overhead:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
