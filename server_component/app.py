"""Flask app factory: HTTP endpoints of protocol v1 over one RoundCoordinator."""

from __future__ import annotations

import hmac
import math
import threading

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import wrap_file

from server_component import wire
from server_component.coordinator import RoundCoordinator
from server_component.errors import MalformedRequest, PayloadTooLarge, ProtocolError, Unauthorized
from server_component.evaluation_counts import EvaluationCounts
from server_component.memory_reader import MemoryReader
from server_component.observability import metrics_text, status_page
from server_component.safetensors_io import byte_buffer, read_exactly

DEFAULT_MAX_UPDATE_BYTES = 1024 * 1024 * 1024
MAX_LONG_POLL_S = 120.0
RESPONSE_BLOCK = 1 << 20
MAX_DONE_BYTES = 1 << 20  # metrics and counts of one client: a few kB


def create_app(
    coordinator: RoundCoordinator,
    *,
    token: str | None = None,
    max_update_bytes: int = DEFAULT_MAX_UPDATE_BYTES,
    ingest_slots: int = 2,
) -> Flask:
    """Build the aggregator's WSGI app. ``ingest_slots`` bounds how many updates are read
    at once: a streamed update costs a few MiB of buffers while it is checked (two at a time
    use both cores of a small node), and folding into the sums is serial under the lock."""
    app = Flask(__name__)
    ingest = threading.BoundedSemaphore(ingest_slots)

    @app.errorhandler(ProtocolError)
    def protocol_error(exc: ProtocolError):
        if request.path in ("/v1/update", "/v1/init"):
            coordinator.count_rejection(exc.code)
        return jsonify(exc.to_json()), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify({"error": exc.name.lower().replace(" ", "_"), "detail": exc.description}), (
            exc.code or 500
        )

    @app.before_request
    def authorize():
        if token and request.path.startswith(wire.API_PREFIX):
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            valid = hmac.compare_digest(given.encode(), token.encode())
            if scheme != wire.TOKEN_SCHEME or not valid:
                raise Unauthorized("missing or wrong bearer token")

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/")
    def index():
        return Response(status_page(coordinator), mimetype="text/html")

    @app.get("/metrics")
    def metrics():
        return Response(metrics_text(coordinator), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/v1/status")
    def status():
        return jsonify(coordinator.status())

    @app.post("/v1/init")
    def init():
        message = wire.decode(_read_body(max_update_bytes))
        adopted = coordinator.submit_init(message)
        return jsonify({"adopted": adopted}), 202 if adopted else 200

    @app.get("/v1/model")
    def model():
        version = _int_arg("round")
        wait = min(max(_float_arg("wait", 0.0), 0.0), MAX_LONG_POLL_S)
        body = coordinator.wait_for_model(version, timeout=wait)
        if body is None:
            return Response(status=204)
        coordinator.count_model_sent(len(body))
        return _binary_response(body)

    @app.post("/v1/update")
    def update():
        with ingest:
            outcome = coordinator.submit_update(_update_message(max_update_bytes),
                                                body_size=request.content_length)
        return jsonify({"status": outcome}), 202 if outcome == "accepted" else 200

    @app.post("/v1/done")
    def done():
        _checked_length(MAX_DONE_BYTES)
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict) or not _is_int(payload.get("client_id")):
            raise MalformedRequest('body must be JSON {"client_id": <int>}')
        metrics = wire.check_metrics(payload.get("metrics") or {})
        num_examples = payload.get("num_examples", 1)
        if not _is_int(num_examples) or num_examples < 1:
            raise MalformedRequest("num_examples must be a positive integer")
        counts = payload.get("counts")
        coordinator.submit_done(
            payload["client_id"], metrics, num_examples,
            None if counts is None else EvaluationCounts.parse(counts, num_examples))
        return jsonify({"status": "ok"}), 200

    return app


def _checked_length(limit: int) -> int:
    length = request.content_length
    if length is None:
        raise MalformedRequest("Content-Length is required")
    if length > limit:
        raise PayloadTooLarge(f"body of {length} bytes exceeds the limit of {limit} bytes")
    return length


def _read_body(limit: int) -> memoryview:
    """The body read straight into one buffer of its size (no chunk list, no join copy)."""
    body = byte_buffer(_checked_length(limit))
    read_exactly(request.stream, body)
    return body


def _update_message(limit: int) -> wire.Message | wire.StreamedMessage:
    """An update left where the server spooled it (waitress: a temp file past 512 KiB), read
    a chunk at a time; in memory only where the server's input stream cannot seek."""
    length = _checked_length(limit)
    stream = request.environ.get("wsgi.input")
    seekable = getattr(stream, "seekable", None)
    if seekable is not None and seekable():
        return wire.StreamedMessage(stream, length)
    return wire.decode(_read_body(limit))


def _binary_response(body: bytes | memoryview) -> Response:
    """Stream ``body`` through the server's file wrapper: waitress then sends straight from
    it instead of first copying a model-sized chunk into its spill-to-disk buffers."""
    blocks = wrap_file(request.environ, MemoryReader(body), buffer_size=RESPONSE_BLOCK)
    response = Response(blocks, mimetype=wire.CONTENT_TYPE, direct_passthrough=True)
    response.content_length = len(body)
    return response


def _int_arg(name: str) -> int:
    raw = request.args.get(name)
    if raw is None or not raw.lstrip("-").isdigit():
        raise MalformedRequest(f"query parameter {name!r} must be an integer, got {raw!r}")
    return int(raw)


def _float_arg(name: str, default: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise MalformedRequest(f"query parameter {name!r} must be a number, got {raw!r}")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
