"""One round of secure aggregation at the aggregator: the four stages' state, the uint32
running sum of masked inputs, and the unmasking.

Pure state, no locks, no clock: the coordinator (``secure_stages``) calls it under its lock
and decides when a stage closes (everyone expected arrived, or the deadline with a quorum).
Everything that can refuse a message is checked before anything is stored, so a refused
message leaves the round as it was. What is kept is O(model) for the sum plus O(N x
neighbours) small shares, whatever N is.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from contract.errors import (
    IncompatibleUpdate,
    MalformedRequest,
    RoundConflict,
    SessionSuperseded,
    StageClosed,
)
from contract.secagg import crypto, shamir
from contract.secagg.messages import (
    KeyAdvert,
    MaskedInput,
    Roster,
    SharesIn,
    SharesOut,
    UnmaskReply,
    UnmaskRequest,
)
from contract.secagg.params import SecAggParams


class Stage(str, Enum):
    """Where a round's secure aggregation is: which messages it accepts."""

    KEYS = "keys"
    SHARES = "shares"
    MASKED = "masked"
    UNMASK = "unmask"
    DONE = "done"


def masked_digest(message: MaskedInput) -> str:
    """What tells a re-sent masked input from a different one."""
    return hashlib.sha256(message.vector).hexdigest()


class CannotUnmask(RuntimeError):
    """Too few shares to rebuild a secret: the round cannot produce its sum."""


