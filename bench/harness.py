"""Shared pieces of the benchmarks: a real aggregator process, its peak RSS, and synthetic
model updates split like a CNN's layers."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
# Fractions of the parameters per layer, roughly a small CNN's (convs, dense, head).
LAYER_SHARES = (0.02, 0.08, 0.6, 0.25, 0.05)


def layer_shapes(params: int) -> list[tuple[int, ...]]:
    sizes = [max(1, int(params * share)) for share in LAYER_SHARES]
    sizes[-1] += params - sum(sizes)
    return [(s,) for s in sizes]


def model_weights(params: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape, dtype=np.float32) for shape in layer_shapes(params)]


class AggregatorProcess:
    """``python -m server_component`` on a free loopback port; its output is kept.
    ``launcher`` prefixes the command (a profiler, as bench.profile does)."""

    def __init__(self, *flags: str, launcher: Sequence[str] = ()) -> None:
        self.proc = subprocess.Popen(
            [*launcher, sys.executable, "-m", "server_component", "--host", "127.0.0.1",
             "--port", "0", *flags], cwd=REPO_ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.url = self._wait_listening()
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_listening(self) -> str:
        for line in self.proc.stdout:
            self.lines.append(line)
            match = re.search(r"event=listening url=(\S+)", line)
            if match:
                return match.group(1)
        raise RuntimeError("aggregator exited before listening:\n" + "".join(self.lines))

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def track_peak(self, interval_s: float = 0.1) -> None:
        """Keep reading VmHWM until the process exits (it may exit on its own once every
        client is done, after which /proc no longer reports its memory)."""
        self.peak_mib = self.rss_mib("VmHWM")

        def sample() -> None:
            while self.proc.poll() is None:
                try:
                    self.peak_mib = max(self.peak_mib, self.rss_mib("VmHWM"))
                except (OSError, AttributeError):  # exited between poll and read
                    return
                time.sleep(interval_s)

        threading.Thread(target=sample, daemon=True).start()

    def rss_mib(self, field: str = "VmHWM") -> float:
        """Peak (VmHWM) or current (VmRSS) resident memory of the aggregator, in MiB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kib = int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1))
        return kib / 1024

    def stop(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def peak_rss_mib(pid: int | str = "self") -> float:
    """VmHWM of a process (this one by default), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) / 1024
