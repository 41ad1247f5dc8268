"""The protocol's arithmetic and its privacy, in process (the clients' ``Participant`` and the
aggregator's ``SecureRound``, messages through their wire encodings): the unmasked result is
FedAvg's within the stated bound whoever drops out, and what the aggregator receives hides
each client's update unless t parties give up their shares."""

import numpy as np
import pytest

from contract.secagg import crypto, shamir
from contract.secagg.messages import UnmaskReply
from contract.secagg.params import SecAggParams
from server_component.secure_round import CannotUnmask
from tests.support.secagg_round import STAGES, run_round


def _models(n: int, size: int, seed: int):
    """Typical CNN round: served weights ~ N(0, 0.1), updates ~ N(0, 0.01), sites of
    10..2000 examples."""
    rng = np.random.default_rng(seed)
    served = rng.normal(0, 0.1, size)
    updates = [rng.normal(0, 0.01, size) for _ in range(n)]
    weights = [int(w) for w in rng.integers(10, 2000, n)]
    metrics = [[float(rng.uniform(0.5, 1)), float(rng.uniform(0.1, 2))] for _ in range(n)]
    return served, updates, weights, metrics


def _cases():
    for n in (2, 5, 10):
        t = SecAggParams(n).t
        for stage in STAGES:
            for dropped in sorted({0, 1, n - t}):
                if dropped and n - dropped < t:
                    continue
                yield pytest.param(n, stage, dropped, id=f"N{n}-{stage}-drop{dropped}")


@pytest.mark.parametrize(("n", "stage", "dropped"), list(_cases()))
def test_unmasked_result_is_fedavg_within_the_stated_bound(n, stage, dropped):
    served, updates, weights, metrics = _models(n, 20_000, seed=n * 10 + dropped)
    gone = set(range(n - dropped, n))  # the highest ids drop before ``stage``
    outcome = run_round(SecAggParams(n), updates, weights, metrics, drop={stage: gone})
    # Who is in the sum: dropped before the masked input -> out; at unmask -> still in.
    in_sum = set(range(n)) - (gone if stage != "unmask" else set())
    assert outcome.survivors == sorted(in_sum)
    total = sum(weights[i] for i in in_sum)
    fedavg = served + sum(updates[i] * weights[i] for i in in_sum) / total
    secure = served + outcome.update_sum / outcome.total_weight
    assert outcome.total_weight == total
    bound = outcome.quantizer.error_bound(len(in_sum), total)
    assert np.abs(secure - fedavg).max() <= bound
    assert np.linalg.norm(secure - fedavg) / np.linalg.norm(fedavg) < 1e-4
    expected_metrics = sum(np.array(metrics[i]) * weights[i] for i in in_sum) / total
    np.testing.assert_allclose(outcome.metric_sums / total, expected_metrics, atol=1e-3)


def test_dropouts_around_the_masked_input_are_recovered_from_the_neighbours_shares():
    """Client 2 sends its masked input and vanishes: it stays in the sum, its self mask
    rebuilt from the others' seed shares. Client 3 shares and vanishes before its masked
    input: it is out of the sum, its pairwise masks rebuilt from its mask-key shares."""
    served, updates, weights, _ = _models(5, 1000, seed=1)
    outcome = run_round(SecAggParams(5), updates, weights, drop={"masked": {3}, "unmask": {2}})
    assert outcome.dropped == [3] and outcome.survivors == [0, 1, 2, 4]
    assert 2 in outcome.recording.masked and 3 not in outcome.recording.masked
    answered = {UnmaskReply.decode(r).client_id for r in outcome.recording.replies}
    assert answered == {0, 1, 4}
    in_sum = [0, 1, 2, 4]
    fedavg = sum(updates[i] * weights[i] for i in in_sum) / sum(weights[i] for i in in_sum)
    np.testing.assert_allclose(outcome.update_sum / outcome.total_weight, fedavg, atol=1e-6)


def test_too_few_answers_at_unmask_cannot_produce_a_sum():
    _, updates, weights, _ = _models(5, 100, seed=2)
    with pytest.raises(CannotUnmask, match="too few shares"):
        run_round(SecAggParams(5), updates, weights, drop={"unmask": {0, 1, 2}})