@dataclass
class SecureRound:
    """The secure aggregation of round ``round`` (one session: fresh keys)."""

    params: SecAggParams
    round: int
    model_words: int  # words of a masked input before its metrics: parameters + 1 (weight)
    session: str = field(default_factory=lambda: secrets.token_hex(16))
    stage: Stage = Stage.KEYS
    keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    shares: dict[int, dict[int, bytes]] = field(default_factory=dict)  # sender -> holder -> sealed
    masked: dict[int, str] = field(default_factory=dict)  # client -> digest of its input
    replies: dict[int, UnmaskReply] = field(default_factory=dict)
    metric_names: list[str] | None = None
    sum: np.ndarray | None = None
    dropped: list[int] = field(default_factory=list)

    # ---- who is expected where ---------------------------------------------------------

    def expected(self) -> list[int]:
        """The clients the open stage waits for (the previous stage's participants)."""
        return {Stage.KEYS: list(range(self.params.num_clients)),
                Stage.SHARES: sorted(self.keys), Stage.MASKED: sorted(self.shares),
                Stage.UNMASK: sorted(self.masked), Stage.DONE: []}[self.stage]

    def arrived(self) -> list[int]:
        """The clients the open stage has heard from."""
        return sorted({Stage.KEYS: self.keys, Stage.SHARES: self.shares,
                       Stage.MASKED: self.masked, Stage.UNMASK: self.replies,
                       Stage.DONE: {}}[self.stage])

    def everyone_arrived(self) -> bool:
        """Whether the open stage can close now without waiting for its deadline."""
        return self.arrived() == self.expected()

    # ---- stage 1: keys -----------------------------------------------------------------

    def add_keys(self, advert: KeyAdvert) -> bool:
        """Record a client's public keys; False for an identical repeat (at any stage: a
        client that lost its connection resumes with it)."""
        keys = (advert.cipher_key, advert.mask_key)
        self._require(None, advert.client_id, advert.round, advert.session or None)
        if self.keys.get(advert.client_id) == keys:
            return False
        self._require(Stage.KEYS, advert.client_id, advert.round)
        if advert.client_id in self.keys:
            raise RoundConflict(f"client {advert.client_id} already advertised other keys "
                                f"for this session")
        self.keys[advert.client_id] = keys
        return True

    def roster(self) -> Roster:
        """The key stage's result, as every participant reads it."""
        return Roster(self.session, self.round, self.params.t, self.params.ring_size,
                      self.params.clip, self.params.max_examples, dict(self.keys))

    # ---- stage 2: shares ---------------------------------------------------------------

    def add_shares(self, message: SharesOut) -> bool:
        """Keep a client's sealed shares; False for an identical repeat (at any stage)."""
        sender = message.client_id
        self._require(None, sender, message.round, message.session)
        if self.shares.get(sender) == message.sealed:
            return False
        self._require(Stage.SHARES, sender, message.round)
        holders = [h for h in self.params.holders(sender) if h in self.keys]
        if sorted(message.sealed) != holders:
            raise MalformedRequest(f"client {sender} must send one sealed share to each of "
                                   f"{holders} (itself and its neighbours with keys), got "
                                   f"{sorted(message.sealed)}")
        if sender in self.shares:
            raise RoundConflict(f"client {sender} already sent other shares this session")
        self.shares[sender] = dict(message.sealed)
        return True

    def inbox(self, client_id: int) -> SharesIn:
        """The shares sealed for ``client_id``, once the share stage closed."""
        if client_id not in self.shares:
            raise StageClosed(f"client {client_id} sent no shares in session {self.session}: "
                              f"it takes no part in round {self.round}")
        sealed = {s: by_holder[client_id] for s, by_holder in self.shares.items()
                  if client_id in by_holder}
        return SharesIn(self.round, self.session, sorted(self.shares), sealed)

    # ---- stage 3: masked inputs --------------------------------------------------------

    def add_masked(self, message: MaskedInput, digest: str | None = None) -> bool:
        """Fold a masked input into the running sum; False for an identical repeat (at any
        stage). ``digest``: its ``masked_digest``, computed before the caller's lock."""
        self._require(None, message.client_id, message.round, message.session)
        digest = digest or masked_digest(message)
        if self.masked.get(message.client_id) == digest:
            return False
        self._require(Stage.MASKED, message.client_id, message.round)
        if message.vector.size != self.model_words + len(message.metric_names):
            raise IncompatibleUpdate(
                f"a masked input of round {self.round} has {self.model_words} words plus one "
                f"per metric, got {message.vector.size} with {len(message.metric_names)} "
                "metrics")
        if self.metric_names is not None and message.metric_names != self.metric_names:
            raise IncompatibleUpdate(f"metric names {message.metric_names} differ from the "
                                     f"round's {self.metric_names}")
        if message.client_id in self.masked:
            raise RoundConflict(f"client {message.client_id} already sent another masked "
                                "input this session")
        if self.sum is None:
            self.sum = message.vector.copy()
            self.metric_names = list(message.metric_names)
        else:
            np.add(self.sum, message.vector, out=self.sum)
        self.masked[message.client_id] = digest
        return True

    def unmask_request(self) -> UnmaskRequest:
        """Who survived the masked stage and who dropped after sharing."""
        return UnmaskRequest(self.round, self.session, sorted(self.masked), self.dropped)

    # ---- stage 4: unmasking ------------------------------------------------------------

    def add_reply(self, reply: UnmaskReply) -> bool:
        """Keep a survivor's shares; False for an identical repeat (at any stage)."""
        holder = reply.client_id
        self._require(None, holder, reply.round, reply.session)
        if self.replies.get(holder) == reply:
            return False
        self._require(Stage.UNMASK, holder, reply.round)
        for kind, asked, given in (("seed", self.masked, reply.seed_shares),
                                   ("key", self.dropped, reply.key_shares)):
            wanted = {j for j in asked if holder in self.params.holders(j)
                      and holder in self.shares.get(j, {})}
            if set(given) - wanted:
                raise MalformedRequest(f"client {holder} sent {kind} shares for "
                                       f"{sorted(set(given) - wanted)}, not asked of it")
        if holder in self.replies:
            raise RoundConflict(f"client {holder} already sent other unmasking shares")
        self.replies[holder] = reply
        return True

    def can_unmask(self) -> bool:
        """Whether every survivor's seed and every dropout's key has enough shares."""
        return self._missing_shares() == []

    def unmasked_sum(self) -> np.ndarray:
        """The sum of the survivors' quantised vectors: their masks removed."""
        if self.sum is None:
            raise CannotUnmask(f"no masked input arrived in round {self.round}")
        missing = self._missing_shares()
        if missing:
            raise CannotUnmask(f"too few shares (threshold {self.params.t}) to unmask "
                               f"{', '.join(missing)}")
        total, salt = self.sum, self.session.encode()
        for j in self.masked:
            seed = shamir.combine(self._shares_of(j, "seed"), self.params.t, crypto.KEY_BYTES)
            crypto.apply_mask(total, crypto.derive(seed, crypto.SELF_MASK, salt), -1)
        for d in self.dropped:
            self._remove_pair_masks(total, d, salt)
        self.stage = Stage.DONE
        return total

    def _remove_pair_masks(self, total: np.ndarray, dropped: int, salt: bytes) -> None:
        raw = shamir.combine(self._shares_of(dropped, "key"), self.params.t, crypto.KEY_BYTES)
        key = crypto.load_private(raw)
        if crypto.public_bytes(key) != self.keys[dropped][1]:
            raise CannotUnmask(f"the shares of client {dropped}'s mask key do not rebuild it")
        for k in self.params.neighbours_of(dropped):
            if k in self.masked:
                pair = crypto.agree(key, self.keys[k][1], crypto.PAIR_MASK, salt)
                # k added the mask of its pair with the dropout (k < dropped) or subtracted it.
                crypto.apply_mask(total, pair, -1 if k < dropped else +1)

    def _shares_of(self, client: int, kind: str) -> dict[int, bytes]:
        field_ = "seed_shares" if kind == "seed" else "key_shares"
        return {h: getattr(r, field_)[client] for h, r in self.replies.items()
                if client in getattr(r, field_)}

    def _missing_shares(self) -> list[str]:
        t = self.params.t
        missing = [f"client {j}'s seed" for j in self.masked
                   if len(self._shares_of(j, "seed")) < t]
        return missing + [f"client {d}'s mask key" for d in self.dropped
                          if len(self._shares_of(d, "key")) < t]

    # ---- transitions -------------------------------------------------------------------

    def close_stage(self) -> None:
        """Move on to the next stage with whoever arrived."""
        if self.stage == Stage.MASKED:
            self.dropped = sorted(set(self.shares) - set(self.masked))
        order = list(Stage)
        self.stage = order[order.index(self.stage) + 1]

    def _require(self, stage: Stage | None, client_id: int, round_: int,
                 session: str | None = None) -> None:
        if round_ != self.round:
            raise RoundConflict(f"round {round_} is not the open round {self.round}")
        if session is not None and session != self.session:
            raise SessionSuperseded(f"session {session} of round {round_} was superseded by "
                                    f"{self.session}: advertise fresh keys")
        if stage is None:
            return
        if self.stage != stage:
            raise StageClosed(f"round {self.round} is at stage {self.stage.value}, not "
                              f"{stage.value}: client {client_id} takes no part in it")
        if stage != Stage.KEYS and client_id not in self.expected():
            raise StageClosed(f"client {client_id} did not finish the stage before "
                              f"{stage.value} of round {self.round}: it takes no part in it")
