"""The messages of the four secure-aggregation stages of a round, typed, as both sides read
and write them. Keys and rosters are small JSON (keys base64); shares, masked vectors and
unmasking shares are safetensors bodies (``contract.wire``), as every tensor of protocol v1.

Stage       client sends                         client then long-polls for
keys        POST /v1/secagg/keys     KeyAdvert    GET /v1/secagg/roster   Roster
shares      POST /v1/secagg/shares   SharesOut    GET /v1/secagg/shares   SharesIn
masked      POST /v1/secagg/masked   MaskedInput  GET /v1/secagg/unmask   UnmaskRequest
unmask      POST /v1/secagg/unmask   UnmaskReply  GET /v1/model (as without secure aggregation)
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from contract import wire
from contract.errors import MalformedRequest
from contract.secagg import crypto, shamir

META_SESSION = "session"
META_METRIC_NAMES = "metric_names"
META_SURVIVORS = "survivors"
MASKED_TENSOR = "masked"
SHARE_PLAINTEXT = struct.Struct(f">II{shamir.SHARE_BYTES}s{shamir.SHARE_BYTES}s")
SEALED_SHARE_BYTES = crypto.NONCE_BYTES + SHARE_PLAINTEXT.size + 16  # + the GCM tag
MAX_SESSION_CHARS = 64


@dataclass(frozen=True)
class KeyAdvert:
    """Stage 1: a client's two fresh public keys for this round (shares, masks)."""

    client_id: int
    round: int
    cipher_key: bytes
    mask_key: bytes
    session: str = ""  # a re-send names the session the keys were accepted in

    def to_json(self) -> dict:
        """The request body."""
        body = {"client_id": self.client_id, "round": self.round,
                "cipher_key": _b64(self.cipher_key), "mask_key": _b64(self.mask_key)}
        if self.session:
            body["session"] = self.session
        return body

    @classmethod
    def from_json(cls, data: object) -> KeyAdvert:
        """Validate a request body (MalformedRequest naming the field)."""
        data = _object(data, "key advertisement")
        try:
            keys = [crypto.check_public(_unb64(data.get(k), k)) for k in ("cipher_key",
                                                                           "mask_key")]
        except ValueError as exc:
            raise MalformedRequest(f"key advertisement: {exc}") from None
        if keys[0] == keys[1]:
            raise MalformedRequest("key advertisement: cipher_key and mask_key must differ")
        session = _session(data["session"]) if "session" in data else ""
        return cls(_int(data, "client_id"), _int(data, "round"), *keys, session)


@dataclass(frozen=True)
class Roster:
    """Stage 1's result: the session, its parameters and every participant's public keys."""

    session: str
    round: int
    threshold: int
    neighbours: int  # ring size (SecAggParams.ring_size)
    clip: float
    max_examples: int
    keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # id -> (cipher, mask)

    def to_json(self) -> dict:
        """The reply body."""
        return {"session": self.session, "round": self.round, "threshold": self.threshold,
                "neighbours": self.neighbours, "clip": self.clip,
                "max_examples": self.max_examples,
                "participants": {str(c): {"cipher_key": _b64(k[0]), "mask_key": _b64(k[1])}
                                 for c, k in sorted(self.keys.items())}}

    @classmethod
    def from_json(cls, data: object) -> Roster:
        """Parse the aggregator's answer (MalformedRequest naming the field)."""
        data = _object(data, "roster")
        participants = data.get("participants")
        if not isinstance(participants, dict):
            raise MalformedRequest("roster: participants must be an object")
        keys = {}
        for cid, pair in participants.items():
            pair = _object(pair, f"roster participant {cid}")
            keys[_client_key(cid)] = (_unb64(pair.get("cipher_key"), "cipher_key"),
                                      _unb64(pair.get("mask_key"), "mask_key"))
        clip = data.get("clip")
        if not isinstance(clip, (int, float)) or isinstance(clip, bool):
            raise MalformedRequest("roster: clip must be a number")
        return cls(_session(data.get("session")), _int(data, "round"), _int(data, "threshold"),
                   _int(data, "neighbours"), float(clip), _int(data, "max_examples"), keys)


