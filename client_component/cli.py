"""``python -m client_component``: one federated client, from flags or ``FL_*`` env vars
(every flag is a setting of ``client_component.settings.ClientConfig``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from client_component.run import run_logged
from client_component.settings import ClientConfig
from contract.settings import command_line, parse_command_line

PROG = "python -m client_component"
DESCRIPTION = "Federated-learning client: trains locally, exchanges weights with the aggregator."


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and check the flags (exit 2 with one line naming the flag), then run."""
    parser = command_line(ClientConfig, PROG, DESCRIPTION)
    return run_logged(parse_command_line(parser, ClientConfig, argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
