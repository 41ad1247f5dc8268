"""``python -m bench.quality``: is federated training as good as centralized training?

Federated: a real aggregator process and N real client processes over loopback HTTP (no
in-process averaging shortcut). Centralized baseline: the same model, data, batch size and
learning rate, trained on the union of the clients' data for the same epoch budget
(rounds x local epochs). Both report the final model (no checkpoint selection) on the official
test split. Image models are evaluated centrally on the whole test split; table models by the
clients on their test shares (each client standardises features with its own statistics, so
only the clients can feed the global model), weighted by examples.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.harness import REPO_ROOT, AggregatorProcess, markdown_table
from client_component.model_config import LOGIT_ADJUSTMENTS, OPTIMIZERS

CLIENT_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def dataset_flags(data: str) -> list[str]:
    if data == "breast_cancer":
        return ["--dataset", "breast_cancer"]
    return ["--dataset", "npz", "--data-uri", data]


def dataset_kwargs(data: str) -> dict[str, str]:
    """The same choice as ClientConfig fields."""
    return {"dataset": "breast_cancer"} if data == "breast_cancer" else {
        "dataset": "npz", "data_uri": data}


def load_data(args: argparse.Namespace):
    from client_component.datasets import load_dataset

    if args.data == "breast_cancer":
        return load_dataset("breast_cancer", seed=args.seed)
    return load_dataset("npz", args.data, seed=args.seed)


def run_federated(args: argparse.Namespace, workdir: Path,
                  shared_flags: Sequence[str] = (), aggregator_flags: Sequence[str] = ()
                  ) -> dict:
    """One federated run; ``shared_flags`` go to the aggregator and every client (settings
    both take, such as --dp), ``aggregator_flags`` to the aggregator only."""
    out = workdir / "out"
    server = AggregatorProcess("--num-clients", str(args.clients), "--rounds", str(args.rounds),
                               "--out", str(out), "--shutdown-grace", "60", *shared_flags,
                               *aggregator_flags)
    mu = args.mu if args.strategy == "fedprox" else 0.0
    clients = [subprocess.Popen(
        [sys.executable, "-m", "client_component", "--server", server.url, "--client-id",
         str(cid), "--num-clients", str(args.clients), "--rounds", str(args.rounds),
         *dataset_flags(args.data), "--partition", args.partition, "--seed", str(args.seed),
         "--local-epochs", str(args.local_epochs), "--local-steps", str(args.local_steps),
         "--batch-size", str(args.batch_size),
         "--learning-rate", str(args.learning_rate), "--fedprox-mu", str(mu),
         "--class-weights", args.class_weights, "--logit-adjustment", args.logit_adjustment,
         "--width", str(args.width),
         "--depth", str(args.depth), "--optimizer", args.optimizer, "--norm", args.norm,
         "--update-dtype", args.update_dtype, *shared_flags],
        cwd=REPO_ROOT, env={**os.environ, **CLIENT_ENV}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True) for cid in range(args.clients)]
    for proc in clients:
        _, err = proc.communicate()
        if proc.returncode:
            server.proc.kill()
            raise RuntimeError(f"a client failed:\n{err[-2000:]}")
    if server.stop(timeout=120):
        raise RuntimeError("aggregator failed:\n" + "".join(server.lines[-20:]))
    summary = json.loads((out / "summary.json").read_text())
    return {"weights": out / "final_weights.safetensors",
            "client_metrics": {k.removeprefix("test_"): v
                               for k, v in summary["final_metrics"].items()},
            "privacy": summary.get("privacy", {})}


def model_config(args: argparse.Namespace):
    from client_component.model_config import ModelConfig

    return ModelConfig(width=args.width, depth=args.depth, norm=args.norm,
                       optimizer=args.optimizer, learning_rate=args.learning_rate)


def evaluate_weights(args: argparse.Namespace, weights_path: Path) -> dict:
    from client_component.evaluation import (
        class_probabilities,
        classification_metrics,
        multi_label_metrics,
    )
    from client_component.model import build_model
    from contract import wire

    data = load_data(args)
    model = build_model(data.input_shape, data.num_classes, data.kind, model_config(args),
                        seed=args.seed, multi_label=data.multi_label)
    model.set_weights(wire.tensors_to_list(wire.decode(weights_path.read_bytes()).tensors))
    scores = model.predict(data.x_test, verbose=0, batch_size=512)
    if data.multi_label:
        return multi_label_metrics(data.y_test, scores, data.class_names)
    return classification_metrics(data.y_test, class_probabilities(scores, data.num_classes),
                                  data.num_classes)


def run_centralized(args: argparse.Namespace) -> dict:
    from client_component.keras_learner import KerasLearner, TrainingConfig
    from client_component.local_data import client_shard
    from client_component.model import build_model

    data = client_shard(load_data(args), 0, 1, "iid", seed=args.seed)
    model = build_model(data.input_shape, data.num_classes, data.kind, model_config(args),
                        seed=args.seed, multi_label=data.multi_label)
    learner = KerasLearner(model, data, TrainingConfig(
        args.rounds * args.local_epochs, args.batch_size, 0.0, args.class_weights, args.seed,
        args.logit_adjustment))
    learner.fit(1)
    # One client holding everything: its test share is the whole official test split.
    return learner.evaluate_test()[1]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    p.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data" /
                                         "pneumoniamnist.npz"),
                   help="a MedMNIST .npz path, or breast_cancer")
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--partition", default="iid")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--local-steps", type=int, default=0,
                   help="federated clients: local batches per round instead of epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strategy", choices=("fedavg", "fedprox"), default="fedavg")
    p.add_argument("--mu", type=float, default=0.01, help="FedProx mu with --strategy fedprox")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--class-weights", choices=("none", "balanced"), default="none")
    p.add_argument("--width", type=int, default=32, help="model base width")
    p.add_argument("--depth", type=int, default=2, help="MLP layers / CNN blocks")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="auto",
                   help="auto: SGD with momentum for images, Adam for tables")
    p.add_argument("--norm", choices=("none", "group"), default="group")
    p.add_argument("--logit-adjustment", choices=LOGIT_ADJUSTMENTS, default="prior",
                   help="prior: train on logits + log(local label prior) (label skew)")
    p.add_argument("--update-dtype", choices=("float32", "float16"), default="float32",
                   help="dtype of the clients' posted updates (float16 halves the upload)")
    p.add_argument("--fresh-optimizer", action="store_true",
                   help="zero the clients' optimizer state at the start of every round")
    sweep = p.add_argument_group("sweep", "--sweep: a grid instead of one setting")
    sweep.add_argument("--sweep", action="store_true",
                       help="federated vs centralized over alphas x clients x seeds x strategies")
    sweep.add_argument("--alphas", default="0.1,0.3,0.5,1.0", help="Dirichlet label-skew alphas")
    sweep.add_argument("--clients-list", default="5,7,10", help="numbers of clients")
    sweep.add_argument("--seeds", type=int, default=5, help="seeds per cell, from --seed on")
    sweep.add_argument("--strategies", default="fedavg",
                       help="comma-separated: aggregator strategies (fedavg, fedavgm[:m], "
                       "fedadam, ...) or fedprox (FedAvg with --mu on the clients)")
    private = p.add_argument_group("dp", "--dp: example-level DP (DP-SGD) against no DP")
    private.add_argument("--dp", default="", metavar="EPSILONS",
                         help="comma-separated ε targets, e.g. 1,3,8 (bench.quality_dp)")
    private.add_argument("--dp-partitions", default="iid,dirichlet:0.5")
    private.add_argument("--dp-delta", type=float, default=1e-5)
    private.add_argument("--dp-clip-norm", type=float, default=1.0)
    p.add_argument("--fraction-fit", type=float, default=1.0,
                   help="< 1: this share of the clients per round against all of them "
                   "(quality_sampling line)")
    args = p.parse_args(argv)
    if args.data != "breast_cancer" and not Path(args.data).is_file():
        print(f"error: {args.data} not found (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    if args.dp:
        from bench.quality_dp import run_dp

        return run_dp(args)
    if args.fraction_fit < 1:
        from bench.quality_sampling import run_sampling

        return run_sampling(args)
    if args.sweep:
        from bench.sweep import run_sweep

        return run_sweep(args)
    with tempfile.TemporaryDirectory(prefix="fl-quality-") as workdir:
        federated_run = run_federated(args, Path(workdir))
        federated = (federated_run["client_metrics"] if args.data == "breast_cancer"
                     else evaluate_weights(args, federated_run["weights"]))
    centralized = run_centralized(args)
    setting = (f"{Path(args.data).stem} {args.clients} clients {args.partition} "
               f"{args.strategy} {args.rounds}x{args.local_epochs} {args.update_dtype} updates")
    names = ["auc", "accuracy", "sensitivity", "specificity", "loss"]
    print(markdown_table(["setting", "training", *names], [
        (setting, kind, *(f"{m.get(n, float('nan')):.4f}" for n in names))
        for kind, m in (("federated", federated), ("centralized", centralized))]))
    gap = centralized.get("auc", np.nan) - federated.get("auc", np.nan)
    print(f"quality: federated_auc={federated.get('auc', np.nan):.4f} "
          f"federated_acc={federated['accuracy']:.4f} "
          f"centralized_auc={centralized.get('auc', np.nan):.4f} "
          f"centralized_acc={centralized['accuracy']:.4f} gap_auc={gap:.4f}")
    if "macro_auc" in federated:
        print(multi_label_summary(args, federated, centralized))
    return 0


def multi_label_summary(args: argparse.Namespace, federated: dict, centralized: dict) -> str:
    """The multi-label line: macro AUC federated and centralized, and each finding's
    federated AUC (``auc`` is the macro AUC for multi-label data)."""
    per_label = ",".join(f"{k.removeprefix('auc_')}:{v:.3f}"
                         for k, v in sorted(federated.items()) if k.startswith("auc_"))
    return (f"quality_multilabel: data={Path(args.data).stem} clients={args.clients} "
            f"partition={args.partition} rounds={args.rounds} "
            f"labels={sum(k.startswith('auc_') for k in federated)} "
            f"macro_auc={federated['macro_auc']:.4f} "
            f"centralized_macro_auc={centralized.get('macro_auc', np.nan):.4f} "
            f"per_label={per_label}")


if __name__ == "__main__":
    sys.exit(main())
