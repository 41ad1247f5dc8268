"""The secure-aggregation endpoints (``/v1/secagg/*``, registered when the run uses it): each
stage's POST, and a long poll for the stage's result, as ``/v1/model`` waits for a model.

A POST answers 202 when it is new and 200 for an identical repeat (a retried request), so
every call is safe to retry; a different body for the same stage is 409. Long polls answer
204 while the stage is still open.
"""

from __future__ import annotations

import threading

from flask import Flask, Response, jsonify, request

from contract import wire
from contract.messages import MODEL_NOT_YET
from contract.secagg.messages import KeyAdvert, MaskedInput, SharesOut, UnmaskReply
from server_component import request_parts
from server_component.coordinator import RoundCoordinator

NEW, REPEAT = 202, 200
MAX_JSON_BYTES = 64 * 1024  # a key advertisement is ~150 bytes


def register(app: Flask, coordinator: RoundCoordinator, max_body_bytes: int,
             max_long_poll_s: float, ingest: threading.BoundedSemaphore) -> None:
    """Add the four stages' endpoints to the aggregator's app."""

    def wait() -> float:
        return min(max(request_parts.float_arg("wait", 0.0), 0.0), max_long_poll_s)

    @app.post("/v1/secagg/keys")
    def secagg_keys():
        request_parts.checked_length(MAX_JSON_BYTES)
        advert = KeyAdvert.from_json(request.get_json(silent=True))
        request_parts.require_caller_is(advert.client_id)
        session, fresh = coordinator.secagg_keys(advert)
        return jsonify({"session": session}), NEW if fresh else REPEAT

    @app.get("/v1/secagg/roster")
    def secagg_roster():
        roster = coordinator.secagg_roster(request_parts.int_arg("round"), wait())
        return _json_or_not_yet(None if roster is None else roster.to_json())

    @app.post("/v1/secagg/shares")
    def secagg_shares():
        message = SharesOut.decode(request_parts.read_body(max_body_bytes))
        request_parts.require_caller_is(message.client_id)
        return _outcome(coordinator.secagg_shares(message))

    @app.get("/v1/secagg/shares")
    def secagg_inbox():
        client_id = request_parts.int_arg("client_id")
        request_parts.require_caller_is(client_id)
        inbox = coordinator.secagg_inbox(request_parts.int_arg("round"), client_id, wait())
        if inbox is None:
            return Response(status=MODEL_NOT_YET)
        return Response(inbox.encode(), mimetype=wire.CONTENT_TYPE)

    @app.post("/v1/secagg/masked")
    def secagg_masked():
        with ingest:
            message = MaskedInput.decode(request_parts.read_body(max_body_bytes))
            request_parts.require_caller_is(message.client_id)
            return _outcome(coordinator.secagg_masked(message))

    @app.get("/v1/secagg/unmask")
    def secagg_unmask_request():
        asked = coordinator.secagg_unmask_request(request_parts.int_arg("round"), wait())
        return _json_or_not_yet(None if asked is None else asked.to_json())

    @app.post("/v1/secagg/unmask")
    def secagg_unmask():
        reply = UnmaskReply.decode(request_parts.read_body(max_body_bytes))
        request_parts.require_caller_is(reply.client_id)
        return _outcome(coordinator.secagg_unmask(reply))


def _outcome(fresh: bool):
    return jsonify({"status": "accepted" if fresh else "duplicate"}), NEW if fresh else REPEAT


def _json_or_not_yet(body: dict | None):
    if body is None:
        return Response(status=MODEL_NOT_YET)
    return jsonify(body)


