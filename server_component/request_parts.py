"""What the aggregator's endpoints read from a request: the caller, the body (bounded by
Content-Length), query parameters; each refusal is a typed protocol error (4xx)."""

from __future__ import annotations

import math

from flask import g, request

from contract.credentials import Caller
from contract.errors import MalformedRequest, PayloadTooLarge, Unauthorized
from contract.safetensors_io import byte_buffer, read_exactly


def require_caller_is(client_id: int) -> None:
    """A client's token speaks only for that client (401 otherwise, nothing is changed)."""
    caller: Caller = g.caller
    if not caller.may_act_for(client_id):
        raise Unauthorized(f"the bearer token is client {caller.client_id}'s: it cannot act "
                           f"for client {client_id}")


def checked_length(limit: int) -> int:
    """The declared body size: 400 without Content-Length, 413 above ``limit``."""
    length = request.content_length
    if length is None:
        raise MalformedRequest("Content-Length is required")
    if length > limit:
        raise PayloadTooLarge(f"body of {length} bytes exceeds the limit of {limit} bytes")
    return length


def read_body(limit: int) -> memoryview:
    """The body read straight into one buffer of its size (no chunk list, no join copy)."""
    body = byte_buffer(checked_length(limit))
    read_exactly(request.stream, body)
    return body


def int_arg(name: str) -> int:
    """Query parameter ``name`` as an integer (400 if missing or not one)."""
    raw = request.args.get(name)
    if raw is None or not raw.lstrip("-").isdigit():
        raise MalformedRequest(f"query parameter {name!r} must be an integer, got {raw!r}")
    return int(raw)


def float_arg(name: str, default: float) -> float:
    """Query parameter ``name`` as a finite number, ``default`` when absent (400 if bad)."""
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


