"""The wire protocol, version 1: the one module both the aggregator and the clients import.

Tensors travel as safetensors bytes; the metadata (round, client id, number of examples,
metrics) travels in the safetensors header, all values strings. Tensor names are the model's
weight names in order (``w000``, ``w001``, ...), zero-padded so that sorting restores order.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from safetensors.numpy import load as _safetensors_load
from safetensors.numpy import save as _safetensors_save

from server_component.errors import IncompatibleUpdate, MalformedRequest

PROTOCOL_VERSION = "1"
API_PREFIX = "/v1"
CONTENT_TYPE = "application/octet-stream"
TOKEN_SCHEME = "Bearer"

# safetensors metadata keys (binding: other clients speak exactly these).
META_CLIENT_ID = "client_id"
META_ROUND = "round"
META_NUM_EXAMPLES = "num_examples"
META_METRICS = "metrics"
META_PARTITION = "partition"  # optional on init: {"examples": n, "labels": [per-class counts]}

_HEADER_LEN = struct.Struct("<Q")
_MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class Message:
    """A decoded safetensors body: named tensors plus string metadata."""

    tensors: dict[str, np.ndarray]
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UpdateMeta:
    """What a client says about its update, read from the safetensors header."""

    client_id: int
    round: int
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        meta = {
            META_CLIENT_ID: str(self.client_id),
            META_ROUND: str(self.round),
            META_NUM_EXAMPLES: str(self.num_examples),
        }
        if self.metrics:
            meta[META_METRICS] = json.dumps(self.metrics, sort_keys=True)
        return meta


def weight_names(count: int) -> list[str]:
    """Names for ``count`` unnamed weights, in an order that sorting preserves."""
    width = max(3, len(str(max(count - 1, 0))))
    return [f"w{i:0{width}d}" for i in range(count)]


def tensors_from_list(weights: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    return dict(zip(weight_names(len(weights)), weights, strict=True))


def tensors_to_list(tensors: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return [tensors[name] for name in sorted(tensors)]


def encode(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialize named tensors and string metadata to safetensors bytes."""
    contiguous = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    return _safetensors_save(contiguous, metadata=dict(metadata) if metadata else None)


def content_digest(message: Message) -> str:
    """A digest of what a message says, independent of header key order in its bytes
    (safetensors writers may order the header differently for the same content)."""
    digest = hashlib.sha256(json.dumps(message.metadata, sort_keys=True).encode())
    for name in sorted(message.tensors):
        array = np.ascontiguousarray(message.tensors[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def read_metadata(body: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors body, without touching the tensors."""
    if len(body) < _HEADER_LEN.size:
        raise MalformedRequest("body is not safetensors: shorter than its 8-byte header length")
    (header_len,) = _HEADER_LEN.unpack_from(body)
    if header_len > min(len(body) - _HEADER_LEN.size, _MAX_HEADER_BYTES):
        raise MalformedRequest(f"safetensors header length {header_len} exceeds the body")
    try:
        header = json.loads(body[_HEADER_LEN.size : _HEADER_LEN.size + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRequest(f"safetensors header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise MalformedRequest("safetensors header is not a JSON object")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise MalformedRequest("safetensors __metadata__ must map strings to strings")
    return metadata


def decode(body: bytes) -> Message:
    """Parse a safetensors body; raises MalformedRequest on anything that is not one."""
    metadata = read_metadata(body)
    try:
        tensors = _safetensors_load(body)
    except Exception as exc:  # the Rust parser raises its own SafetensorError
        raise MalformedRequest(f"body is not valid safetensors: {exc}") from None
    if not tensors:
        raise MalformedRequest("safetensors body holds no tensors")
    return Message(tensors=tensors, metadata=metadata)


def _int_field(metadata: Mapping[str, str], key: str) -> int:
    raw = metadata.get(key)
    if raw is None:
        raise MalformedRequest(f"safetensors metadata lacks {key!r}")
    try:
        return int(raw)
    except ValueError:
        raise MalformedRequest(f"metadata {key!r} must be an integer, got {raw!r}") from None


def parse_client_id(metadata: Mapping[str, str]) -> int:
    return _int_field(metadata, META_CLIENT_ID)


def parse_update_meta(metadata: Mapping[str, str]) -> UpdateMeta:
    """Validate an update's metadata: 400 for missing/malformed, 422 for a bad example count."""
    client_id = _int_field(metadata, META_CLIENT_ID)
    round_ = _int_field(metadata, META_ROUND)
    raw_examples = metadata.get(META_NUM_EXAMPLES)
    if raw_examples is None:
        raise MalformedRequest(f"safetensors metadata lacks {META_NUM_EXAMPLES!r}")
    if not raw_examples.isdigit() or int(raw_examples) < 1:
        raise IncompatibleUpdate(
            f"{META_NUM_EXAMPLES} must be a positive integer, got {raw_examples!r}"
        )
    return UpdateMeta(
        client_id=client_id,
        round=round_,
        num_examples=int(raw_examples),
        metrics=parse_metrics(metadata.get(META_METRICS)),
    )


def _json_object(raw: str | None, key: str) -> dict:
    """An optional metadata value holding a JSON object ({} when absent)."""
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MalformedRequest(f"metadata {key!r} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedRequest(f"metadata {key!r} must be a JSON object")
    return value


def parse_partition_stats(metadata: Mapping[str, str]) -> dict:
    """The optional ``partition`` JSON object of an init ({} when absent)."""
    return _json_object(metadata.get(META_PARTITION), META_PARTITION)


def parse_metrics(raw: str | None) -> dict[str, float]:
    """A JSON object of finite numbers, or {} when absent."""
    return check_metrics(_json_object(raw, META_METRICS))


def check_metrics(metrics: object) -> dict[str, float]:
    """Metrics as a dict of finite floats; MalformedRequest for anything else."""
    if not isinstance(metrics, dict):
        raise MalformedRequest("'metrics' must be a JSON object of numbers")
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MalformedRequest(f"metric {name!r} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise MalformedRequest(f"metric {name!r} must be finite, got {value!r}")
        clean[name] = float(value)
    return clean
