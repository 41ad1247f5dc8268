"""A loopback HTTP server that records the requests it receives and answers each with a
scripted reply: the next (status, body) of ``replies``, or whatever ``route`` returns."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class RecordedRequest:
    def __init__(self, method: str, target: str, headers: dict, body: bytes) -> None:
        parts = urlsplit(target)
        self.method, self.path, self.query = method, parts.path, parse_qs(parts.query)
        self.headers, self.body = headers, body

    @property
    def json(self):
        return json.loads(self.body) if self.body else None


Reply = tuple[int, dict]


class HttpRecorder:
    def __init__(self, route: Callable[[RecordedRequest], Reply] | None = None) -> None:
        self.requests: list[RecordedRequest] = []
        self.replies: list[Reply] = []
        self.route = route
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = RecordedRequest(self.command, self.path, dict(self.headers),
                                          self.rfile.read(length))
                recorder.requests.append(request)
                status, body = recorder._reply(request)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _reply(self, request: RecordedRequest) -> Reply:
        if self.replies:
            return self.replies.pop(0)
        return self.route(request) if self.route else (200, {})

    def __enter__(self) -> HttpRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def k8s_status(code: int, reason: str) -> dict:
        return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                "reason": reason, "message": reason}
