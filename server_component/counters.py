"""Monotonic event counts of a run, for ``/metrics`` and the run summary. They have a lock of
their own: counting a request never waits for a round to be folded or aggregated."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field


@dataclass
class Counts:
    """A consistent copy of the counters at one moment."""

    updates_accepted: int = 0
    updates_duplicate: int = 0
    bytes_received: int = 0  # bodies of accepted updates
    bytes_sent: int = 0  # model bodies served
    rounds_closed: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # by error code


class Counters:
    """The run's counters; every method is safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = Counts()

    def update_accepted(self, body_bytes: int) -> None:
        """Count an update folded into its round, and its body's bytes."""
        with self._lock:
            self._counts.updates_accepted += 1
            self._counts.bytes_received += body_bytes

    def update_duplicate(self) -> None:
        """Count a client's identical re-send of an update already accepted."""
        with self._lock:
            self._counts.updates_duplicate += 1

    def rejected(self, code: str) -> None:
        """Count a refused request under its error code (``ProtocolError.code``)."""
        with self._lock:
            self._counts.rejected[code] = self._counts.rejected.get(code, 0) + 1

    def model_sent(self, body_bytes: int) -> None:
        """Count the bytes of a model body served to a client."""
        with self._lock:
            self._counts.bytes_sent += body_bytes

    def round_closed(self) -> int:
        """Count a closed round; how many have closed in this process."""
        with self._lock:
            self._counts.rounds_closed += 1
            return self._counts.rounds_closed

    def snapshot(self) -> Counts:
        """The counts now, copied, so that later counting does not change them."""
        with self._lock:
            return dataclasses.replace(self._counts, rejected=dict(self._counts.rejected))
