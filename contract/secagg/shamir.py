"""Shamir's t-of-n secret sharing over the prime field GF(2^521 - 1).

A secret of up to 64 bytes is the constant term of a random polynomial of degree t - 1; holder
h gets the polynomial's value at x = h + 1. Any t shares give the secret back (Lagrange
interpolation at 0); fewer than t are uniformly distributed and say nothing about it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping

PRIME = 2**521 - 1  # a Mersenne prime: every 64-byte secret is a field element
SHARE_BYTES = 66  # ceil(521 / 8)
MAX_SECRET_BYTES = 64


class NotEnoughShares(ValueError):
    """Fewer shares than the threshold, or shares that do not interpolate to a secret."""


def split(secret: bytes, holders: Iterable[int], threshold: int) -> dict[int, bytes]:
    """Each holder's share of ``secret`` (holder ids >= 0); any ``threshold`` recover it."""
    holders = sorted(set(holders))
    if len(secret) > MAX_SECRET_BYTES:
        raise ValueError(f"a secret has at most {MAX_SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= len(holders):
        raise ValueError(f"threshold must be in 1..{len(holders)} (holders), got {threshold}")
    if holders[0] < 0:
        raise ValueError(f"holder ids must be >= 0, got {holders[0]}")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return {h: _evaluate(coefficients, h + 1).to_bytes(SHARE_BYTES, "big") for h in holders}


def combine(shares: Mapping[int, bytes], threshold: int, secret_bytes: int) -> bytes:
    """The secret from at least ``threshold`` shares (holder id -> share)."""
    if len(shares) < threshold:
        raise NotEnoughShares(f"{len(shares)} shares, {threshold} needed")
    points = [(h + 1, _share_value(share)) for h, share in sorted(shares.items())[:threshold]]
    secret = 0
    for i, (x_i, y_i) in enumerate(points):
        numerator, denominator = 1, 1
        for j, (x_j, _) in enumerate(points):
            if i != j:
                numerator = numerator * -x_j % PRIME
                denominator = denominator * (x_i - x_j) % PRIME
        secret = (secret + y_i * numerator * pow(denominator, -1, PRIME)) % PRIME
    if secret >= 1 << (8 * secret_bytes):
        raise NotEnoughShares("the shares do not interpolate to a secret of "
                              f"{secret_bytes} bytes (shares of different secrets?)")
    return secret.to_bytes(secret_bytes, "big")


def _evaluate(coefficients: list[int], x: int) -> int:
    value = 0
    for c in reversed(coefficients):
        value = (value * x + c) % PRIME
    return value


def _share_value(share: bytes) -> int:
    if len(share) != SHARE_BYTES:
        raise NotEnoughShares(f"a share has {SHARE_BYTES} bytes, got {len(share)}")
    value = int.from_bytes(share, "big")
    if value >= PRIME:
        raise NotEnoughShares("a share is not a field element")
    return value
