"""Per-client credentials: derived from the run secret, naming their client, verified in
constant time; nothing else passes."""

import pytest

from contract.credentials import (
    Caller,
    CredentialError,
    client_token,
    client_tokens,
    identify,
    token_client_id,
)

SECRET = "run-secret-0123456789"


def test_each_client_token_names_its_client_and_verifies():
    tokens = client_tokens(SECRET, 3)
    assert len(set(tokens)) == 3
    for cid, token in enumerate(tokens):
        assert token.startswith(f"fl1.{cid}.") and token_client_id(token) == cid
        assert identify(token, SECRET) == Caller(cid)
    assert identify(SECRET, SECRET) == Caller(None)  # the operator


@pytest.mark.parametrize("forged", [
    client_token("another-run", 1),  # another run's token for the same id
    client_token(SECRET, 1).replace("fl1.1.", "fl1.2."),  # client 1's mac, client 2's id
    client_token(SECRET, 1)[:-2] + "AA", "fl1.1.", "fl1.x.abc", "fl2.1.abc", "", "Bearer",
])
def test_anything_else_is_not_a_credential_of_the_run(forged):
    assert identify(forged, SECRET) is None


def test_only_the_operator_may_act_for_any_client():
    assert Caller(None).may_act_for(4)
    assert Caller(2).may_act_for(2) and not Caller(2).may_act_for(3)


def test_a_malformed_client_token_is_named():
    with pytest.raises(CredentialError, match="fl1.<client id>.<mac>"):
        token_client_id("not-a-token")
