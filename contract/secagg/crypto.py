"""The cryptography of secure aggregation, all from the ``cryptography`` package: X25519 key
agreement, HKDF-SHA256 key derivation, AES-256-GCM for the shares sent through the aggregator,
and AES-256-CTR keystreams as masks (never ``numpy.random``: a mask must be unpredictable
without its key, and Flower's 32-bit-seeded ``RandomState`` masks are not)."""

from __future__ import annotations

import os

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32  # X25519 keys, derived keys and self-mask seeds
NONCE_BYTES = 12  # AES-GCM
MASK_CHUNK = 1 << 18  # mask words generated and added at a time (1 MiB of keystream)
_ZEROS = bytes(4 * MASK_CHUNK)

# What a derived key is for (HKDF info): a key never serves two purposes.
SHARE_KEY = b"fl-secagg share encryption"
PAIR_MASK = b"fl-secagg pairwise mask"
SELF_MASK = b"fl-secagg self mask"


class SealError(ValueError):
    """A sealed share that does not open: wrong key, wrong sender/receiver/session, altered."""


def new_private_key() -> X25519PrivateKey:
    """A fresh X25519 key pair (one per purpose, per client, per secure-aggregation session)."""
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of ``key``'s public half."""
    return key.public_key().public_bytes_raw()


def private_bytes(key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of ``key`` (what is secret-shared so a dropout can be unmasked)."""
    return key.private_bytes_raw()


def load_private(raw: bytes) -> X25519PrivateKey:
    """A private key from its 32 raw bytes (a reconstructed secret)."""
    return X25519PrivateKey.from_private_bytes(raw)


def check_public(raw: bytes) -> bytes:
    """``raw`` if it is an X25519 public key (ValueError otherwise)."""
    if len(raw) != KEY_BYTES:
        raise ValueError(f"an X25519 public key has {KEY_BYTES} bytes, got {len(raw)}")
    X25519PublicKey.from_public_bytes(raw)
    return raw


def derive(secret: bytes, purpose: bytes, salt: bytes) -> bytes:
    """A 32-byte key for ``purpose`` from ``secret`` (HKDF-SHA256, ``salt`` = the session)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=purpose
                ).derive(secret)


def agree(private: X25519PrivateKey, peer_public: bytes, purpose: bytes, salt: bytes) -> bytes:
    """The key two parties share for ``purpose``: HKDF over their X25519 agreement."""
    shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    return derive(shared, purpose, salt)


def seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """The nonce, then AES-256-GCM(plaintext) bound to ``associated`` (sender, receiver,
    session)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    """The plaintext of ``seal``'s output, or SealError."""
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)
    except (InvalidTag, ValueError) as exc:
        raise SealError("a sealed share does not open (altered, misdirected or replayed "
                        "from another session)") from exc


def apply_mask(target: np.ndarray, key: bytes, sign: int) -> None:
    """Add (sign +1) or subtract (-1) the AES-256-CTR keystream of ``key``, read as uint32
    words, to the uint32 vector ``target`` in place, mod 2^32; a chunk at a time, so the
    keystream never exists at full size."""
    if target.dtype != np.uint32 or target.ndim != 1:
        raise TypeError("masks apply to a 1-D uint32 vector")
    stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    operation = np.add if sign > 0 else np.subtract
    for start in range(0, target.size, MASK_CHUNK):
        piece = target[start:start + MASK_CHUNK]
        words = np.frombuffer(stream.update(_ZEROS[:4 * piece.size]), np.uint32)
        operation(piece, words, out=piece)


def mask_words(key: bytes, length: int) -> np.ndarray:
    """The mask of ``key`` itself, ``length`` uint32 words (tests, analysis)."""
    words = np.zeros(length, np.uint32)
    apply_mask(words, key, +1)
    return words
