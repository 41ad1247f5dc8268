"""``python -m server_component``: run the aggregator until every client is done.

Every flag can also come from an ``FL_*`` environment variable (``--num-clients`` from
``FL_NUM_CLIENTS``); the command line wins.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from server_component.app import DEFAULT_MAX_UPDATE_BYTES, create_app
from server_component.coordinator import RoundCoordinator, format_round
from server_component.outputs import write_outputs
from server_component.serve import AggregatorServer

log = logging.getLogger("server_component")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get("FL_" + name.upper().replace("-", "_"), default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m server_component",
        description="Federated-learning aggregator (FedAvg over HTTP). "
        "Every flag also reads FL_<FLAG> from the environment, e.g. FL_NUM_CLIENTS.",
    )
    p.add_argument("--host", default=_env("host", "0.0.0.0"), help="bind address (FL_HOST)")
    p.add_argument("--port", type=int, default=int(_env("port", "8080")),
                   help="TCP port, 0 for any free port (FL_PORT)")
    p.add_argument("--num-clients", type=int, default=_int_env("num_clients"),
                   required=_int_env("num_clients") is None,
                   help="clients that take part in every round (FL_NUM_CLIENTS)")
    p.add_argument("--rounds", type=int, default=_int_env("rounds"),
                   required=_int_env("rounds") is None,
                   help="federated rounds; the final model is version ROUNDS (FL_ROUNDS)")
    p.add_argument("--token", default=_env("token"),
                   help="bearer token every /v1 call must carry (FL_TOKEN); none: no auth")
    p.add_argument("--out", default=_env("out"),
                   help="directory for final weights, round metrics and summary (FL_OUT)")
    p.add_argument("--max-update-mb", type=float,
                   default=float(_env("max_update_mb", str(DEFAULT_MAX_UPDATE_BYTES >> 20))),
                   help="largest accepted init/update body in MiB (FL_MAX_UPDATE_MB)")
    p.add_argument("--shutdown-grace", type=float, default=float(_env("shutdown_grace", "300")),
                   help="seconds to wait for every client's done after the final model "
                   "(FL_SHUTDOWN_GRACE)")
    p.add_argument("--threads", type=int, default=_int_env("threads"),
                   help="waitress worker threads (FL_THREADS); default: clients + 4")
    return p


def _int_env(name: str) -> int | None:
    raw = _env(name)
    return int(raw) if raw not in (None, "") else None


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.num_clients < 1:
        parser.error(f"--num-clients must be at least 1, got {args.num_clients}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in 0..65535, got {args.port}")
    if args.max_update_mb <= 0:
        parser.error(f"--max-update-mb must be positive, got {args.max_update_mb}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    validate(args, parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s aggregator %(message)s",
                        stream=sys.stdout, force=True)
    log.info("event=start run_id=%s num_clients=%d rounds=%d",
             os.environ.get("KFP_RUN_ID", "-"), args.num_clients, args.rounds)
    coordinator = RoundCoordinator(args.num_clients, args.rounds)
    app = create_app(coordinator, token=args.token,
                     max_update_bytes=int(args.max_update_mb * 1024 * 1024))
    server = AggregatorServer(app, args.host, args.port,
                              threads=args.threads or args.num_clients + 4).start()
    try:
        coordinator.wait_until_published()
        complete = coordinator.wait_until_complete(timeout=args.shutdown_grace)
    finally:
        server.stop()
    if not complete:
        log.warning("event=shutdown_grace_expired done=%s", coordinator.status()["done"])
    for record in coordinator.history:
        log.info("event=summary %s", format_round(record, args.rounds))
    if args.out:
        write_outputs(args.out, coordinator)
        log.info("event=outputs_written out=%s", args.out)
    log.info("event=finished final_metrics=%s", coordinator.final_metrics())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
