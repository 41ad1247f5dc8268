"""Secure aggregation over HTTP against a live aggregator: the clients' real code, the
aggregator's real endpoints; hostile inputs at each stage are refused with 4xx and change
nothing; a malicious aggregator gets a refusal."""

import logging
import threading
import time

import numpy as np
import pytest
import requests

from client_component.secure_participant import Participant, UnsafeRequest
from contract import wire
from contract.credentials import client_token
from contract.secagg.messages import Roster, SharesIn, SharesOut, UnmaskReply, UnmaskRequest
from contract.secagg.params import SecAggParams
from server_component.secure_round import SecureRound, Stage
from tests.support.federation import federate_all, start_clients
from tests.support.live_aggregator import TOKEN, small_weights, start_aggregator
from tests.support.numpy_learner import NumpyLearner


def _secure(n, rounds=2, **kwargs):
    aggregator = start_aggregator(n, rounds, max_long_poll_s=2.0,
                                  coordinator_kwargs={"secure": SecAggParams(n), **kwargs})
    threading.Thread(target=aggregator.coordinator.enforce_deadlines, daemon=True).start()
    return aggregator


def test_secure_rounds_give_plain_fedavgs_model_and_hide_per_client_metrics():
    secure, plain = _secure(5, 3), start_aggregator(5, 3)
    try:
        learners = [NumpyLearner(c) for c in range(5)]
        twins = [NumpyLearner(c) for c in range(5)]
        for learner in learners + twins:
            learner.partition_stats = {"examples": 10, "labels": [3, 7]}
        federate_all(secure.url, learners, 3, TOKEN, secure_aggregation="secagg")
        federate_all(plain.url, twins, 3, TOKEN)
        for a, b in zip(learners[0].weights, twins[0].weights, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)
        secure_history, plain_history = secure.coordinator.history, plain.coordinator.history
        assert [r.num_examples for r in secure_history] == [r.num_examples for r in plain_history]
        assert secure_history[-1].metrics == pytest.approx(plain_history[-1].metrics, abs=1e-3)
        assert all(not r.client_metrics and not r.client_examples for r in secure_history)
        # A site's label histogram stays at the site under secure aggregation.
        assert secure.coordinator.run_info.partitions == {}
        assert len(plain.coordinator.run_info.partitions) == 5
        assert secure.get("/v1/status").json()["secure_aggregation"] == "secagg"
    finally:
        secure.server.stop()
        plain.server.stop()


def test_a_client_lost_before_its_keys_leaves_the_round_to_the_quorum():
    aggregator = _secure(5, 2, round_timeout=3.0, min_clients=4)

    def vanish(client_id, round_):
        if client_id == 4 and round_ == 2:
            raise RuntimeError("client 4 lost its node")

    learners = [NumpyLearner(c, before_fit=vanish) for c in range(5)]
    results, errors = {}, {}
    try:
        for thread in start_clients(aggregator.url, learners, 2, TOKEN, results, errors,
                                    long_poll_s=1.0, secure_aggregation="secagg"):
            thread.join(timeout=60)
        assert sorted(results) == [0, 1, 2, 3] and list(errors) == [4]
        assert [r.client_ids for r in aggregator.coordinator.history] == [[0, 1, 2, 3, 4],
                                                                          [0, 1, 2, 3]]
        assert aggregator.coordinator.history[1].missing == [4]
    finally:
        aggregator.server.stop()


def test_a_malicious_aggregator_asking_for_both_shares_gets_a_refusal(monkeypatch, caplog):
    """The aggregator lists client 4 as survivor and as dropped: with its seed shares and its
    mask-key shares it could unmask client 4 alone. Every client refuses; none is sent."""
    honest = SecureRound.unmask_request

    def malicious(self):
        request = honest(self)
        return type(request)(request.round, request.session, request.survivors, [4])

    monkeypatch.setattr(SecureRound, "unmask_request", malicious)
    aggregator = _secure(5, 1)
    results, errors = {}, {}
    try:
        with caplog.at_level(logging.ERROR, "client_component"):
            for thread in start_clients(aggregator.url, [NumpyLearner(c) for c in range(5)],
                                        1, TOKEN, results, errors,
                                        secure_aggregation="secagg"):
                thread.join(timeout=60)
        assert not results and sorted(errors) == [0, 1, 2, 3, 4]
        assert all(isinstance(e, UnsafeRequest) for e in errors.values())
        assert caplog.text.count("event=secagg_refused") == 5
        assert aggregator.coordinator._open.secure.replies == {}
    finally:
        aggregator.server.stop()


