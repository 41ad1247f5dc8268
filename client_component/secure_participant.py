"""A client's side of one secure-aggregation session: fresh keys, shares of its secrets for
its holders, its masked vector, and its answer to the unmasking request, under the honest
client's rule.

The rule (Bonawitz et al. 2017, sec. 4): for one session, a client reveals either its share
of a peer's self-mask seed (the peer survived: its input is in the sum) or its share of that
peer's mask key (the peer dropped: its pairwise masks must go), never both, because both
would unmask the peer's input alone. An unmasking request that would need both, that names
fewer survivors than the threshold, or that names clients who never shared, is refused and
logged. Across sessions of one round (a restarted aggregator runs the round again) the
client unmasks one survivor set only (``UnmaskLedger``): two sums over sets that differ by
one client would give that client's input away.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from contract.secagg import crypto, shamir
from contract.secagg.messages import (
    KeyAdvert,
    MaskedInput,
    Roster,
    SharesIn,
    SharesOut,
    UnmaskReply,
    UnmaskRequest,
    parse_share_plaintext,
    share_associated_data,
    share_plaintext,
)
from contract.secagg.params import SecAggParams

log = logging.getLogger("client_component")


class UnsafeRequest(RuntimeError):
    """The aggregator asked for something an honest client never gives (the safety rule)."""


class SessionMismatch(RuntimeError):
    """The aggregator's parameters or session differ from what this client agreed to."""


class TooFewHolders(RuntimeError):
    """Fewer of this client's holders advertised keys than the threshold: its secrets could
    not be rebuilt, so it sits the round out."""


