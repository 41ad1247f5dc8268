"""A restarted aggregator runs the open round's secure aggregation again with fresh keys on
every client, and no sequence of restarts lets it unmask a single client."""

import random
import re
import threading

import numpy as np
import pytest

from client_component.secure_participant import TooFewHolders, UnmaskLedger, UnsafeRequest
from contract import wire
from contract.secagg.messages import KeyAdvert, Roster, SharesIn, UnmaskRequest
from contract.secagg.params import SecAggParams
from contract.secagg.quantize import Quantizer
from server_component.checkpoint import CHECKPOINT_FILE
from server_component.outputs import FINAL_WEIGHTS
from server_component.secure_round import CannotUnmask, SecureRound
from tests.reliability.test_resilience import run_federation
from tests.support.aggregator_process import AggregatorProcess

SECURE = ("--secure-aggregation", "secagg")


def _federation(tmp_path, flags, before_fit=None, on_started=None):
    secure = "secagg" if SECURE[0] in flags else "off"
    return run_federation(tmp_path, n=3, rounds=3, flags=flags, before_fit=before_fit,
                          on_started=on_started, secure_aggregation=secure)


@pytest.mark.slow
@pytest.mark.reliability(
    scenario="aggregator killed (-9) in a secure round, two clients' keys in memory, restarted",
    expected="resumes from the checkpoint; the round's secure aggregation runs again in a new "
             "session with fresh keys on every client; no round repeated; final weights equal "
             "the plain run's within the quantisation bound")
def test_kill_9_in_a_secure_round_reruns_it_with_fresh_keys(tmp_path, observe):
    reference, *_, ref_out = _federation(tmp_path / "ref", ())
    assert reference.wait() == 0
    expected = wire.decode((ref_out / FINAL_WEIGHTS).read_bytes()).tensors
    hold = threading.Event()

    def client_2_waits_in_round_2(cid, round_):
        if cid == 2 and round_ == 2:
            hold.wait(60)

    ckpt = tmp_path / "run" / "ckpt"

    def crash_and_restart(server, port, out):
        assert server.wait_for("event=secagg_keys round=2 client=0",
                               "event=secagg_keys round=2 client=1")
        server.proc.kill()
        server.proc.wait()
        assert (ckpt / CHECKPOINT_FILE).exists()
        restarted = AggregatorProcess(port, out, "--num-clients", "3", "--rounds", "3",
                                      "--checkpoint-dir", str(ckpt), *SECURE)
        hold.set()
        return restarted, server.output

    (tmp_path / "run").mkdir()
    crashed = {}

    def on_started(server, port, out):
        restarted, crashed["output"] = crash_and_restart(server, port, out)
        return restarted

    server, learners, results, errors, out = _federation(
        tmp_path / "run", ("--checkpoint-dir", str(ckpt), *SECURE),
        before_fit=client_2_waits_in_round_2, on_started=on_started)
    assert not errors, (errors, server.output)
    assert server.wait() == 0, server.output
    assert "event=resumed version=1 rounds_closed=1" in server.output
    [before] = re.findall(r"event=secagg_session round=2 session=(\w+)", crashed["output"])
    [after] = re.findall(r"event=secagg_session round=2 session=(\w+)", server.output)
    assert before != after
    assert all(learner.rounds_fitted == [1, 2, 3] for learner in learners)
    got = wire.decode((out / FINAL_WEIGHTS).read_bytes()).tensors
    bound = Quantizer(1.0, 100_000, 3).error_bound(3, 60) * 3  # three rounds' errors
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, atol=bound)
    observe(f"round 2 ran in session {before[:8]}..., then after the restart in "
            f"{after[:8]}...; no client refitted; final weights within {bound:.1e}")


def _session(params, clients, ledgers, gone):
    """One session of round 1 with fresh participants; ``gone[stage]`` drop before it.
    Returns (survivors, the unmasked sum or None when the clients refused)."""
    from client_component.secure_participant import Participant

    server = SecureRound(params, 1, model_words=4)
    fresh = {c: Participant(c, params, 1) for c in clients}
    for c in clients - gone.get("keys", set()):
        server.add_keys(KeyAdvert.from_json(fresh[c].advert().to_json()))
        fresh[c].join(server.session)
    server.close_stage()
    roster = Roster.from_json(server.roster().to_json())
    for c in set(server.keys) - gone.get("shares", set()):
        try:
            server.add_shares(fresh[c].share(roster))
        except TooFewHolders:
            continue
    server.close_stage()
    quantizer = Quantizer(params.clip, params.max_examples, params.num_clients)
    for c in set(server.shares) - gone.get("masked", set()):
        inbox = SharesIn.decode(server.inbox(c).encode())
        vector, _ = quantizer.encode([np.full(3, 0.01 * (c + 1))], 10, [])
        server.add_masked(fresh[c].masked(inbox, vector, []))
    server.close_stage()
    request = UnmaskRequest.from_json(server.unmask_request().to_json())
    for c in request.survivors:
        try:
            ledgers[c].check(request)
            server.add_reply(fresh[c].unmask(request))
        except UnsafeRequest:  # another set than before, or fewer survivors than t
            continue
        ledgers[c].record(request)
    try:
        total = server.unmasked_sum()
    except CannotUnmask:
        return request.survivors, None
    return request.survivors, quantizer.decode(total, 0)[0]


def test_no_sequence_of_restarts_unmasks_a_single_client():
    """Random sequences of sessions of one round (each a restart: fresh keys, clients
    dropping at random stages): whatever the aggregator collects, every sum it can unmask is
    over the same survivor set, so no difference of two sums isolates a client; a session
    with another set is refused by the clients that unmasked before."""
    rng = random.Random(20261202)
    params = SecAggParams(5)
    for _ in range(30):
        ledgers = {c: UnmaskLedger(c) for c in range(5)}
        sums = {}
        for _ in range(rng.randint(2, 5)):
            gone = {stage: {c for c in range(5) if rng.random() < 0.15}
                    for stage in ("keys", "shares", "masked")}
            survivors, total = _session(params, set(range(5)), ledgers, gone)
            if total is not None:
                sums[tuple(survivors)] = total
        assert len(sums) <= 1, f"two different survivor sets unmasked: {sorted(sums)}"


def test_an_honest_restart_with_the_same_survivors_completes_again():
    params = SecAggParams(4)
    ledgers = {c: UnmaskLedger(c) for c in range(4)}
    first = _session(params, set(range(4)), ledgers, {})
    second = _session(params, set(range(4)), ledgers, {})
    assert first[0] == second[0] == [0, 1, 2, 3]
    np.testing.assert_array_equal(first[1], second[1])
    third = _session(params, set(range(4)), ledgers, {"masked": {3}})
    assert third == ([0, 1, 2], None)  # one client fewer: refused, nothing unmasked
