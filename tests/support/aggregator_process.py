"""The aggregator as a real process (``python -m server_component``) for the tests that
kill, restart or overload it; every one started is killed when its test ends (conftest)."""

from __future__ import annotations

import subprocess
import sys
import threading

from tests.support.paths import REPO_ROOT

TOKEN = "resilience"
STARTED: list[subprocess.Popen] = []


def kill_leftovers() -> None:
    """Kill every aggregator a test started and did not see exit (also after a failure)."""
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class AggregatorProcess:
    def __init__(self, port: int, out, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server_component", "--host", "127.0.0.1", "--port",
             str(port), "--token", TOKEN, "--out", str(out), "--shutdown-grace", "20", *flags],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        STARTED.append(self.proc)
        self.lines: list[str] = []
        self._new_line = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.wait_for("event=listening", timeout=30), "aggregator did not start"

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()

    def wait_for(self, *fragments: str, timeout: float = 60) -> bool:
        """Block until every fragment has appeared in the output."""
        with self._new_line:
            return self._new_line.wait_for(
                lambda: all(f in self.output for f in fragments), timeout=timeout)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    @property
    def output(self) -> str:
        return "".join(self.lines)
