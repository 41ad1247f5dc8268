"""``python -m client_component``: one federated client, from flags or ``FL_*`` env vars."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from client_component.data import DATASETS, DatasetError
from client_component.partition import PARTITIONS, PartitionError


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get("FL_" + name.upper(), default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m client_component",
        description="Federated-learning client: trains locally, exchanges weights with the "
        "aggregator. Every flag also reads FL_<FLAG> from the environment.",
    )
    p.add_argument("--server", default=_env("server"), required=_env("server") is None,
                   help="aggregator base URL, e.g. http://127.0.0.1:8080 (FL_SERVER)")
    p.add_argument("--client-id", type=int, default=_env("client_id"),
                   required=_env("client_id") is None, help="0..num_clients-1 (FL_CLIENT_ID)")
    p.add_argument("--num-clients", type=int, default=_env("num_clients"),
                   required=_env("num_clients") is None, help="clients in the run (FL_NUM_CLIENTS)")
    p.add_argument("--rounds", type=int, default=_env("rounds"), required=_env("rounds") is None,
                   help="federated rounds (FL_ROUNDS)")
    p.add_argument("--dataset", default=_env("dataset", "breast_cancer"), choices=DATASETS,
                   help="dataset to load (FL_DATASET)")
    p.add_argument("--data-uri", default=_env("data_uri", ""),
                   help="path of the data for file datasets, {client_id} filled in (FL_DATA_URI)")
    p.add_argument("--partition", default=_env("partition", "iid"),
                   help=f"how one dataset is split across clients: {', '.join(PARTITIONS)} "
                   "(FL_PARTITION)")
    p.add_argument("--seed", type=int, default=int(_env("seed", "0")), help="seed (FL_SEED)")
    p.add_argument("--local-epochs", type=int, default=int(_env("local_epochs", "1")),
                   help="local epochs per round (FL_LOCAL_EPOCHS)")
    p.add_argument("--batch-size", type=int, default=int(_env("batch_size", "32")),
                   help="local batch size (FL_BATCH_SIZE)")
    p.add_argument("--learning-rate", type=float, default=float(_env("learning_rate", "0.001")),
                   help="Adam learning rate (FL_LEARNING_RATE)")
    p.add_argument("--token", default=_env("token"), help="aggregator bearer token (FL_TOKEN)")
    p.add_argument("--connect-timeout", type=float, default=float(_env("connect_timeout", "600")),
                   help="seconds to wait for the aggregator to come up (FL_CONNECT_TIMEOUT)")
    return p


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    checks = [
        (args.num_clients >= 1, f"--num-clients must be at least 1, got {args.num_clients}"),
        (0 <= args.client_id < max(args.num_clients, 1),
         f"--client-id must be in 0..{args.num_clients - 1}, got {args.client_id}"),
        (args.rounds >= 1, f"--rounds must be at least 1, got {args.rounds}"),
        (args.local_epochs >= 1, f"--local-epochs must be at least 1, got {args.local_epochs}"),
        (args.batch_size >= 1, f"--batch-size must be at least 1, got {args.batch_size}"),
        (args.learning_rate > 0, f"--learning-rate must be positive, got {args.learning_rate}"),
    ]
    for ok, message in checks:
        if not ok:
            parser.error(message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    validate(args, parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        stream=sys.stdout, force=True)
    # Imported after validation so that a bad flag fails fast, without loading TensorFlow.
    from client_component.federated_client import ClientConfig, run_client

    config = ClientConfig(
        server=args.server, client_id=args.client_id, num_clients=args.num_clients,
        rounds=args.rounds, dataset=args.dataset,
        data_uri=args.data_uri.replace("{client_id}", str(args.client_id)),
        partition=args.partition, seed=args.seed, local_epochs=args.local_epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, token=args.token,
        connect_timeout_s=args.connect_timeout,
    )
    try:
        run_client(config)
    except (DatasetError, PartitionError) as exc:
        print(f"client {args.client_id}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
