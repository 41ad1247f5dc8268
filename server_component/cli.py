"""``python -m server_component``: run the aggregator until every client is done.

Every flag is a setting of ``server_component.settings.AggregatorConfig`` and can also come
from an ``FL_*`` environment variable; the command line wins. Exit codes:
``server_component.run``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from contract.settings import command_line, parse_command_line
from server_component.run import run_logged
from server_component.settings import AggregatorConfig

PROG = "python -m server_component"
DESCRIPTION = "Federated-learning aggregator over HTTP (wire protocol v1)."


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and check the flags (exit 2 with one line naming the flag), then run."""
    parser = command_line(AggregatorConfig, PROG, DESCRIPTION)
    return run_logged(parse_command_line(parser, AggregatorConfig, argv)).exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
