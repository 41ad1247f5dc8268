"""Per-client credentials: each client authenticates with a token of its own, derived from the
run's secret, which only the aggregator holds.

A client token is ``fl1.<client id>.<mac>``, with mac = base64url(HMAC-SHA256(run secret,
"fl-client:<client id>")). It names its client, so the aggregator learns from the bearer
token alone who is calling, and refuses a body that claims another client id; holding client
2's token does not let anyone post as client 3, and no token can be made without the secret.
The run secret itself (the aggregator's ``--token``) stays an operator credential: it may
read and act for any client (tests, benchmarks, a person debugging a run).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

PREFIX = "fl1"


class CredentialError(ValueError):
    """A client token that is malformed (not ``fl1.<id>.<mac>``)."""


@dataclass(frozen=True)
class Caller:
    """Who a valid bearer token belongs to: one client, or the operator (any client)."""

    client_id: int | None  # None: the run secret itself

    def may_act_for(self, client_id: int) -> bool:
        """Whether this caller may send a body that says it comes from ``client_id``."""
        return self.client_id is None or self.client_id == client_id


def client_token(run_secret: str, client_id: int) -> str:
    """Client ``client_id``'s token for the run whose secret is ``run_secret``."""
    return f"{PREFIX}.{client_id}.{_mac(run_secret, client_id)}"


def client_tokens(run_secret: str, num_clients: int) -> list[str]:
    """Every client's token, in client-id order (what the pipeline's fan-out iterates)."""
    return [client_token(run_secret, cid) for cid in range(num_clients)]


def token_client_id(token: str) -> int:
    """The client id a client token names (CredentialError if it is not one); the token is
    not verified here."""
    prefix, _, rest = token.partition(".")
    client_id, _, mac = rest.partition(".")
    if prefix != PREFIX or not client_id.isdigit() or not mac:
        raise CredentialError(f"not a client token (expected {PREFIX}.<client id>.<mac>)")
    return int(client_id)


def identify(token: str, run_secret: str) -> Caller | None:
    """Who ``token`` belongs to in the run with ``run_secret``; None when it is no valid
    credential of this run. Compared in constant time."""
    if hmac.compare_digest(token.encode(), run_secret.encode()):
        return Caller(None)
    try:
        client_id = token_client_id(token)
    except CredentialError:
        return None
    expected = client_token(run_secret, client_id)
    return Caller(client_id) if hmac.compare_digest(token.encode(), expected.encode()) else None


def _mac(run_secret: str, client_id: int) -> str:
    digest = hmac.new(run_secret.encode(), f"fl-client:{client_id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")