# ---- hostile inputs, stage by stage -----------------------------------------------------

class Manual:
    """Clients driven by hand: each stage's body built by the real ``Participant``."""

    def __init__(self, aggregator, n):
        self.aggregator, self.n = aggregator, n
        self.params = SecAggParams(n)
        self.clients = [Participant(c, self.params, 1) for c in range(n)]
        self.http = [requests.Session() for _ in range(n)]
        for c, session in enumerate(self.http):
            session.headers["Authorization"] = f"Bearer {client_token(TOKEN, c)}"

    def post(self, c, path, body):
        if isinstance(body, dict):
            return self.http[c].post(self.aggregator.url + path, json=body, timeout=10)
        return self.http[c].post(self.aggregator.url + path, data=bytes(body), timeout=10)

    def get(self, c, path, **params):
        return self.http[c].get(self.aggregator.url + path, params={"round": 1, **params},
                                timeout=10)

    def keys(self, who):
        for c in who:
            reply = self.post(c, "/v1/secagg/keys", self.clients[c].advert().to_json())
            assert reply.status_code == 202, reply.text
            self.clients[c].join(reply.json()["session"])

    def roster(self, c=0):
        return Roster.from_json(self.get(c, "/v1/secagg/roster").json())

    def shares(self, who):
        roster = self.roster()
        for c in who:
            assert self.post(c, "/v1/secagg/shares",
                             self.clients[c].share(roster).encode()).status_code == 202

    def masked_body(self, c, words=None):
        inbox = SharesIn.decode(self.get(c, "/v1/secagg/shares", client_id=c).content)
        vector = np.zeros(words or self.aggregator.coordinator._spec.num_parameters + 1,
                          np.uint32)
        return self.clients[c].masked(inbox, vector, []).encode()

    @property
    def secure(self):
        return self.aggregator.coordinator._open.secure


@pytest.fixture
def manual():
    aggregator = _secure(3, 1)
    aggregator.init(small_weights())
    yield Manual(aggregator, 3)
    aggregator.server.stop()


def _unchanged(manual, check):
    before = (manual.secure.stage, dict(manual.secure.keys), dict(manual.secure.shares),
              dict(manual.secure.masked), dict(manual.secure.replies))
    check()
    after = (manual.secure.stage, dict(manual.secure.keys), dict(manual.secure.shares),
             dict(manual.secure.masked), dict(manual.secure.replies))
    assert before == after


def test_hostile_key_advertisements(manual):
    good = manual.clients[0].advert().to_json()
    cases = [
        ({**good, "cipher_key": "AAAA"}, 0, 400),  # 3 bytes, not a key
        ({**good, "mask_key": good["cipher_key"]}, 0, 400),  # one key for both purposes
        ({**good, "round": 2}, 0, 409),  # not the open round
        ({**good, "client_id": 7}, 0, 401),  # another client's id with client 0's token
        (good, 1, 401),  # client 1's token speaking for client 0
    ]
    for body, sender, status in cases:
        _unchanged(manual, lambda b=body, s=sender, st=status:
                   _expect(manual.post(s, "/v1/secagg/keys", b), st))
    assert manual.post(0, "/v1/secagg/keys", good).status_code == 202
    assert manual.post(0, "/v1/secagg/keys", good).status_code == 200  # a retry
    other = Participant(0, manual.params, 1).advert().to_json()
    _unchanged(manual, lambda: _expect(manual.post(0, "/v1/secagg/keys", other), 409))


