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

from contract.env_args import add_env_flag as flag
from contract.env_args import require
from server_component.app import DEFAULT_MAX_UPDATE_BYTES, create_app
from server_component.checkpoint import CheckpointError, load_checkpoint
from server_component.coordinator import RoundCoordinator, format_round
from server_component.memory import pin_mmap_threshold
from server_component.outputs import ensure_writable, write_outputs
from server_component.serve import AggregatorServer
from server_component.strategies import STRATEGIES, StrategyError, parse_strategy

log = logging.getLogger("server_component")
FAILURE_LINGER_S = 30.0  # keep answering 410 for a while so clients learn the run failed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m server_component",
        description="Federated-learning aggregator over HTTP (wire protocol v1). Every flag "
        "also reads FL_<FLAG> from the environment, e.g. FL_NUM_CLIENTS.")
    flag(p, "--host", "bind address", "0.0.0.0")
    flag(p, "--port", "TCP port; 0 picks a free one", "8080", type=int)
    flag(p, "--num-clients", "clients in the run, ids 0..N-1", type=int)
    flag(p, "--rounds", "federated rounds; the final model is version ROUNDS", type=int)
    flag(p, "--min-clients", "fewest updates a round may close with at its deadline "
         "(default: all clients)", "0", type=int)
    flag(p, "--round-timeout", "seconds a round stays open; 0 = no deadline", "0", type=float)
    flag(p, "--strategy", f"aggregation: {', '.join(STRATEGIES)}; median and trimmed-mean "
         "keep every update of a round in memory", "fedavg")
    flag(p, "--token", "bearer token every /v1 call must carry; empty = no auth", "")
    flag(p, "--checkpoint-dir", "directory for per-round checkpoints; a restart resumes "
         "from it", "")
    flag(p, "--out", "directory for final weights, round metrics and summary", "")
    flag(p, "--max-update-mb", "largest accepted init/update body in MiB",
         str(DEFAULT_MAX_UPDATE_BYTES >> 20), type=float)
    flag(p, "--shutdown-grace", "seconds to wait for every client's done after the final "
         "model", "300", type=float)
    flag(p, "--threads", "waitress worker threads; 0 = clients + 4", "0", type=int)
    return p


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    checks = [
        (args.num_clients >= 1, f"--num-clients must be at least 1, got {args.num_clients}"),
        (args.rounds >= 1, f"--rounds must be at least 1, got {args.rounds}"),
        (0 <= args.min_clients <= args.num_clients,
         f"--min-clients must be in 1..{args.num_clients} (0 = all), got {args.min_clients}"),
        (args.round_timeout >= 0, f"--round-timeout must be >= 0, got {args.round_timeout}"),
        (0 <= args.port <= 65535, f"--port must be in 0..65535, got {args.port}"),
        (args.max_update_mb > 0, f"--max-update-mb must be positive, got {args.max_update_mb}"),
        (args.shutdown_grace >= 0, f"--shutdown-grace must be >= 0, got {args.shutdown_grace}"),
        (args.threads >= 0, f"--threads must be >= 0, got {args.threads}"),
    ]
    require(parser, checks)


def require_writable_dirs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Fail before the clients spend a whole run training when the results could not be
    kept: every output directory must exist (or be creatable) and take a file."""
    for flag_name, directory in (("--out", args.out), ("--checkpoint-dir", args.checkpoint_dir)):
        if not directory:
            continue
        try:
            ensure_writable(directory)
        except OSError as exc:
            parser.exit(2, f"error: {flag_name} {directory} is not a writable directory: "
                           f"{exc.strerror or exc}\n")


def build_coordinator(args: argparse.Namespace, parser: argparse.ArgumentParser):
    try:
        strategy = parse_strategy(args.strategy)
    except StrategyError as exc:
        parser.error(f"--strategy: {exc}")
    coordinator = RoundCoordinator(
        args.num_clients, args.rounds, strategy=strategy,
        min_clients=args.min_clients or None, round_timeout=args.round_timeout or None,
        checkpoint_dir=args.checkpoint_dir or None)
    if args.checkpoint_dir:
        try:
            checkpoint = load_checkpoint(args.checkpoint_dir, coordinator.config)
        except CheckpointError as exc:
            parser.exit(2, f"error: {exc}\n")
        if checkpoint is not None:
            coordinator.restore(checkpoint)
    return coordinator


def report_parameters(args: argparse.Namespace, coordinator: RoundCoordinator) -> dict:
    """The aggregator's settings as the report lists them (never the token)."""
    return {"run_id": os.environ.get("KFP_RUN_ID", "-"), "num_clients": args.num_clients,
            "rounds": args.rounds, "min_clients": coordinator.min_clients,
            "round_timeout_s": args.round_timeout or "none", "strategy": coordinator.strategy.name,
            "checkpoint_dir": args.checkpoint_dir or "none"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    validate(args, parser)
    require_writable_dirs(args, parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s aggregator %(message)s",
                        stream=sys.stdout, force=True)
    pin_mmap_threshold()
    coordinator = build_coordinator(args, parser)
    log.info("event=start run_id=%s num_clients=%d rounds=%d min_clients=%d strategy=%s",
             os.environ.get("KFP_RUN_ID", "-"), args.num_clients, args.rounds,
             coordinator.min_clients, coordinator.strategy.name)
    max_update_bytes = int(args.max_update_mb * 1024 * 1024)
    app = create_app(coordinator, token=args.token or None, max_update_bytes=max_update_bytes)
    server = AggregatorServer(app, args.host, args.port,
                              threads=args.threads or args.num_clients + 4,
                              max_body_bytes=2 * max_update_bytes + (1 << 20)).start()
    try:
        coordinator.enforce_deadlines()
        linger = min(args.shutdown_grace, FAILURE_LINGER_S) if coordinator.failure else None
        if not coordinator.wait_until_complete(timeout=linger or args.shutdown_grace):
            log.warning("event=shutdown_without_all_done done=%s", coordinator.status().done)
    finally:
        server.stop()
    for record in coordinator.history:
        log.info("event=summary %s", format_round(record, args.rounds))
    if args.out:
        try:
            write_outputs(args.out, coordinator, report_parameters(args, coordinator))
        except OSError as exc:
            # Out of space or the volume gone: say where, keep the checkpoint as it is.
            log.error("event=failed cannot write outputs to %s: %s", args.out, exc)
            return 1
        except Exception as exc:  # a bug in a table or the report must not hide the rest
            log.exception("event=failed writing outputs to %s: %r", args.out, exc)
            return 1
        log.info("event=outputs_written out=%s", args.out)
    if coordinator.failure:
        log.error("event=failed %s", coordinator.failure)
        return 1
    log.info("event=finished final_metrics=%s", coordinator.final_metrics())
    return 0
