"""The honest client's rule: it never gives, for one session, both kinds of shares of a peer;
never unmasks with fewer than t survivors or for clients that never shared; and across
sessions of one round (restarts) unmasks one survivor set only. A malicious aggregator that
asks is refused, the refusal logged, and nothing is sent."""

import logging

import numpy as np
import pytest

from client_component.secure_participant import Participant, UnsafeRequest
from contract.secagg.messages import Roster, SharesIn, UnmaskRequest
from contract.secagg.params import SecAggParams
from server_component.secure_round import SecureRound


def _participants_in_session(n=5):
    """n participants through stages 1-3 of one real ``SecureRound``."""
    params = SecAggParams(n)
    server = SecureRound(params, 1, model_words=11)
    clients = [Participant(c, params, 1) for c in range(n)]
    for c in clients:
        server.add_keys(c.advert())
        c.join(server.session)
    server.close_stage()
    roster = Roster.from_json(server.roster().to_json())
    for c in clients:
        server.add_shares(c.share(roster))
    server.close_stage()
    for c in clients:
        inbox = SharesIn.decode(server.inbox(c.client_id).encode())
        server.add_masked(c.masked(inbox, np.zeros(11, np.uint32), []))
    server.close_stage()
    return server, clients


@pytest.mark.parametrize(("survivors", "dropped", "reason"), [
    ([0, 1, 2, 3], [3, 4], "listed as survivors and as dropped"),
    ([0, 1], [2, 3, 4], "fewer than the threshold"),
    ([0, 1, 2, 3], [7], "never shared"),
    ([1, 2, 3, 4], [0], "this client is listed as dropped"),
])
def test_a_request_an_honest_client_must_not_answer_is_refused_and_logged(
        survivors, dropped, reason, caplog):
    server, clients = _participants_in_session()
    request = UnmaskRequest(1, server.session, survivors, dropped)
    with caplog.at_level(logging.ERROR, "client_component"), \
            pytest.raises(UnsafeRequest, match=reason):
        clients[0].unmask(request)
    assert "event=secagg_refused" in caplog.text


def test_a_second_different_request_in_the_same_session_is_refused():
    server, clients = _participants_in_session()
    honest = server.unmask_request()
    assert set(clients[0].unmask(honest).seed_shares) == {0, 1, 2, 3, 4}
    assert clients[0].unmask(honest).seed_shares  # the same request again: the same answer
    with pytest.raises(UnsafeRequest, match="second, different"):
        clients[0].unmask(UnmaskRequest(1, server.session, [0, 1, 2, 3], [4]))


def test_a_request_for_another_session_is_refused():
    server, clients = _participants_in_session()
    with pytest.raises(UnsafeRequest, match="session"):
        clients[0].unmask(UnmaskRequest(1, "0" * 32, [0, 1, 2, 3, 4], []))


def test_keys_of_one_session_are_never_offered_to_another():
    params = SecAggParams(3)
    participant = Participant(0, params, 1)
    participant.join("aaaa")
    with pytest.raises(RuntimeError, match="new keys are needed|offered to session"):
        participant.join("bbbb")
