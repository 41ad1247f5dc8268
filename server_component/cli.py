"""``python -m server_component``: run the aggregator until every client is done.

Every flag is a setting of ``server_component.settings.AggregatorConfig`` and can also come
from an ``FL_*`` environment variable (``--num-clients`` from ``FL_NUM_CLIENTS``); the
command line wins. Exit codes: ``server_component.run``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from contract.settings import add_arguments, parse_command_line
from server_component.run import run_logged
from server_component.settings import AggregatorConfig


def build_parser() -> argparse.ArgumentParser:
    """The aggregator's flags, one per setting."""
    parser = argparse.ArgumentParser(
        prog="python -m server_component",
        description="Federated-learning aggregator over HTTP (wire protocol v1). Every flag "
        "also reads FL_<FLAG> from the environment, e.g. FL_NUM_CLIENTS.")
    add_arguments(parser, AggregatorConfig)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and check the flags (exit 2 with one line naming the flag), then run."""
    return run_logged(parse_command_line(build_parser(), AggregatorConfig, argv)).exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
