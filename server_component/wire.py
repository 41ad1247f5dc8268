"""The wire protocol, version 1: the one module both the aggregator and the clients import.

Tensors travel as safetensors bytes; the metadata (round, client id, number of examples,
metrics) travels in the safetensors header, all values strings. Tensor names are the model's
weight names in order (``w000``, ``w001``, ...), zero-padded so that sorting restores order.

Encoding and decoding follow the safetensors format (an 8-byte header length, a JSON header,
the raw little-endian tensor bytes) without the ``safetensors.numpy`` copies: ``decode``
returns read-only ``np.frombuffer`` views into the body and ``encode`` copies each tensor
once, into the body. On a 25M-parameter model those copies were most of the aggregator's
memory and of its time per update (bench.memory, bench.transport); the tests check both
directions against the safetensors library byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

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
_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I8": np.int8,
           "I16": np.int16, "I32": np.int32, "I64": np.int64, "U8": np.uint8,
           "U16": np.uint16, "U32": np.uint32, "U64": np.uint64, "BOOL": np.bool_}
_DTYPE_NAMES = {np.dtype(t): name for name, t in _DTYPES.items()}


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
    """Serialize named tensors and string metadata to safetensors bytes (one copy of each
    tensor, straight into the result)."""
    return b"".join(_parts(tensors, metadata))


def write(handle: BinaryIO, tensors: Mapping[str, np.ndarray],
          metadata: Mapping[str, str] | None = None) -> int:
    """Write what ``encode`` returns to ``handle`` without building it in memory; the size."""
    return sum(handle.write(part) for part in _parts(tensors, metadata))


def _parts(tensors: Mapping[str, np.ndarray],
           metadata: Mapping[str, str] | None) -> list[bytes | memoryview]:
    arrays = {name: _little_endian(np.ascontiguousarray(array))
              for name, array in sorted(tensors.items())}
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, array in arrays.items():
        dtype = _DTYPE_NAMES.get(array.dtype)
        if dtype is None:
            raise ValueError(f"tensor {name!r} has dtype {array.dtype}, which safetensors lacks")
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(len(raw) + _HEADER_LEN.size) % 8)  # the format aligns the data to 8 bytes
    return [_HEADER_LEN.pack(len(raw)), raw,
            *(memoryview(a).cast("B") for a in arrays.values() if a.size)]


def _little_endian(array: np.ndarray) -> np.ndarray:
    return array.astype(array.dtype.newbyteorder("<")) if array.dtype.byteorder == ">" else array


def content_digest(message: Message) -> str:
    """A digest of what a message says, independent of header key order in its bytes
    (safetensors writers may order the header differently for the same content)."""
    digest = hashlib.sha256(json.dumps(message.metadata, sort_keys=True).encode())
    for name in sorted(message.tensors):
        array = np.ascontiguousarray(message.tensors[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _header(body: bytes | memoryview) -> tuple[dict, int]:
    """The parsed JSON header of a safetensors body and where its data starts."""
    if len(body) < _HEADER_LEN.size:
        raise MalformedRequest("body is not safetensors: shorter than its 8-byte header length")
    (header_len,) = _HEADER_LEN.unpack_from(body)
    if header_len > min(len(body) - _HEADER_LEN.size, _MAX_HEADER_BYTES):
        raise MalformedRequest(f"safetensors header length {header_len} exceeds the body")
    data_start = _HEADER_LEN.size + header_len
    try:
        header = json.loads(bytes(body[_HEADER_LEN.size:data_start]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRequest(f"safetensors header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise MalformedRequest("safetensors header is not a JSON object")
    return header, data_start


def read_metadata(body: bytes | memoryview) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors body, without touching the tensors."""
    return _metadata(_header(body)[0])


def _metadata(header: dict) -> dict[str, str]:
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise MalformedRequest("safetensors __metadata__ must map strings to strings")
    return metadata


def decode(body: bytes | bytearray | memoryview) -> Message:
    """Parse a safetensors body into read-only views of it (no tensor bytes are copied);
    raises MalformedRequest on anything that is not valid safetensors."""
    header, data_start = _header(body)
    metadata = _metadata(header)
    entries = sorted(((name, _TensorEntry.parse(name, info))
                      for name, info in header.items() if name != "__metadata__"),
                     key=lambda item: item[1].begin)
    if not entries:
        raise MalformedRequest("safetensors body holds no tensors")
    end = 0
    for name, entry in entries:
        if entry.begin != end:  # the format has no holes and no overlaps
            raise MalformedRequest(f"tensor {name!r} data_offsets leave a gap or overlap")
        end = entry.end
    if data_start + end != len(body):
        raise MalformedRequest(f"tensor data is {len(body) - data_start} bytes, "
                               f"the header describes {end}")
    tensors = {name: entry.view(body, data_start) for name, entry in entries}
    return Message(tensors=tensors, metadata=metadata)


@dataclass(frozen=True)
class _TensorEntry:
    dtype: np.dtype
    shape: tuple[int, ...]
    begin: int
    end: int

    @classmethod
    def parse(cls, name: str, info: object) -> _TensorEntry:
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise MalformedRequest(f"tensor {name!r}: header entry needs "
                                   "dtype, shape and data_offsets")
        dtype = _DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
        if dtype is None:
            raise MalformedRequest(f"tensor {name!r}: unsupported dtype {info['dtype']!r}")
        shape, offsets = info["shape"], info["data_offsets"]
        if not _ints(shape) or not _ints(offsets) or len(offsets) != 2:
            raise MalformedRequest(f"tensor {name!r}: shape and data_offsets must be lists of "
                                   "non-negative integers")
        entry = cls(np.dtype(dtype).newbyteorder("<"), tuple(shape), offsets[0], offsets[1])
        expected = math.prod(entry.shape) * entry.dtype.itemsize
        if entry.end - entry.begin != expected:
            raise MalformedRequest(f"tensor {name!r}: data_offsets span {entry.end - entry.begin}"
                                   f" bytes, its dtype and shape need {expected}")
        return entry

    def view(self, body: bytes | bytearray | memoryview, data_start: int) -> np.ndarray:
        count = math.prod(self.shape)
        array = np.frombuffer(body, self.dtype, count, data_start + self.begin)
        array.flags.writeable = False
        return array.reshape(self.shape)


def _ints(values: object) -> bool:
    return isinstance(values, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)


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