@dataclass(frozen=True)
class SharesOut:
    """Stage 2: a client's sealed shares, one per holder (itself and its neighbours)."""

    client_id: int
    round: int
    session: str
    sealed: dict[int, bytes]

    def encode(self) -> wire.EncodedParts:
        """The request body."""
        return _sealed_body(self.sealed, "to", _meta(self.client_id, self.round, self.session))

    @classmethod
    def decode(cls, body: bytes | memoryview) -> SharesOut:
        """Parse a request body (MalformedRequest on any flaw)."""
        message = wire.decode(body)
        client_id, round_, session = _stage_meta(message.metadata)
        return cls(client_id, round_, session, _sealed_of(message.tensors, "to"))


@dataclass(frozen=True)
class SharesIn:
    """Stage 2's result for one client: the shares sealed for it, by sender, and who shared."""

    round: int
    session: str
    survivors: list[int]
    sealed: dict[int, bytes]

    def encode(self) -> bytes:
        """The reply body."""
        meta = {wire.META_ROUND: str(self.round), META_SESSION: self.session,
                META_SURVIVORS: json.dumps(sorted(self.survivors))}
        return bytes(_sealed_body(self.sealed, "from", meta))

    @classmethod
    def decode(cls, body: bytes | memoryview) -> SharesIn:
        """Parse the aggregator's answer."""
        message = wire.decode(body)
        meta = message.metadata
        return cls(wire.int_field(meta, wire.META_ROUND), _session(meta.get(META_SESSION)),
                   _id_list(meta.get(META_SURVIVORS), META_SURVIVORS),
                   _sealed_of(message.tensors, "from"))


@dataclass(frozen=True)
class MaskedInput:
    """Stage 3: a client's masked vector (update, weight, metrics as uint32 words)."""

    client_id: int
    round: int
    session: str
    vector: np.ndarray
    metric_names: list[str]
    privacy: dict[str, float] = field(default_factory=dict)  # dp=example: the site's ledger

    def encode(self) -> wire.EncodedParts:
        """The request body."""
        meta = _meta(self.client_id, self.round, self.session)
        meta[META_METRIC_NAMES] = json.dumps(self.metric_names)
        if self.privacy:
            meta[wire.META_PRIVACY] = json.dumps(self.privacy, sort_keys=True)
        return wire.EncodedParts({MASKED_TENSOR: self.vector}, meta)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> MaskedInput:
        """Parse a request body (MalformedRequest on any flaw)."""
        message = wire.decode(body)
        client_id, round_, session = _stage_meta(message.metadata)
        vector = message.tensors.get(MASKED_TENSOR)
        if len(message.tensors) != 1 or vector is None or vector.dtype != np.uint32 \
                or vector.ndim != 1:
            raise MalformedRequest(f"a masked input is one 1-D uint32 tensor "
                                   f"{MASKED_TENSOR!r}")
        names = _json(message.metadata.get(META_METRIC_NAMES, "[]"), META_METRIC_NAMES)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise MalformedRequest(f"{META_METRIC_NAMES} must be a JSON list of names")
        wire.check_metrics(dict.fromkeys(names, 0.0))
        privacy = wire.parse_privacy(message.metadata.get(wire.META_PRIVACY))
        return cls(client_id, round_, session, vector, names, privacy)


@dataclass(frozen=True)
class UnmaskRequest:
    """Stage 3's result: who sent a masked input (survivors) and who shared but did not
    (dropped): each survivor is asked for its shares of survivors' self-mask seeds and of
    the dropped clients' mask keys, never both for one client."""

    round: int
    session: str
    survivors: list[int]
    dropped: list[int]

    def to_json(self) -> dict:
        """The reply body."""
        return {"round": self.round, "session": self.session,
                "survivors": sorted(self.survivors), "dropped": sorted(self.dropped)}

    @classmethod
    def from_json(cls, data: object) -> UnmaskRequest:
        """Parse the aggregator's answer."""
        data = _object(data, "unmask request")
        return cls(_int(data, "round"), _session(data.get("session")),
                   _id_list(data.get("survivors"), "survivors"),
                   _id_list(data.get("dropped"), "dropped"))


@dataclass(frozen=True)
class UnmaskReply:
    """Stage 4: a survivor's shares: of each survivor's self-mask seed and of each dropped
    client's mask key, among the clients whose shares it holds."""

    client_id: int
    round: int
    session: str
    seed_shares: dict[int, bytes]
    key_shares: dict[int, bytes]

    def encode(self) -> wire.EncodedParts:
        """The request body."""
        tensors = {**_share_tensors(self.seed_shares, "seed"),
                   **_share_tensors(self.key_shares, "key")}
        return wire.EncodedParts(tensors, _meta(self.client_id, self.round, self.session))

    @classmethod
    def decode(cls, body: bytes | memoryview) -> UnmaskReply:
        """Parse a request body (MalformedRequest on any flaw)."""
        message = wire.decode(body)
        client_id, round_, session = _stage_meta(message.metadata)
        seeds = _shares_of(message.tensors, "seed")
        keys = _shares_of(message.tensors, "key")
        if len(seeds) + len(keys) != len(message.tensors):
            raise MalformedRequest("an unmask reply holds only seed/<id> and key/<id> tensors")
        return cls(client_id, round_, session, seeds, keys)


