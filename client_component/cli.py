"""``python -m client_component``: one federated client, from flags or ``FL_*`` env vars."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from client_component.datasets import DATASETS, DatasetError
from client_component.model_config import LOGIT_ADJUSTMENTS
from client_component.partition import PARTITIONS, PartitionError, parse_partition
from contract.env_args import add_env_flag as flag
from contract.env_args import require

UPDATE_DTYPES = ("float32", "float16")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m client_component",
        description="Federated-learning client: trains locally, exchanges weights with the "
        "aggregator. Every flag also reads FL_<FLAG> from the environment.")
    flag(p, "--server", "aggregator base URL, e.g. http://127.0.0.1:8080")
    flag(p, "--client-id", "this client's id, 0..num_clients-1", type=int)
    flag(p, "--num-clients", "clients in the run", type=int)
    flag(p, "--rounds", "federated rounds", type=int)
    flag(p, "--token", "aggregator bearer token", "")
    data = p.add_argument_group("data")
    flag(data, "--dataset", f"one of {', '.join(DATASETS)}", "breast_cancer", choices=DATASETS)
    flag(data, "--data-uri", "path, mounted volume or http(s) URL; {client_id} is filled in", "")
    flag(data, "--data-sha256", "expected sha256 of a data file or download", "")
    flag(data, "--label-column", "label column of a single CSV", "")
    flag(data, "--image-size", "image folders: resize to this square size", "28", type=int)
    flag(data, "--channels", "image folders: 1 grayscale, 3 RGB", "1", type=int)
    flag(data, "--partition", f"simulated split of one dataset: {', '.join(PARTITIONS)}", "iid")
    flag(data, "--seed", "seed of the split, model init and shuffling", "0", type=int)
    model = p.add_argument_group("model and training")
    flag(model, "--model", "auto, mlp, conv1d, cnn or keras:<Application>", "auto")
    flag(model, "--width", "base width (units or filters)", "32", type=int)
    flag(model, "--depth", "layers (MLP) or conv blocks (CNN)", "2", type=int)
    flag(model, "--norm", "CNN normalisation: group (GroupNorm, federated-safe) or none",
         "group")
    flag(model, "--optimizer", "auto (SGD with momentum for images, Adam for tables), adam "
         "or sgd", "auto")
    flag(model, "--learning-rate", "local learning rate", "0.01", type=float)
    flag(model, "--local-epochs", "local epochs per round", "1", type=int)
    flag(model, "--local-steps", "local batches per round instead of epochs (0: use "
         "--local-epochs)", "0", type=int)
    flag(model, "--batch-size", "local batch size", "32", type=int)
    flag(model, "--fedprox-mu", "FedProx proximal term; 0 = plain FedAvg", "0", type=float)
    flag(model, "--class-weights", "none or balanced", "none", choices=("none", "balanced"))
    flag(model, "--logit-adjustment", "prior: train on logits + log(this site's label prior), "
         "so a skewed site does not drag the model to its majority class; none", "prior",
         choices=LOGIT_ADJUSTMENTS)
    flag(model, "--update-dtype", "dtype of the posted updates: float32, or float16 to halve "
         "the upload (the aggregator averages in float64)", "float32",
         choices=UPDATE_DTYPES)
    flag(p, "--connect-timeout", "seconds to wait for the aggregator to come up", "600",
         type=float)
    return p


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    checks = [
        (args.num_clients >= 1, f"--num-clients must be at least 1, got {args.num_clients}"),
        (0 <= args.client_id < max(args.num_clients, 1),
         f"--client-id must be in 0..{args.num_clients - 1}, got {args.client_id}"),
        (args.rounds >= 1, f"--rounds must be at least 1, got {args.rounds}"),
        (args.local_epochs >= 1, f"--local-epochs must be at least 1, got {args.local_epochs}"),
        (args.local_steps >= 0, f"--local-steps must be 0 or more, got {args.local_steps}"),
        (args.batch_size >= 1, f"--batch-size must be at least 1, got {args.batch_size}"),
        (args.learning_rate > 0, f"--learning-rate must be positive, got {args.learning_rate}"),
        (args.fedprox_mu >= 0, f"--fedprox-mu must be >= 0, got {args.fedprox_mu}"),
        (args.image_size >= 8, f"--image-size must be at least 8, got {args.image_size}"),
        (args.channels in (1, 3), f"--channels must be 1 or 3, got {args.channels}"),
    ]
    require(parser, checks)
    try:
        parse_partition(args.partition)
    except PartitionError as exc:
        parser.error(f"--partition: {exc}")


def config_from_args(args: argparse.Namespace):
    from client_component.federated_client import ClientConfig
    from client_component.model_config import ModelConfig

    return ClientConfig(
        server=args.server, client_id=args.client_id, num_clients=args.num_clients,
        rounds=args.rounds, dataset=args.dataset,
        data_uri=args.data_uri.replace("{client_id}", str(args.client_id)),
        data_sha256=args.data_sha256, label_column=args.label_column,
        image_size=args.image_size, channels=args.channels, partition=args.partition,
        seed=args.seed, local_epochs=args.local_epochs, local_steps=args.local_steps,
        batch_size=args.batch_size,
        model=ModelConfig(args.model, args.width, args.depth, args.norm, args.optimizer,
                          args.learning_rate),
        fedprox_mu=args.fedprox_mu, class_weights=args.class_weights,
        logit_adjustment=args.logit_adjustment,
        update_dtype=args.update_dtype, token=args.token or None,
        connect_timeout_s=args.connect_timeout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    validate(args, parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        stream=sys.stdout, force=True)
    config = config_from_args(args)
    try:
        config.model.validate()
    except ValueError as exc:
        parser.error(str(exc))
    # Imported after validation so that a bad flag fails fast, without loading TensorFlow.
    from client_component.federated_client import OutOfStep, run_client
    from client_component.transport import AggregatorError, AggregatorUnreachable

    try:
        run_client(config)
    except (DatasetError, PartitionError) as exc:
        print(f"client {args.client_id}: {exc}", file=sys.stderr)
        return 2
    except (AggregatorUnreachable, AggregatorError, OutOfStep) as exc:
        # Exit 1 (not 2): the task may succeed when KFP retries it.
        print(f"client {args.client_id}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
