"""``python -m client_component``: one federated client, from flags or ``FL_*`` env vars
(every flag is a setting of ``client_component.settings.ClientConfig``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from client_component.run import run_logged
from client_component.settings import ClientConfig
from contract.settings import add_arguments, parse_command_line


def build_parser() -> argparse.ArgumentParser:
    """The client's flags, one per setting."""
    parser = argparse.ArgumentParser(
        prog="python -m client_component",
        description="Federated-learning client: trains locally, exchanges weights with the "
        "aggregator. Every flag also reads FL_<FLAG> from the environment.")
    add_arguments(parser, ClientConfig)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and check the flags (exit 2 with one line naming the flag), then run."""
    return run_logged(parse_command_line(build_parser(), ClientConfig, argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
