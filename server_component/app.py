"""Flask app factory: HTTP endpoints of protocol v1 over one RoundCoordinator."""

from __future__ import annotations

import threading

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import wrap_file

from contract import openapi, wire
from contract.credentials import Caller, identify
from contract.errors import MalformedRequest, ProtocolError, Unauthorized
from contract.messages import (
    INIT_ADOPTED,
    INIT_IGNORED,
    MODEL_NOT_YET,
    UPDATE_ACCEPTED,
    UPDATE_DUPLICATE,
    DoneReport,
)
from contract.safetensors_io import FormatError
from server_component import request_parts, secagg_routes
from server_component.coordinator import RoundCoordinator
from server_component.evaluation_counts import EvaluationCounts
from server_component.memory_reader import MemoryReader
from server_component.observability import metrics_text, status_page
from server_component.settings import DEFAULT_MAX_UPDATE_MB

DEFAULT_MAX_UPDATE_BYTES = int(DEFAULT_MAX_UPDATE_MB * 1024 * 1024)
RESPONSE_BLOCK = 1 << 20
MAX_DONE_BYTES = 1 << 20  # metrics and counts of one client: a few kB


def create_app(
    coordinator: RoundCoordinator,
    *,
    token: str | None = None,
    max_update_bytes: int = DEFAULT_MAX_UPDATE_BYTES,
    ingest_slots: int = 2,
    max_long_poll_s: float = openapi.DEFAULT_MAX_LONG_POLL_S,
) -> Flask:
    """Build the aggregator's WSGI app. ``ingest_slots`` bounds how many updates and inits
    are read at once: a streamed update costs a few MiB of buffers while it is checked (two
    at a time use both cores of a small node), and folding into the sums is serial under the
    lock.
    ``max_long_poll_s`` caps the ``wait`` of a model request (the OpenAPI document says it)."""
    app = Flask(__name__)
    api_document = openapi.document(max_long_poll_s, coordinator.rounds,
                                    coordinator.num_clients, coordinator.secure is not None)
    ingest = threading.BoundedSemaphore(ingest_slots)

    @app.errorhandler(ProtocolError)
    def protocol_error(exc: ProtocolError):
        if request.path in ("/v1/update", "/v1/init"):
            coordinator.counters.rejected(exc.code)
        return jsonify(exc.to_json()), exc.status

    @app.errorhandler(FormatError)
    def format_error(exc: FormatError):
        return protocol_error(MalformedRequest(str(exc)))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        response = jsonify({"error": exc.name.lower().replace(" ", "_"),
                            "detail": exc.description})
        # Werkzeug's own headers matter (RFC 9110: a 405 lists the allowed methods in Allow).
        response.headers.extend((k, v) for k, v in exc.get_headers()
                                if k.lower() != "content-type")
        return response, exc.code or 500

    @app.before_request
    def authorize():
        """Every /v1 call carries the run secret or a client's own token (contract.credentials);
        who it is stays with the request for the calls that speak for a client."""
        g.caller = Caller(None)
        if token and request.path.startswith(wire.API_PREFIX):
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            caller = identify(given, token) if scheme == wire.TOKEN_SCHEME else None
            if caller is None:
                raise Unauthorized("missing or wrong bearer token")
            g.caller = caller

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/openapi.json")
    def openapi_json():
        return jsonify(api_document)

    @app.get("/")
    def index():
        return Response(status_page(coordinator), mimetype="text/html")

    @app.get("/metrics")
    def metrics():
        return Response(metrics_text(coordinator), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/v1/status")
    def status():
        return jsonify(coordinator.status().to_json())

    @app.post("/v1/init")
    def init():
        with ingest:  # each client offers a model-sized init: read them as updates are
            message = _spooled_message(max_update_bytes)
            request_parts.require_caller_is(wire.client_id_of(message.metadata))
            adopted = coordinator.submit_init(message)
        return jsonify({"adopted": adopted}), INIT_ADOPTED if adopted else INIT_IGNORED

    @app.get("/v1/model")
    def model():
        version = request_parts.int_arg("round")
        wait = min(max(request_parts.float_arg("wait", 0.0), 0.0), max_long_poll_s)
        body = coordinator.wait_for_model(version, timeout=wait)
        if body is None:
            return Response(status=MODEL_NOT_YET)
        coordinator.counters.model_sent(len(body))
        return _binary_response(body)

    @app.post("/v1/update")
    def update():
        with ingest:
            message = _spooled_message(max_update_bytes)
            request_parts.require_caller_is(wire.client_id_of(message.metadata))
            outcome = coordinator.submit_update(message, body_size=request.content_length)
        return jsonify({"status": outcome}), (UPDATE_ACCEPTED if outcome == "accepted"
                                              else UPDATE_DUPLICATE)

    @app.post("/v1/done")
    def done():
        request_parts.checked_length(MAX_DONE_BYTES)
        report = DoneReport.from_json(request.get_json(silent=True))
        request_parts.require_caller_is(report.client_id)
        counts = report.counts
        coordinator.submit_done(
            report.client_id, report.metrics, report.num_examples,
            None if counts is None else EvaluationCounts.parse(counts, report.num_examples))
        return jsonify({"status": "ok"}), 200

    if coordinator.secure is not None:
        secagg_routes.register(app, coordinator, max_update_bytes, max_long_poll_s, ingest)
    return app


def _spooled_message(limit: int) -> wire.Message | wire.StreamedMessage:
    """A binary body (update or init) left where the server spooled it (waitress: a temp
    file past 512 KiB), read a chunk at a time; in memory only where the server's input
    stream cannot seek."""
    length = request_parts.checked_length(limit)
    stream = request.environ.get("wsgi.input")
    seekable = getattr(stream, "seekable", None)
    if seekable is not None and seekable():
        return wire.StreamedMessage(stream, length)
    return wire.decode(request_parts.read_body(limit))


def _binary_response(body: bytes | memoryview) -> Response:
    """Stream ``body`` through the server's file wrapper: waitress then sends straight from
    it instead of first copying a model-sized chunk into its spill-to-disk buffers."""
    blocks = wrap_file(request.environ, MemoryReader(body), buffer_size=RESPONSE_BLOCK)
    response = Response(blocks, mimetype=wire.CONTENT_TYPE, direct_passthrough=True)
    response.content_length = len(body)
    return response



