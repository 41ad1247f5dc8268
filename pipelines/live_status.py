"""The local run's live status line: rounds closed out of the total and how many clients
have reported in the open round, from the aggregator's log lines.

On a terminal it is one line rewritten in place; elsewhere (CI logs, a pipe) only the
round lines are printed, so a log holds no status spam."""

from __future__ import annotations

import re
import sys
import threading
import time
from typing import TextIO

_UPDATE = re.compile(r"event=update round=(\d+) client=\d+ .*reported=(\d+)/(\d+)")
_CLOSED = re.compile(r"event=round_closed round=(\d+)/(\d+) ")
_CLEAR = "\r\x1b[K"


class LiveStatus:
    """The status line of one local run, fed the aggregator's log lines; ``interactive``
    (default: whether ``stream`` is a terminal) turns the in-place line on."""

    def __init__(self, stream: TextIO = sys.stdout, interactive: bool | None = None) -> None:
        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self.started = time.monotonic()
        self.rounds_done, self.rounds_total = 0, 0
        self.open_round, self.reported, self.clients = 0, 0, 0
        self._lock = threading.Lock()

    def feed(self, line: str) -> None:
        """Take one aggregator log line into account; redraw if it changed anything."""
        if match := _UPDATE.search(line):
            self.open_round, self.reported, self.clients = map(int, match.groups())
        elif match := _CLOSED.search(line):
            self.rounds_done, self.rounds_total = map(int, match.groups())
            self.reported = 0
            self.open_round = self.rounds_done + 1
        else:
            return
        self.draw()

    def text(self) -> str:
        """The status line: rounds done, the open round's reported clients, seconds so far."""
        total = f"/{self.rounds_total}" if self.rounds_total else ""
        elapsed = time.monotonic() - self.started
        open_round = (self.clients and self.open_round > self.rounds_done
                      and not (self.rounds_total and self.open_round > self.rounds_total))
        current = (f", round {self.open_round}: {self.reported}/{self.clients} clients "
                   "reported" if open_round else "")
        return f"[status] rounds done {self.rounds_done}{total}{current}, {elapsed:.0f} s"

    def draw(self) -> None:
        """Rewrite the status line in place; nothing when not on a terminal."""
        if self.interactive:
            with self._lock:
                self.stream.write(_CLEAR + self.text())
                self.stream.flush()

    def print_line(self, line: str) -> None:
        """A normal output line above the status line (tasks print from their threads)."""
        with self._lock:
            if self.interactive:
                self.stream.write(_CLEAR)
            self.stream.write(line + "\n")
            self.stream.flush()
        self.draw()

    def close(self) -> None:
        """Clear the status line, so that what is printed next starts on a clean line."""
        if self.interactive:
            with self._lock:
                self.stream.write(_CLEAR)
                self.stream.flush()
