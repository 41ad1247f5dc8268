"""The wire protocol, version 1: the one module both the aggregator and the clients import.

Tensors travel as safetensors bytes; the metadata (round, client id, number of examples,
metrics) travels in the safetensors header, all values strings. Tensor names are the model's
weight names in order (``w000``, ``w001``, ...), zero-padded so that sorting restores order.

Bodies are read and written by ``safetensors_io`` without the ``safetensors.numpy`` copies:
``decode`` returns read-only views into the body, ``encode`` copies each tensor once, and a
``StreamedMessage`` reads an update from the server's spooled request body a chunk at a time.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from contract import safetensors_io
from contract.errors import IncompatibleUpdate, MalformedRequest

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
META_SETTINGS = "settings"  # optional on init: the client's training settings, for the report
META_ARCHITECTURE = "architecture"  # optional on init: the model as Keras JSON (to_json())
# optional on updates, required by fednova: optimizer steps taken this round, and the SGD
# momentum they used (0 for plain SGD and for adaptive optimizers)
META_LOCAL_STEPS = "local_steps"
META_MOMENTUM = "momentum"
# An update's differential-privacy report (contract.privacy.PrivacyBudget.report): JSON
# {"epsilon", "delta", "steps", "exhausted", "noise_multiplier"}, numbers; only with
# dp=example.
META_PRIVACY = "privacy"
# On the final model only, when select_model chose an earlier round: the round it is from.
META_SELECTED_ROUND = "selected_round"
PRIVACY_KEYS = ("epsilon", "delta", "steps", "exhausted", "noise_multiplier")
# Tensors named CONTROL_PREFIX + a model tensor's name are SCAFFOLD control variates: the
# server's c in served models, the client's change of c_i in updates; reserved in inits.
CONTROL_PREFIX = "control/"
MAX_INFO_CHARS = 64 * 1024  # partition, settings, metrics: JSON objects of a few fields
MAX_ARCHITECTURE_CHARS = 4 * 1024 * 1024  # a Keras JSON of a deep network is ~1 MB
MAX_METRICS = 64
METRIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")
# Column names of the metrics tables: a metric may not take one of them.
RESERVED_METRIC_NAMES = frozenset({"round", "client_id", "examples", "clients", "missing",
                                   "num_examples", "duration_s"})

CHUNK_BYTES = 2 << 20  # streamed updates are read and folded in pieces of this size

Layout = dict[str, tuple[tuple[int, ...], np.dtype]]  # name -> (shape, dtype)
Chunk = tuple[str, int, np.ndarray]  # tensor name, first flat index, 1-D values


@dataclass(frozen=True)
class Message:
    """A decoded safetensors body: named tensors plus string metadata."""

    tensors: dict[str, np.ndarray]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def layout(self) -> Layout:
        """Each tensor's (shape, dtype) by name."""
        return {name: (a.shape, a.dtype) for name, a in self.tensors.items()}

    def chunks(self) -> Iterator[Chunk]:
        """(name, first flat index, 1-D values) pieces of at most CHUNK_BYTES, name by name."""
        return _widening(self._slices())

    def _slices(self) -> Iterator[Chunk]:
        for name, array in sorted(self.tensors.items()):
            flat = np.ravel(array)
            step = max(1, CHUNK_BYTES // max(flat.itemsize, 1))
            for start in range(0, flat.size, step):
                yield name, start, flat[start:start + step]

    def materialize(self) -> Message:
        """Itself: it is already in memory (the counterpart of StreamedMessage's)."""
        return self


@dataclass(frozen=True)
class InitMeta:
    """What a client says about itself when it offers model version 0 (``POST /v1/init``);
    only ``client_id`` is required, the rest is informative (the report shows it)."""

    client_id: int
    partition: dict = field(default_factory=dict)  # {"examples": n, "labels": [per class]}
    settings: dict = field(default_factory=dict)  # how the client trains
    architecture: str = ""  # the model as its framework serialises it (Keras JSON)

    def to_metadata(self) -> dict[str, str]:
        """The init's safetensors metadata (absent parts are left out)."""
        meta = {META_CLIENT_ID: str(self.client_id)}
        if self.partition:
            meta[META_PARTITION] = json.dumps(self.partition, sort_keys=True)
        if self.settings:
            meta[META_SETTINGS] = json.dumps(self.settings, sort_keys=True)
        if self.architecture:
            meta[META_ARCHITECTURE] = self.architecture
        return meta


@dataclass(frozen=True)
class UpdateMeta:
    """What a client says about its update, read from the safetensors header."""

    client_id: int
    round: int
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    local_steps: int | None = None  # optimizer steps behind this update
    momentum: float = 0.0  # the SGD momentum of those steps
    privacy: dict[str, float] = field(default_factory=dict)  # DP-SGD's report (META_PRIVACY)

    def to_metadata(self) -> dict[str, str]:
        """The safetensors header metadata that ``parse_update_meta`` reads back."""
        meta = {
            META_CLIENT_ID: str(self.client_id),
            META_ROUND: str(self.round),
            META_NUM_EXAMPLES: str(self.num_examples),
        }
        if self.metrics:
            meta[META_METRICS] = json.dumps(self.metrics, sort_keys=True)
        if self.local_steps is not None:
            meta[META_LOCAL_STEPS] = str(self.local_steps)
            meta[META_MOMENTUM] = repr(float(self.momentum))
        if self.privacy:
            meta[META_PRIVACY] = json.dumps(self.privacy, sort_keys=True)
        return meta


def step_norm(local_steps: int, momentum: float = 0.0) -> float:
    """How far ``local_steps`` SGD steps with ``momentum`` move the weights per unit of a
    constant gradient and learning rate: ||a_i||_1 of FedNova (Wang et al. 2020), what the
    ``local_steps`` and ``momentum`` metadata of an update stand for."""
    if momentum == 0:
        return float(local_steps)
    return (local_steps - momentum * (1 - momentum ** local_steps) / (1 - momentum)) / (
        1 - momentum)


def control_name(name: str) -> str:
    """The name of model tensor ``name``'s SCAFFOLD control variate."""
    return CONTROL_PREFIX + name


def split_control(tensors: Mapping[str, np.ndarray]
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(model tensors, control variates keyed by their model tensor's name)."""
    model = {n: a for n, a in tensors.items() if not n.startswith(CONTROL_PREFIX)}
    control = {n.removeprefix(CONTROL_PREFIX): a for n, a in tensors.items()
               if n.startswith(CONTROL_PREFIX)}
    return model, control


def weight_names(count: int) -> list[str]:
    """Names for ``count`` unnamed weights, in an order that sorting preserves."""
    width = max(3, len(str(max(count - 1, 0))))
    return [f"w{i:0{width}d}" for i in range(count)]


def tensors_from_list(weights: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """A model's weights, in Keras get_weights() order, named by ``weight_names``."""
    return dict(zip(weight_names(len(weights)), weights, strict=True))


def tensors_to_list(tensors: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The weights back in Keras get_weights() order: sorted by name (``weight_names``)."""
    return [tensors[name] for name in sorted(tensors)]


def encode(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialize named tensors and string metadata to safetensors bytes (one copy of each
    tensor, straight into the result)."""
    return b"".join(safetensors_io.encode_parts(tensors, metadata))


class EncodedParts:
    """A safetensors body as its pieces (header, then each tensor's bytes as views), with
    its length: an HTTP client sends them one after another under one Content-Length, so a
    client never copies its update into one model-sized buffer. Iterable more than once
    (a retried request sends it again)."""

    def __init__(self, tensors: Mapping[str, np.ndarray],
                 metadata: Mapping[str, str] | None = None) -> None:
        self._parts = safetensors_io.encode_parts(tensors, metadata)
        self._length = sum(memoryview(part).nbytes for part in self._parts)

    def __iter__(self) -> Iterator[bytes | memoryview]:
        return iter(self._parts)

    def __len__(self) -> int:
        return self._length

    def __bytes__(self) -> bytes:
        return b"".join(self._parts)


def write(handle: BinaryIO, tensors: Mapping[str, np.ndarray],
          metadata: Mapping[str, str] | None = None) -> int:
    """Write what ``encode`` returns to ``handle`` without building it in memory; the size."""
    return sum(handle.write(part) for part in safetensors_io.encode_parts(tensors, metadata))


def allocate(layout: Layout, metadata: Mapping[str, str] | None = None
             ) -> tuple[memoryview, dict[str, np.ndarray]]:
    """An encoded body with its tensors still to fill: writable views of each (the
    aggregator writes the averaged model straight into the body it will serve)."""
    return safetensors_io.allocate(layout, metadata)


def decode(body: bytes | bytearray | memoryview) -> Message:
    """Parse a safetensors body into read-only views of it (no tensor bytes are copied);
    raises MalformedRequest on anything that is not valid safetensors."""
    header = safetensors_io.Header.parse(body, len(body))
    return Message(header.views(body), header.metadata)


def read_metadata(body: bytes | memoryview) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors body, without touching the tensors."""
    return safetensors_io.Header.parse(body, len(body)).metadata


def _widening(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """float16 chunks as float32 (in one reused buffer): numpy converts half floats in
    software inside every ufunc loop, so converting each chunk once makes the NaN check and
    the fold about 3x cheaper. Other dtypes pass through."""
    scratch = np.empty(0, np.float32)
    for name, start, values in chunks:
        if values.dtype == np.float16:
            if scratch.size < values.size:
                scratch = np.empty(values.size, np.float32)
            widened = scratch[:values.size]
            np.copyto(widened, values)
            values = widened
        yield name, start, values


class StreamedMessage:
    """A safetensors body left in a seekable file (the server's spooled request body): the
    header is parsed at once, the tensors are read a chunk at a time, as often as needed, so
    no model-sized buffer is allocated to receive an update."""

    def __init__(self, file: BinaryIO, length: int) -> None:
        self._file, self._start, self._length = file, file.tell(), length
        prefix = safetensors_io.read_header_bytes(file, length)
        self._header = safetensors_io.Header.parse(prefix, length)
        self.metadata = self._header.metadata

    @property
    def layout(self) -> Layout:
        """Each tensor's (shape, dtype) by name, from the header."""
        return self._header.layout

    def chunks(self) -> Iterator[Chunk]:
        """(name, first flat index, 1-D values) pieces read from the file, as Message.chunks;
        each call reads the tensors again from the start."""
        self._file.seek(self._start + self._header.data_start)
        return _widening(self._header.read_chunks(self._file, CHUNK_BYTES))

    def materialize(self) -> Message:
        """The whole message in memory (for strategies that keep every update)."""
        self._file.seek(self._start)
        body = safetensors_io.byte_buffer(self._length)
        safetensors_io.read_exactly(self._file, body)
        return decode(body)


def content_digest(message: Message | StreamedMessage,
                   inspect: Callable[[str, np.ndarray], None] | None = None) -> str:
    """A digest of what a message says, independent of the order of its header and data
    (safetensors writers differ); ``inspect(name, values)`` sees every chunk on the way.

    It only has to tell a client's retried update from a different one for the same round
    (the token already authenticates the client), so each tensor's bytes get a CRC-32,
    1.5x cheaper than SHA-256 on the aggregator's hot path; names, shapes, dtypes, metadata
    and the checksums are then hashed with SHA-256."""
    checksums: dict[str, int] = {}
    for name, _start, values in message.chunks():
        if inspect is not None:
            inspect(name, values)
        checksums[name] = zlib.crc32(values, checksums.get(name, 0))
    digest = hashlib.sha256(json.dumps(message.metadata, sort_keys=True).encode())
    for name, (shape, dtype) in sorted(message.layout.items()):
        digest.update(f"{name}|{dtype.str}|{shape}|{checksums.get(name, 0):08x}".encode())
    return digest.hexdigest()


def int_field(metadata: Mapping[str, str], key: str) -> int:
    """The integer metadata field ``key`` (MalformedRequest, 400, if missing or not one)."""
    raw = metadata.get(key)
    if raw is None:
        raise MalformedRequest(f"safetensors metadata lacks {key!r}")
    try:
        return int(raw)
    except ValueError:
        raise MalformedRequest(f"metadata {key!r} must be an integer, got {raw!r}") from None


def client_id_of(metadata: Mapping[str, str]) -> int:
    """The client id an init's or update's metadata says it comes from (400 if it has none)."""
    return int_field(metadata, META_CLIENT_ID)


def parse_init_meta(metadata: Mapping[str, str]) -> InitMeta:
    """Validate an init's metadata: MalformedRequest (400) for a missing or non-integer
    client id, a partition or settings that is not a JSON object, an oversized architecture."""
    return InitMeta(int_field(metadata, META_CLIENT_ID),
                    _json_object(metadata.get(META_PARTITION), META_PARTITION),
                    _json_object(metadata.get(META_SETTINGS), META_SETTINGS),
                    _architecture(metadata.get(META_ARCHITECTURE, "")))


def parse_update_meta(metadata: Mapping[str, str]) -> UpdateMeta:
    """Validate an update's metadata: 400 for missing/malformed, 422 for a bad example count."""
    client_id = int_field(metadata, META_CLIENT_ID)
    round_ = int_field(metadata, META_ROUND)
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
        local_steps=_local_steps(metadata.get(META_LOCAL_STEPS)),
        momentum=_momentum(metadata.get(META_MOMENTUM)),
        privacy=parse_privacy(metadata.get(META_PRIVACY)),
    )


def parse_privacy(raw: str | None) -> dict[str, float]:
    """An update's privacy report: a JSON object of non-negative numbers named in
    ``PRIVACY_KEYS`` (422 otherwise)."""
    if raw is None:
        return {}
    report = parse_metrics(raw)
    unknown = sorted(set(report) - set(PRIVACY_KEYS))
    if unknown or any(v < 0 for v in report.values()):
        raise IncompatibleUpdate(f"{META_PRIVACY} takes non-negative numbers named "
                                 f"{', '.join(PRIVACY_KEYS)}, got {raw[:200]!r}")
    return report


def _local_steps(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise IncompatibleUpdate(f"{META_LOCAL_STEPS} must be a positive integer, got {raw!r}")
    return int(raw)


def _momentum(raw: str | None) -> float:
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise IncompatibleUpdate(f"{META_MOMENTUM} must be a number in [0, 1), got {raw!r}")
    return value


def _json_object(raw: str | None, key: str) -> dict:
    """An optional metadata value holding a JSON object ({} when absent)."""
    if raw is None:
        return {}
    if len(raw) > MAX_INFO_CHARS:
        # Informative values end up in every checkpoint: keep them small.
        raise MalformedRequest(f"metadata {key!r} is longer than {MAX_INFO_CHARS} characters")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MalformedRequest(f"metadata {key!r} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedRequest(f"metadata {key!r} must be a JSON object")
    return value


def _architecture(architecture: str) -> str:
    """An init's architecture, kept opaque, within its size limit."""
    if len(architecture) > MAX_ARCHITECTURE_CHARS:
        raise MalformedRequest(f"metadata {META_ARCHITECTURE!r} is longer than "
                               f"{MAX_ARCHITECTURE_CHARS} characters")
    return architecture


def parse_metrics(raw: str | None) -> dict[str, float]:
    """A JSON object of finite numbers, or {} when absent."""
    return check_metrics(_json_object(raw, META_METRICS))


def label_metric_key(name: str) -> str:
    """A finding's name as it appears in metric names: ``Pleural Effusion`` ->
    ``pleural_effusion`` (``auc_pleural_effusion``)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "label"


def check_metrics(metrics: object) -> dict[str, float]:
    """Metrics as a dict of finite floats; MalformedRequest for anything else."""
    if not isinstance(metrics, dict):
        raise MalformedRequest("'metrics' must be a JSON object of numbers")
    if len(metrics) > MAX_METRICS:
        raise MalformedRequest(f"at most {MAX_METRICS} metrics, got {len(metrics)}")
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if not METRIC_NAME.fullmatch(name) or name in RESERVED_METRIC_NAMES:
            raise MalformedRequest(f"metric name {name[:70]!r} must be 1-64 letters, digits or "
                                   "_.:- starting with a letter, and not one of "
                                   f"{sorted(RESERVED_METRIC_NAMES)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MalformedRequest(f"metric {name!r} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise MalformedRequest(f"metric {name!r} must be finite, got {value!r}")
        clean[name] = float(value)
    return clean
