"""The building blocks of secure aggregation: Shamir sharing, the ciphers, the masks and
the integer encoding, each against what it promises."""

import itertools
import os

import numpy as np
import pytest

from contract.secagg import crypto, shamir
from contract.secagg.params import SecAggParams, SecAggParamsError
from contract.secagg.quantize import QuantisationError, Quantizer


def test_any_t_shares_rebuild_the_secret_and_fewer_do_not():
    secret = os.urandom(32)
    shares = shamir.split(secret, range(7), 4)
    for subset in itertools.combinations(range(7), 4):
        assert shamir.combine({h: shares[h] for h in subset}, 4, 32) == secret
    with pytest.raises(shamir.NotEnoughShares):
        shamir.combine({h: shares[h] for h in range(3)}, 4, 32)


def test_t_minus_one_shares_are_consistent_with_every_secret():
    """Perfect secrecy: for any t-1 shares and any candidate secret, one polynomial through
    them exists, so the t-1 shares say nothing. Shown by interpolation: the t-1 points plus
    (0, candidate) fix a polynomial of degree t-1; each candidate gives a different one."""
    shares = shamir.split(os.urandom(32), range(5), 3)
    two = {0: shares[0], 1: shares[1]}
    for candidate in (b"\x00" * 32, b"\xff" * 32, os.urandom(32)):
        # The share at x = 3 (holder 2) that the candidate's polynomial would give:
        xs = [1, 2]
        ys = [int.from_bytes(two[h], "big") for h in (0, 1)]
        c0 = int.from_bytes(candidate, "big")
        p = shamir.PRIME
        points = [(0, c0), *zip(xs, ys, strict=True)]

        def value_at(x, points=points, p=p):
            total = 0
            for i, (xi, yi) in enumerate(points):
                num = den = 1
                for j, (xj, _) in enumerate(points):
                    if i != j:
                        num, den = num * (x - xj) % p, den * (xi - xj) % p
                total = (total + yi * num * pow(den, -1, p)) % p
            return total

        forged = value_at(3).to_bytes(shamir.SHARE_BYTES, "big")
        assert shamir.combine({**two, 2: forged}, 3, 32) == candidate


def test_shares_of_different_secrets_do_not_interpolate_to_a_secret():
    a = shamir.split(os.urandom(32), range(3), 2)
    b = shamir.split(os.urandom(32), range(3), 2)
    with pytest.raises(shamir.NotEnoughShares):  # a mix lands below 2^256 w.p. 2^-265
        shamir.combine({0: a[0], 1: b[1]}, 2, 32)


def test_sealed_shares_open_only_for_their_receiver_session_and_sender():
    sender, receiver = crypto.new_private_key(), crypto.new_private_key()
    salt = b"session-1"
    key = crypto.agree(sender, crypto.public_bytes(receiver), crypto.SHARE_KEY, salt)
    same = crypto.agree(receiver, crypto.public_bytes(sender), crypto.SHARE_KEY, salt)
    assert key == same  # X25519 + HKDF: both ends derive one key
    sealed = crypto.seal(key, b"share", b"s1|1|0|1")
    assert crypto.open_sealed(same, sealed, b"s1|1|0|1") == b"share"
    for wrong_key, aad in ((same, b"s1|1|0|2"), (same, b"s2|1|0|1"),
                           (crypto.agree(sender, crypto.public_bytes(receiver),
                                         crypto.SHARE_KEY, b"session-2"), b"s1|1|0|1")):
        with pytest.raises(crypto.SealError):
            crypto.open_sealed(wrong_key, sealed, aad)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(crypto.SealError):
        crypto.open_sealed(same, bytes(tampered), b"s1|1|0|1")