def test_hostile_shares_and_a_client_skipping_a_stage(manual):
    manual.keys([0, 1])
    early = manual.post(0, "/v1/secagg/masked", b"x" * 10)
    assert early.status_code == 400  # not even a safetensors body
    manual.keys([2])
    roster = manual.roster()
    good = manual.clients[0].share(roster)
    unknown = SharesOut(0, 1, good.session, {**good.sealed, 9: good.sealed[1]})
    missing = SharesOut(0, 1, good.session, {h: s for h, s in good.sealed.items() if h != 2})
    stale = SharesOut(0, 1, "f" * 32, good.sealed)
    short = wire.EncodedParts({"to/1": np.zeros(5, np.uint8)}, {
        "client_id": "0", "round": "1", "session": good.session})
    for body, status, code in ((unknown.encode(), 400, "malformed"),
                               (missing.encode(), 400, "malformed"),
                               (stale.encode(), 409, "session_superseded"),
                               (short, 400, "malformed")):
        _unchanged(manual, lambda b=body, s=status, c=code:
                   _expect(manual.post(0, "/v1/secagg/shares", b), s, c))
    # Skipping the share stage: a masked input now is refused, nothing is summed.
    _unchanged(manual, lambda: _expect(manual.get(0, "/v1/secagg/shares", client_id=0,
                                                  wait=0), 204))
    assert manual.post(0, "/v1/secagg/shares", good.encode()).status_code == 202
    assert manual.post(0, "/v1/secagg/shares", good.encode()).status_code == 200  # a retry


def test_hostile_masked_inputs_and_unmasking_shares(manual):
    manual.keys([0, 1, 2])
    manual.shares([0, 1])  # client 2 never shares ...
    manual.secure.close_stage()  # ... and the aggregator's deadline moved on without it
    _expect(manual.get(2, "/v1/secagg/shares", client_id=2), 409, "stage_closed")
    wrong_size = manual.masked_body(0, words=7)
    _unchanged(manual, lambda: _expect(manual.post(0, "/v1/secagg/masked", wrong_size), 422))
    body0, body1 = manual.masked_body(0), manual.masked_body(1)
    assert manual.post(0, "/v1/secagg/masked", body0).status_code == 202
    assert manual.post(0, "/v1/secagg/masked", body0).status_code == 200  # a retry
    assert manual.post(1, "/v1/secagg/masked", body1).status_code == 202
    request = manual.get(0, "/v1/secagg/unmask").json()
    assert request["survivors"] == [0, 1] and request["dropped"] == []
    # Unmasking shares for a client nobody asked about: refused, nothing kept.
    reply = manual.clients[0].unmask(UnmaskRequest.from_json(request))
    forged = UnmaskReply(0, 1, reply.session, reply.seed_shares,
                         {2: next(iter(reply.seed_shares.values()))})
    _unchanged(manual, lambda: _expect(manual.post(0, "/v1/secagg/unmask", forged.encode()),
                                       400, "malformed"))
    assert manual.post(0, "/v1/secagg/unmask", reply.encode()).status_code == 202
    assert manual.secure.stage == Stage.UNMASK  # client 1 has not answered yet


def test_plain_updates_are_refused_in_a_secure_run(manual):
    response = manual.aggregator.update(0, 1)
    assert response.status_code == 422 and "/v1/secagg" in response.json()["detail"]
    assert manual.aggregator.coordinator.status().reported == []


def _expect(response, status, code=None):
    assert response.status_code == status, response.text
    if code:
        assert response.json()["error"] == code


def test_without_a_quorum_at_a_stage_the_run_fails_naming_the_stage_and_the_missing():
    aggregator = _secure(3, 1, round_timeout=1.0, min_clients=3)

    def stuck(client_id, round_):
        if client_id == 2:
            time.sleep(2.5)

    results, errors = {}, {}
    try:
        for thread in start_clients(aggregator.url, [NumpyLearner(c, before_fit=stuck)
                                                     for c in range(3)], 1, TOKEN, results,
                                    errors, long_poll_s=1.0, secure_aggregation="secagg"):
            thread.join(timeout=60)
        failure = aggregator.coordinator.failure
        assert "secure-aggregation stage keys with 2 of 3 clients" in failure
        assert "missing client ids [2]" in failure
        assert not results and all(getattr(e, "code", "") == "run_failed"
                                   for e in errors.values()), errors
    finally:
        aggregator.server.stop()