class Participant:
    """Client ``client_id`` in one session of round ``round_``: the stages in order."""

    def __init__(self, client_id: int, params: SecAggParams, round_: int) -> None:
        self.client_id, self.params, self.round = client_id, params, round_
        self._cipher_key = crypto.new_private_key()
        self._mask_key = crypto.new_private_key()
        self._seed = os.urandom(crypto.KEY_BYTES)
        self.roster: Roster | None = None
        self._joined = ""  # the session its keys were advertised in
        self._shares: SharesOut | None = None  # made once: a retry re-sends the same
        self._received: dict[int, tuple[bytes, bytes]] = {}  # sender -> (seed, key) shares
        self._shared_with_me: list[int] = []
        self.answered: UnmaskRequest | None = None

    @property
    def session(self) -> str:
        """The session this participant joined (empty before its keys were accepted)."""
        return self._joined

    def join(self, session: str) -> None:
        """Record the session the aggregator accepted the keys for; another session later
        (the aggregator restarted) is refused: new keys are needed."""
        if self._joined and session != self._joined:
            raise SessionMismatch(f"keys of session {self._joined} offered to session "
                                  f"{session}")
        self._joined = session

    def advert(self) -> KeyAdvert:
        """Stage 1: the public keys, with the session they were accepted in once they were
        (a retry must not place them in another session)."""
        return KeyAdvert(self.client_id, self.round, crypto.public_bytes(self._cipher_key),
                         crypto.public_bytes(self._mask_key), self._joined)

    def share(self, roster: Roster) -> SharesOut:
        """Stage 2: seal a share of the seed and of the mask key for each holder (once: a
        retry gets the same shares, so the aggregator sees an identical repeat)."""
        if self._shares is not None and roster == self.roster:
            return self._shares
        self._check_roster(roster)
        self.roster = roster
        holders = [h for h in self.params.holders(self.client_id) if h in roster.keys]
        if len(holders) < self.params.t:
            raise TooFewHolders(f"only {len(holders)} of client {self.client_id}'s holders "
                                  f"advertised keys; the threshold is {self.params.t}")
        seeds = shamir.split(self._seed, holders, self.params.t)
        keys = shamir.split(crypto.private_bytes(self._mask_key), holders, self.params.t)
        sealed = {}
        for h in holders:
            key = crypto.agree(self._cipher_key, roster.keys[h][0], crypto.SHARE_KEY,
                               self._salt)
            plain = share_plaintext(self.client_id, h, seeds[h], keys[h])
            sealed[h] = crypto.seal(key, plain, share_associated_data(
                self.session, self.round, self.client_id, h))
        self._shares = SharesOut(self.client_id, self.round, self.session, sealed)
        return self._shares

    def masked(self, inbox: SharesIn, vector: np.ndarray, metric_names: list[str],
               privacy: dict[str, float] | None = None) -> MaskedInput:
        """Stage 3: open the shares sealed for this client; mask ``vector`` (a copy)."""
        if inbox.session != self.session or inbox.round != self.round:
            raise SessionMismatch(f"shares of session {inbox.session} round {inbox.round}, "
                                  f"this client is in {self.session} round {self.round}")
        if self.client_id not in inbox.survivors:
            raise SessionMismatch(f"client {self.client_id} is not among the clients that "
                                  "shared")
        for sender, sealed in inbox.sealed.items():
            self._receive(sender, sealed)
        self._shared_with_me = sorted(inbox.survivors)
        masked = np.array(vector, np.uint32, copy=True)
        crypto.apply_mask(masked, crypto.derive(self._seed, crypto.SELF_MASK, self._salt), +1)
        for peer in self.params.neighbours_of(self.client_id):
            if peer in inbox.survivors:
                pair = crypto.agree(self._mask_key, self.roster.keys[peer][1],
                                    crypto.PAIR_MASK, self._salt)
                crypto.apply_mask(masked, pair, +1 if self.client_id < peer else -1)
        return MaskedInput(self.client_id, self.round, self.session, masked,
                           list(metric_names), dict(privacy or {}))

    def unmask(self, request: UnmaskRequest) -> UnmaskReply:
        """Stage 4: the shares the request asks for, if an honest client may give them."""
        self._check_unmask(request)
        self.answered = request
        seeds = {j: self._received[j][0] for j in request.survivors if j in self._received}
        keys = {j: self._received[j][1] for j in request.dropped if j in self._received}
        return UnmaskReply(self.client_id, self.round, self.session, seeds, keys)

    # ---- checks ------------------------------------------------------------------------

    @property
    def _salt(self) -> bytes:
        return self.session.encode()

    def _check_roster(self, roster: Roster) -> None:
        agreed = (self.params.t, self.params.ring_size, self.params.clip,
                  self.params.max_examples)
        offered = (roster.threshold, roster.neighbours, roster.clip, roster.max_examples)
        if agreed != offered:
            raise SessionMismatch(f"the aggregator runs secure aggregation with (threshold, "
                                  f"neighbours, clip, max_examples) = {offered}, this client "
                                  f"with {agreed}: the two must be given the same settings")
        if roster.session != self._joined:
            raise SessionMismatch(f"a roster of session {roster.session}, this client's keys "
                                  f"are for {self._joined or 'no session yet'}")
        if roster.round != self.round or self.client_id not in roster.keys:
            raise SessionMismatch(f"the roster of round {roster.round} does not list client "
                                  f"{self.client_id}")
        mine = (crypto.public_bytes(self._cipher_key), crypto.public_bytes(self._mask_key))
        if roster.keys[self.client_id] != mine:
            raise SessionMismatch("the roster lists other keys for this client")

    def _receive(self, sender: int, sealed: bytes) -> None:
        key = crypto.agree(self._cipher_key, self.roster.keys[sender][0], crypto.SHARE_KEY,
                           self._salt)
        plain = crypto.open_sealed(key, sealed, share_associated_data(
            self.session, self.round, sender, self.client_id))
        claimed_sender, receiver, seed, mask_key = parse_share_plaintext(plain)
        if (claimed_sender, receiver) != (sender, self.client_id):
            raise SessionMismatch(f"a share from {sender} names {claimed_sender} -> {receiver}")
        self._received[sender] = (seed, mask_key)

    def _check_unmask(self, request: UnmaskRequest) -> None:
        both = sorted(set(request.survivors) & set(request.dropped))
        problem = None
        if request.session != self.session or request.round != self.round:
            problem = f"a request for session {request.session} round {request.round}"
        elif both:
            problem = (f"clients {both} listed as survivors and as dropped (both shares of a "
                       "client unmask its input alone)")
        elif self.answered is not None and self.answered != request:
            problem = "a second, different unmasking request in the same session"
        elif self.client_id not in request.survivors:
            problem = "this client is listed as dropped"
        elif not set(request.survivors) | set(request.dropped) <= set(self._shared_with_me):
            problem = (f"clients {sorted(set(request.survivors) | set(request.dropped))} "
                       f"include some that never shared (shared: {self._shared_with_me})")
        elif len(request.survivors) < self.params.t:
            problem = (f"{len(request.survivors)} survivors, fewer than the threshold "
                       f"{self.params.t}")
        if problem:
            log.error("client=%d event=secagg_refused round=%d session=%s reason=%s",
                      self.client_id, self.round, self.session, problem)
            raise UnsafeRequest(f"client {self.client_id} refuses to unmask round "
                                f"{self.round}: {problem}")


class UnmaskLedger:
    """Which survivor set a client helped unmask, per round, across the round's sessions."""

    def __init__(self, client_id: int) -> None:
        self.client_id = client_id
        self._unmasked: dict[int, list[int]] = {}

    def check(self, request: UnmaskRequest) -> None:
        """Refuse (UnsafeRequest, logged) a set other than the one unmasked before."""
        before = self._unmasked.get(request.round)
        if before is None or before == list(request.survivors):
            return
        log.error("client=%d event=secagg_refused round=%d reason=unmasked survivors %s "
                  "before, now asked for %s", self.client_id, request.round, before,
                  request.survivors)
        raise UnsafeRequest(f"client {self.client_id} already helped unmask round "
                            f"{request.round} for survivors {before}; it refuses another set "
                            f"({request.survivors}): the difference of the two sums would "
                            "reveal a client's update")

    def record(self, request: UnmaskRequest) -> None:
        """Remember the set this client is about to help unmask."""
        self._unmasked[request.round] = list(request.survivors)