def share_plaintext(sender: int, receiver: int, seed_share: bytes, key_share: bytes) -> bytes:
    """What a sealed share holds: who to whom, and the two shares."""
    return SHARE_PLAINTEXT.pack(sender, receiver, seed_share, key_share)


def parse_share_plaintext(plain: bytes) -> tuple[int, int, bytes, bytes]:
    """(sender, receiver, seed share, key share)."""
    return SHARE_PLAINTEXT.unpack(plain)


def share_associated_data(session: str, round_: int, sender: int, receiver: int) -> bytes:
    """What a sealed share is bound to: a share moved to another session, round, sender or
    receiver does not open."""
    return f"fl-secagg|{session}|{round_}|{sender}|{receiver}".encode()


# ---- helpers --------------------------------------------------------------------------

def _meta(client_id: int, round_: int, session: str) -> dict[str, str]:
    return {wire.META_CLIENT_ID: str(client_id), wire.META_ROUND: str(round_),
            META_SESSION: session}


def _stage_meta(metadata: Mapping[str, str]) -> tuple[int, int, str]:
    return (wire.client_id_of(metadata), wire.int_field(metadata, wire.META_ROUND),
            _session(metadata.get(META_SESSION)))


def _sealed_body(sealed: Mapping[int, bytes], prefix: str, meta: dict[str, str]
                 ) -> wire.EncodedParts:
    tensors = {f"{prefix}/{c}": np.frombuffer(s, np.uint8) for c, s in sorted(sealed.items())}
    return wire.EncodedParts(tensors, meta)


def _sealed_of(tensors: Mapping[str, np.ndarray], prefix: str) -> dict[int, bytes]:
    out = {}
    for name, array in tensors.items():
        head, _, cid = name.partition("/")
        if head != prefix or array.dtype != np.uint8 or array.shape != (SEALED_SHARE_BYTES,):
            raise MalformedRequest(f"tensor {name!r}: expected {prefix}/<client id>, uint8 "
                                   f"[{SEALED_SHARE_BYTES}] (a sealed share)")
        out[_client_key(cid)] = array.tobytes()
    return out


def _share_tensors(shares: Mapping[int, bytes], prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}/{c}": np.frombuffer(s, np.uint8) for c, s in sorted(shares.items())}


def _shares_of(tensors: Mapping[str, np.ndarray], prefix: str) -> dict[int, bytes]:
    out = {}
    for name, array in tensors.items():
        head, _, cid = name.partition("/")
        if head != prefix:
            continue
        if array.dtype != np.uint8 or array.shape != (shamir.SHARE_BYTES,):
            raise MalformedRequest(f"tensor {name!r}: a share is uint8 [{shamir.SHARE_BYTES}]")
        out[_client_key(cid)] = array.tobytes()
    return out


def _client_key(raw: str) -> int:
    if not raw.isdigit():
        raise MalformedRequest(f"{raw!r} is not a client id")
    return int(raw)


def _object(data: object, what: str) -> dict:
    if not isinstance(data, dict):
        raise MalformedRequest(f"{what} must be a JSON object")
    return data


def _int(data: Mapping, key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedRequest(f"{key} must be a non-negative integer, got {value!r}")
    return value


def _session(raw: object) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > MAX_SESSION_CHARS \
            or not raw.isalnum():
        raise MalformedRequest(f"session must be a short alphanumeric string, got {raw!r}")
    return raw


def _id_list(raw: object, key: str) -> list[int]:
    values = _json(raw, key) if isinstance(raw, str) else raw
    if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise MalformedRequest(f"{key} must be a list of client ids")
    return sorted(set(values))


def _json(raw: str, key: str) -> object:
    try:
        return json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        raise MalformedRequest(f"{key} must be JSON") from None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(raw: object, key: str) -> bytes:
    if not isinstance(raw, str):
        raise MalformedRequest(f"{key} must be a base64 string")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequest(f"{key} is not valid base64") from None
