"""The safetensors format (an 8-byte little-endian header length, a JSON header, the raw
little-endian tensor bytes) read and written without intermediate copies.

``safetensors.numpy`` copies every tensor twice on the way in and on the way out; on a
25M-parameter model those copies were most of the aggregator's memory and much of its time per
update (bench.memory, bench.transport). Here a body in memory decodes to read-only
``np.frombuffer`` views, a body in a file is read a chunk at a time, and encoding copies each
tensor once. The tests check both directions against the safetensors library.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np


class FormatError(ValueError):
    """Bytes that are not a valid safetensors body (the aggregator answers 400 malformed)."""


HEADER_LEN = struct.Struct("<Q")
MAX_HEADER_BYTES = 100 * 1024 * 1024
DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I8": np.int8,
          "I16": np.int16, "I32": np.int32, "I64": np.int64, "U8": np.uint8,
          "U16": np.uint16, "U32": np.uint32, "U64": np.uint64, "BOOL": np.bool_}
DTYPE_NAMES = {np.dtype(t): name for name, t in DTYPES.items()}


@dataclass(frozen=True)
class TensorEntry:
    """One tensor's header entry: dtype, shape and byte range within the data section."""

    dtype: np.dtype
    shape: tuple[int, ...]
    begin: int
    end: int

    @classmethod
    def parse(cls, name: str, info: object) -> TensorEntry:
        """Validate the header entry of tensor ``name``: FormatError names what is wrong."""
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise FormatError(f"tensor {name!r}: header entry needs "
                                   "dtype, shape and data_offsets")
        dtype = DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
        if dtype is None:
            raise FormatError(f"tensor {name!r}: unsupported dtype {info['dtype']!r}")
        shape, offsets = info["shape"], info["data_offsets"]
        if not _ints(shape) or not _ints(offsets) or len(offsets) != 2:
            raise FormatError(f"tensor {name!r}: shape and data_offsets must be lists of "
                                   "non-negative integers")
        entry = cls(np.dtype(dtype).newbyteorder("<"), tuple(shape), offsets[0], offsets[1])
        if entry.end - entry.begin != entry.nbytes:
            raise FormatError(f"tensor {name!r}: data_offsets span {entry.end - entry.begin}"
                                   f" bytes, its dtype and shape need {entry.nbytes}")
        return entry

    @property
    def size(self) -> int:
        """The number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """The byte length its dtype and shape need."""
        return self.size * self.dtype.itemsize


@dataclass(frozen=True)
class Header:
    """A parsed, validated header: metadata and tensor entries in data order."""

    metadata: dict[str, str]
    entries: tuple[tuple[str, TensorEntry], ...]
    data_start: int

    @classmethod
    def parse(cls, prefix: bytes | bytearray | memoryview, total_length: int) -> Header:
        """``prefix`` holds at least the length field and the header of a body of
        ``total_length`` bytes; every offset is checked against that length."""
        if total_length < HEADER_LEN.size or len(prefix) < HEADER_LEN.size:
            raise FormatError("body is not safetensors: shorter than its 8-byte header "
                                   "length")
        (header_len,) = HEADER_LEN.unpack_from(prefix)
        if header_len > min(total_length - HEADER_LEN.size, MAX_HEADER_BYTES):
            raise FormatError(f"safetensors header length {header_len} exceeds the body")
        data_start = HEADER_LEN.size + header_len
        raw = _json_object(bytes(prefix[HEADER_LEN.size:data_start]))
        entries = sorted(((name, TensorEntry.parse(name, info))
                          for name, info in raw.items() if name != "__metadata__"),
                         key=lambda item: item[1].begin)
        if not entries:
            raise FormatError("safetensors body holds no tensors")
        _check_contiguous(entries, total_length - data_start)
        return cls(_metadata(raw), tuple(entries), data_start)

    @property
    def layout(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Each tensor's (shape, dtype) by name."""
        return {name: (e.shape, e.dtype) for name, e in self.entries}

    def views(self, body: bytes | bytearray | memoryview) -> dict[str, np.ndarray]:
        """Read-only arrays over the tensor bytes of ``body`` (nothing copied)."""
        views = {}
        for name, entry in self.entries:
            array = np.frombuffer(body, entry.dtype, entry.size, self.data_start + entry.begin)
            array.flags.writeable = False
            views[name] = array.reshape(entry.shape)
        return views

    def read_chunks(self, file: BinaryIO, chunk_bytes: int
                    ) -> Iterator[tuple[str, int, np.ndarray]]:
        """(name, first flat index, 1-D values) from ``file`` positioned at the data start,
        in data order; each chunk's values are only valid until the next one is read."""
        largest = max(entry.nbytes for _, entry in self.entries)
        buffer = bytearray(max(1, min(chunk_bytes, largest)))
        for name, entry in self.entries:
            step = max(1, len(buffer) // entry.dtype.itemsize) * entry.dtype.itemsize
            for offset in range(0, entry.nbytes, step):
                count = min(step, entry.nbytes - offset)
                read_exactly(file, memoryview(buffer)[:count])
                values = np.frombuffer(buffer, entry.dtype, count // entry.dtype.itemsize)
                yield name, offset // entry.dtype.itemsize, values


def read_header_bytes(file: BinaryIO, total_length: int) -> bytes:
    """The length field and JSON header at the start of ``file`` (bounded reads)."""
    first = file.read(HEADER_LEN.size)
    if len(first) < HEADER_LEN.size:
        raise FormatError("body is not safetensors: shorter than its 8-byte header length")
    (header_len,) = HEADER_LEN.unpack(first)
    if header_len > min(total_length - HEADER_LEN.size, MAX_HEADER_BYTES):
        raise FormatError(f"safetensors header length {header_len} exceeds the body")
    return first + file.read(header_len)


def read_exactly(file: BinaryIO, view: memoryview) -> None:
    """Fill ``view`` from ``file``; MalformedRequest if the file ends first."""
    filled = 0
    while filled < len(view):
        count = file.readinto(view[filled:])
        if not count:
            raise FormatError(f"body ended after {filled} of {len(view)} bytes")
        filled += count


def encode_parts(tensors: Mapping[str, np.ndarray],
                 metadata: Mapping[str, str] | None) -> list[bytes | memoryview]:
    """The pieces of a safetensors body, tensors as views: join them or write them out."""
    arrays = {name: _little_endian(np.ascontiguousarray(array))
              for name, array in sorted(tensors.items())}
    header = header_bytes({n: (a.shape, a.dtype) for n, a in arrays.items()}, metadata)
    return [header, *(memoryview(a).cast("B") for a in arrays.values() if a.size)]


def allocate(layout: Mapping[str, tuple[tuple[int, ...], np.dtype]],
             metadata: Mapping[str, str] | None) -> tuple[memoryview, dict[str, np.ndarray]]:
    """A body for tensors of ``layout`` with its header written, and writable views of each
    tensor's bytes in it: fill them and the body is complete (no tensor copied twice)."""
    header = header_bytes(layout, metadata)
    body = byte_buffer(len(header) + sum(math.prod(s) * np.dtype(d).itemsize
                                         for s, d in layout.values()))
    body[:len(header)] = header
    parsed = Header.parse(header, len(body))
    views = {}
    for name, entry in parsed.entries:
        start = parsed.data_start + entry.begin
        views[name] = np.frombuffer(body, entry.dtype, entry.size, start).reshape(entry.shape)
    return body, views


def byte_buffer(size: int) -> memoryview:
    """A writable, uninitialised buffer of ``size`` bytes. Allocated by numpy, which asks
    Linux for huge pages on large arrays: a fresh model-sized ``bytearray`` costs about four
    times more in page faults (and zeroing) than the copy that then fills it."""
    return memoryview(np.empty(size, np.uint8)).cast("B")


def header_bytes(layout: Mapping[str, tuple[tuple[int, ...], np.dtype]],
                 metadata: Mapping[str, str] | None) -> bytes:
    """The length field and JSON header for tensors of ``layout`` stored in name order."""
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, (shape, dtype) in sorted(layout.items()):
        code = DTYPE_NAMES.get(np.dtype(dtype).newbyteorder("<"))
        if code is None:
            raise ValueError(f"tensor {name!r} has dtype {dtype}, which safetensors lacks")
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        header[name] = {"dtype": code, "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(len(raw) + HEADER_LEN.size) % 8)  # the format aligns the data to 8 bytes
    return HEADER_LEN.pack(len(raw)) + raw


def _little_endian(array: np.ndarray) -> np.ndarray:
    return array.astype(array.dtype.newbyteorder("<")) if array.dtype.byteorder == ">" else array


def _json_object(raw: bytes) -> dict:
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"safetensors header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise FormatError("safetensors header is not a JSON object")
    return header


def _metadata(header: dict) -> dict[str, str]:
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise FormatError("safetensors __metadata__ must map strings to strings")
    return metadata


def _check_contiguous(entries: list[tuple[str, TensorEntry]], data_length: int) -> None:
    end = 0
    for name, entry in entries:
        if entry.begin != end:  # the format has no holes and no overlaps
            raise FormatError(f"tensor {name!r} data_offsets leave a gap or overlap")
        end = entry.end
    if end != data_length:
        raise FormatError(f"tensor data is {data_length} bytes, the header describes {end}")


def _ints(values: object) -> bool:
    return isinstance(values, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