def test_pairwise_masks_cancel_and_masks_look_uniform():
    a, b = crypto.new_private_key(), crypto.new_private_key()
    key_ab = crypto.agree(a, crypto.public_bytes(b), crypto.PAIR_MASK, b"s")
    key_ba = crypto.agree(b, crypto.public_bytes(a), crypto.PAIR_MASK, b"s")
    x = np.arange(100_000, dtype=np.uint32)
    y = x.copy()
    crypto.apply_mask(y, key_ab, +1)
    crypto.apply_mask(y, key_ba, -1)
    np.testing.assert_array_equal(y, x)
    words = crypto.mask_words(key_ab, 400_000)
    # Uniform on 2^32: each of 256 top-byte buckets ~ n/256 (chi-square, 255 dof; the 1e-6
    # tail is at ~380).
    counts = np.bincount(words >> 24, minlength=256)
    expected = words.size / 256
    assert ((counts - expected) ** 2 / expected).sum() < 380
    assert not np.array_equal(words, crypto.mask_words(key_ab[::-1], words.size))


def test_masks_longer_than_a_chunk_are_one_stream():
    key = os.urandom(32)
    whole = crypto.mask_words(key, crypto.MASK_CHUNK * 2 + 5)
    again = np.zeros(crypto.MASK_CHUNK * 2 + 5, np.uint32)
    crypto.apply_mask(again, key, +1)
    np.testing.assert_array_equal(whole, again)
    assert len(np.unique(whole[:1000])) == 1000  # no repeated chunk


def test_quantisation_round_trips_within_its_bound_and_never_overflows():
    q = Quantizer(clip=1.0, max_examples=1000, num_clients=4)
    rng = np.random.default_rng(0)
    updates = [rng.uniform(-1, 1, 5000) for _ in range(4)]
    updates[0][:10] = 1.0  # at the clip edge, the largest sum there is
    weights = [1000] * 4  # every site at the bound
    total = np.zeros(5000 + 1 + 1, np.uint32)
    for u, w in zip(updates, weights, strict=True):
        vector, clipped = q.encode([u], w, [0.5])
        assert clipped == 0
        np.add(total, vector, out=total)
    update_sum, weight, metric_sums = q.decode(total, 1)
    assert weight == 4000 and metric_sums[0] / weight == pytest.approx(0.5, abs=1e-3)
    exact = sum(u * w for u, w in zip(updates, weights, strict=True)) / 4000
    error = np.abs(update_sum / weight - exact).max()
    assert error <= q.error_bound(4, 4000)
    assert update_sum[0] > 0  # +4000 x clip did not wrap to a negative int32


def test_clipping_is_counted_and_bounds_the_value():
    q = Quantizer(clip=0.5, max_examples=10, num_clients=2)
    vector, clipped = q.encode([np.array([2.0, -3.0, 0.1])], 1, [])
    assert clipped == 2
    update, _, _ = q.decode(vector, 0)
    np.testing.assert_allclose(update, [0.5, -0.5, 0.1], atol=1 / q.scale)


def test_a_site_over_max_examples_and_scales_below_one_step_are_refused():
    q = Quantizer(clip=1.0, max_examples=10, num_clients=2)
    with pytest.raises(QuantisationError, match="secagg_max_examples"):
        q.encode([np.zeros(3)], 11, [])
    with pytest.raises(QuantisationError, match="do not fit 32-bit sums"):
        Quantizer(clip=1.0, max_examples=10**9, num_clients=100)


def test_neighbourhoods_thresholds_and_their_refusals():
    assert SecAggParams(5).holders(2) == [0, 1, 2, 3, 4] and SecAggParams(5).t == 3
    big = SecAggParams(100)  # SecAgg+: a ring of 2 ceil(log2 100) = 14 neighbours
    assert big.ring_size == 14 and big.holders(0) == sorted({*range(0, 8), *range(93, 100)})
    assert big.share_count == 15 and big.t == 8
    assert all(c in big.holders(d) for d in range(100) for c in big.holders(d)
               if d in big.holders(c))  # symmetric
    with pytest.raises(SecAggParamsError, match="must be 0 .* or in 3..5"):
        SecAggParams(5, threshold=2)
    with pytest.raises(SecAggParamsError, match="even"):
        SecAggParams(30, neighbours=3)
