"""Command-line flags that also read ``FL_*`` environment variables (both CLIs use this: in
a pod, env vars are often easier to set than arguments)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable


def add_env_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str,
                 help: str, default: str | None = None, **kwargs) -> None:
    """``--some-flag`` defaulting to ``$FL_SOME_FLAG``, else ``default``; required when
    neither is given. The command line wins."""
    env = "FL_" + flag.lstrip("-").upper().replace("-", "_")
    value = os.environ.get(env, default)
    parser.add_argument(flag, default=value, required=value is None,
                        help=f"{help} (env {env})", **kwargs)


def require(parser: argparse.ArgumentParser, checks: Iterable[tuple[bool, str]]) -> None:
    """Exit 2 with the first failed check's message (argparse's one-line usage error)."""
    for ok, message in checks:
        if not ok:
            parser.error(message)