def test_each_masked_input_is_indistinguishable_from_uniform():
    _, updates, weights, _ = _models(5, 200_000, seed=3)
    outcome = run_round(SecAggParams(5), updates, weights)
    for cid, masked in outcome.recording.masked.items():
        counts = np.bincount(masked >> 24, minlength=256)
        expected = masked.size / 256
        assert ((counts - expected) ** 2 / expected).sum() < 380, cid
        plain, _ = outcome.quantizer.encode([updates[cid]], weights[cid], [])
        # No relation to the true quantised update left in the words.
        assert abs(np.corrcoef(masked[:-1].astype(float), plain[:-1].astype(float))[0, 1]) < 0.01


def _strip_masks(outcome, cid, seed_holders, key_holders, key_bytes=crypto.KEY_BYTES):
    """What colluders holding these shares could do with client ``cid``'s masked input:
    interpolate its seed and its mask key from the shares (``key_bytes`` 66: t - 1 shares
    forced through as if enough, the field element's low 32 bytes taken as the key) and
    strip both masks."""
    client = outcome.clients[cid]
    params, salt = outcome.server.params, outcome.server.session.encode()

    def rebuilt(holders, which, size):
        shares = {h: outcome.clients[h]._received[cid][which] for h in holders}
        return shamir.combine(shares, len(shares), size)

    seed = rebuilt(seed_holders, 0, crypto.KEY_BYTES)
    key = crypto.load_private(rebuilt(key_holders, 1, key_bytes)[-crypto.KEY_BYTES:])
    y = outcome.recording.masked[cid].copy()
    crypto.apply_mask(y, crypto.derive(seed, crypto.SELF_MASK, salt), -1)
    for peer in params.neighbours_of(cid):
        pair = crypto.agree(key, client.roster.keys[peer][1], crypto.PAIR_MASK, salt)
        crypto.apply_mask(y, pair, -1 if cid < peer else +1)
    return y


def test_the_true_update_is_recoverable_only_with_t_shares():
    """Everything the aggregator received, plus the shares of colluding clients: with t
    holders giving both of a client's shares its update comes out exactly; with t - 1 the
    secret does not rebuild and what is left is noise."""
    _, updates, weights, _ = _models(5, 50_000, seed=4)
    outcome = run_round(SecAggParams(5), updates, weights)
    t, target = outcome.server.params.t, 0
    plain, _ = outcome.quantizer.encode([updates[target]], weights[target], [])
    recovered = _strip_masks(outcome, target, [1, 2, 3], [1, 2, 3])
    assert t == 3
    np.testing.assert_array_equal(recovered, plain)
    # t - 1 colluders: the key does not rebuild (or rebuilds to another key), masks stay.
    with pytest.raises((shamir.NotEnoughShares, ValueError)):
        shamir.combine({h: outcome.clients[h]._received[target][1] for h in (1, 2)}, 3, 32)
    wrong = _strip_masks(outcome, target, [1, 2, 3], [1, 2], key_bytes=shamir.SHARE_BYTES)
    assert abs(np.corrcoef(wrong[:-1].astype(float), plain[:-1].astype(float))[0, 1]) < 0.01


def test_the_aggregators_own_shares_strip_only_the_self_mask():
    """The shares an honest round gives the aggregator (every survivor's seed) remove each
    client's self mask; the pairwise masks that remain are uniform noise per client and
    cancel only in the sum."""
    _, updates, weights, _ = _models(5, 100_000, seed=5)
    outcome = run_round(SecAggParams(5), updates, weights)
    salt, t = outcome.server.session.encode(), outcome.server.params.t
    for cid in range(5):
        seed = shamir.combine(outcome.server._shares_of(cid, "seed"), t, crypto.KEY_BYTES)
        y = outcome.recording.masked[cid].copy()
        crypto.apply_mask(y, crypto.derive(seed, crypto.SELF_MASK, salt), -1)
        counts = np.bincount(y >> 24, minlength=256)
        assert ((counts - y.size / 256) ** 2 / (y.size / 256)).sum() < 380
    # No key shares of a survivor reached the aggregator.
    assert all(not outcome.server._shares_of(cid, "key") for cid in range(5))
