"""Serve the Flask app with waitress (never the Flask dev server) on a background thread."""

from __future__ import annotations

import logging
import threading

from flask import Flask
from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger(__name__)
RECV_BYTES = 1 << 20
INBUF_OVERFLOW = 512 * 1024


class AggregatorServer:
    """A waitress server that can be started and stopped from the calling thread."""

    def __init__(self, app: Flask, host: str, port: int, threads: int,
                 max_body_bytes: int = 1 << 40) -> None:
        self._server = create_server(
            app, host=host, port=port, threads=threads, ident="fl-aggregator",
            # The app answers an oversized update with a JSON 413 from its Content-Length;
            # waitress's own cap (plain-text 413, body never read) is a backstop well above it.
            max_request_body_size=max_body_bytes,
            # Model-sized bodies: read the socket a MiB at a time rather than waitress's 8 KiB
            # (a Python loop iteration and a spill-file write per read). Bodies above 512 KiB
            # still spill to a temp file, so memory stays flat in the number of uploads.
            recv_bytes=RECV_BYTES,
            inbuf_overflow=INBUF_OVERFLOW,
        )
        self.host = host
        self.port = self._server.effective_port
        self._thread = threading.Thread(target=self._run, name="waitress", daemon=True)

    @property
    def url(self) -> str:
        """The address it listens on (127.0.0.1 for a wildcard bind), with the bound port."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> AggregatorServer:
        """Serve in a background thread and log ``event=listening``; returns itself."""
        self._thread.start()
        log.info("event=listening url=%s", self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the requests being handled, then close every socket; the loop ends."""
        if not self._thread.is_alive():
            return
        self._server.task_dispatcher.shutdown(timeout=timeout)
        try:
            # Close from inside the loop thread, so it wakes now rather than at its poll timeout.
            self._server.trigger.pull_trigger(lambda: wasyncore.close_all(self._server._map))
        except OSError:
            # The loop already dropped its trigger: close from here, it ends at its next poll.
            wasyncore.close_all(self._server._map)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._server.run()
        except OSError:
            # close() from another thread tears the socket map down under the loop.
            pass
