"""The coordinator's secure-aggregation stages (``RoundCoordinator`` mixes this in): each call
takes the coordinator's lock, hands the message to the open round's ``SecureRound``, and
closes a stage once everyone it waits for arrived, or at the stage's deadline with a quorum of
``max(min_clients, t)``; with fewer the run fails as a plain round does (410 ``run_failed``).

Each stage after the first has its own deadline, ``round_timeout`` after it opened. A
restarted aggregator opens the round again with a new session (fresh keys on every client):
messages of the old session get 409 ``session_superseded``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from contract.errors import RoundConflict
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
from contract.secagg.quantize import Quantizer
from server_component.checkpoint import RoundRecord
from server_component.counters import Counters
from server_component.rounds import OpenRound
from server_component.secure_round import CannotUnmask, SecureRound, Stage, masked_digest
from server_component.strategies import RunningWeightedSum

log = logging.getLogger(__name__)
T = TypeVar("T")


class SecureStagesMixin:
    """Secure aggregation for ``RoundCoordinator`` (which provides the attributes below)."""

    secure: SecAggParams | None
    _cond: threading.Condition
    _open: OpenRound | None
    min_clients: int
    num_clients: int
    round_timeout: float | None
    counters: Counters

    # ---- what the endpoints call -------------------------------------------------------

    def secagg_keys(self, advert: KeyAdvert) -> tuple[str, bool]:
        """Stage 1: (the session, whether the keys are new)."""
        self._check_client(advert.client_id)
        with self._cond:
            secure = self._secure_round(advert.round)
            fresh = secure.add_keys(advert)
            if fresh:
                log.info("event=secagg_keys round=%d client=%d keys=%d/%d", advert.round,
                         advert.client_id, len(secure.keys), self.num_clients)
            self._advance(secure)
            return secure.session, fresh

    def secagg_roster(self, round_: int, timeout: float) -> Roster | None:
        """The key stage's result once it closed (None after ``timeout`` s)."""
        return self._wait_past(round_, Stage.KEYS, timeout, SecureRound.roster)

    def secagg_shares(self, message: SharesOut) -> bool:
        """Stage 2: keep a client's sealed shares."""
        self._check_client(message.client_id)
        with self._cond:
            secure = self._secure_round(message.round)
            fresh = secure.add_shares(message)
            self._advance(secure)
            return fresh

    def secagg_inbox(self, round_: int, client_id: int, timeout: float) -> SharesIn | None:
        """The shares sealed for ``client_id`` once the share stage closed."""
        self._check_client(client_id)
        return self._wait_past(round_, Stage.SHARES, timeout,
                               lambda secure: secure.inbox(client_id))

    def secagg_masked(self, message: MaskedInput) -> bool:
        """Stage 3: fold a masked input into the round's uint32 sum."""
        self._check_client(message.client_id)
        digest = masked_digest(message)  # a model-sized hash, outside the lock
        with self._cond:
            secure = self._secure_round(message.round)
            fresh = secure.add_masked(message, digest)
            if fresh:
                self.privacy.note_update(message.client_id, message.privacy)
                self.counters.update_accepted(message.vector.nbytes)
                log.info("event=masked_input round=%d client=%d masked=%d/%d", message.round,
                         message.client_id, len(secure.masked), len(secure.shares))
            self._advance(secure)
            return fresh

    def secagg_unmask_request(self, round_: int, timeout: float) -> UnmaskRequest | None:
        """Who survived and who dropped, once the masked stage closed."""
        return self._wait_past(round_, Stage.MASKED, timeout, SecureRound.unmask_request)

    def secagg_unmask(self, reply: UnmaskReply) -> bool:
        """Stage 4: keep a survivor's shares; the round closes once all survivors answered."""
        self._check_client(reply.client_id)
        with self._cond:
            secure = self._secure_round(reply.round)
            fresh = secure.add_reply(reply)
            self._advance(secure)
            return fresh

    # ---- internals (lock held) ---------------------------------------------------------

    def _new_secure_round(self, number: int) -> SecureRound | None:
        if self.secure is None or self._spec is None:
            return None
        secure = SecureRound(self.secure, number, model_words=self._spec.num_parameters + 1)
        log.info("event=secagg_session round=%d session=%s threshold=%d holders=%d", number,
                 secure.session, self.secure.t, self.secure.share_count)
        return secure

    def _secure_round(self, round_: int) -> SecureRound:
        open_round = self._require_open_round(round_)
        if open_round.secure is None:
            raise RoundConflict("this run does not use secure aggregation")
        return open_round.secure

    def _wait_past(self, round_: int, stage: Stage, timeout: float,
                   answer: Callable[[SecureRound], T]) -> T | None:
        """Long poll: ``answer`` once the round's secure aggregation is past ``stage``."""
        order = list(Stage)
        with self._cond:
            secure = self._secure_round(round_)
            self._cond.wait_for(lambda: order.index(secure.stage) > order.index(stage)
                                or self._failure or self._open is None
                                or self._open.secure is not secure, timeout=timeout)
            self._raise_if_failed()
            if self._open is None or self._open.secure is not secure:
                raise RoundConflict(f"round {round_} closed or was restarted while waiting")
            if order.index(secure.stage) <= order.index(stage):
                return None
            return answer(secure)

    def _advance(self, secure: SecureRound) -> None:
        """Close every stage whose participants all arrived."""
        while secure.stage != Stage.DONE and secure.everyone_arrived():
            if secure.stage == Stage.UNMASK:
                self._finish_secure(self._open)
                return
            self._close_stage(secure)

    def _close_stage(self, secure: SecureRound) -> None:
        closed = secure.stage.value
        secure.close_stage()
        log.info("event=secagg_stage round=%d closed=%s participants=%s", secure.round, closed,
                 secure.expected())
        if self.round_timeout:
            self._open.deadline = self._clock() + self.round_timeout
        self._cond.notify_all()

    def _secure_deadline(self, open_round: OpenRound) -> None:
        secure = open_round.secure
        arrived, expected = secure.arrived(), secure.expected()
        missing = [c for c in expected if c not in arrived]
        quorum = self.secure.quorum(self.min_clients)
        if secure.stage == Stage.UNMASK and secure.can_unmask():
            log.warning("event=deadline round=%d stage=unmask answered=%s missing=%s",
                        secure.round, arrived, missing)
            self._finish_secure(open_round)
            return
        if secure.stage != Stage.UNMASK and len(arrived) >= quorum:
            log.warning("event=deadline round=%d stage=%s closing_with=%s missing=%s",
                        secure.round, secure.stage.value, arrived, missing)
            self._close_stage(secure)
            self._advance(secure)
            return
        self._fail(f"round {secure.round} reached its {self.round_timeout:g} s deadline at "
                   f"secure-aggregation stage {secure.stage.value} with {len(arrived)} of "
                   f"{len(expected)} clients (quorum max(min_clients, t) = {quorum}); missing "
                   f"client ids {missing}")

    def _finish_secure(self, open_round: OpenRound) -> None:
        secure = open_round.secure
        try:
            total = secure.unmasked_sum()
        except CannotUnmask as exc:
            self._fail(f"round {secure.round}: {exc}")
            return
        quantizer = Quantizer(self.secure.clip, self.secure.max_examples, self.num_clients)
        names = secure.metric_names or []
        update_sum, weight, metric_sums = quantizer.decode(total, len(names))
        # dp=client: each client weighs 1 and the sum is divided by every client asked (a
        # fixed denominator, as the central mechanism's); its noise came from the clients.
        denominator = self.num_clients if self.privacy.mode == "client" else weight
        open_round.accumulator = _averageable(self._global, update_sum, denominator)
        survivors = sorted(secure.masked)
        record = RoundRecord(
            round=secure.round, client_ids=survivors, num_examples=weight,
            metrics={n: float(v) / weight for n, v in zip(names, metric_sums, strict=True)},
            duration_s=self._clock() - open_round.started,
            missing=[c for c in range(self.num_clients) if c not in survivors])
        log.info("event=secagg_unmasked round=%d survivors=%s dropped=%s error_bound=%.3g",
                 secure.round, survivors, secure.dropped,
                 quantizer.error_bound(len(survivors), weight))
        self._close_round(open_round, record)


def _averageable(current: dict[str, np.ndarray], update_sum: np.ndarray, weight: int
                 ) -> RunningWeightedSum:
    """The round as the strategies read it: sums of n_i x (served + d_i) over W examples, so
    that their ``average`` is served + sum(n_i d_i) / W."""
    sums, start = {}, 0
    for name in sorted(current):
        served = current[name]
        part = update_sum[start:start + served.size].reshape(served.shape)
        sums[name] = part + served.astype(np.float64) * weight
        start += served.size
    return RunningWeightedSum.from_sums(sums, {n: a.dtype for n, a in current.items()}, weight)

