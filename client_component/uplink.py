"""The two ways a client's update leaves it: ``PlainUplink`` posts it (``/v1/update``);
``SecureUplink`` turns it into a quantised, masked vector and takes it through the four
secure-aggregation stages (``Participant``), again with fresh keys whenever the aggregator
restarts the round's session. The round protocol (``federated_client``) uses either the same
way: ``send`` the round's update, and ask ``lost`` whether the aggregator still needs it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import requests

from client_component.distributed_dp import clipped_noised
from client_component.secure_participant import (
    Participant,
    SessionMismatch,
    TooFewHolders,
    UnmaskLedger,
)
from client_component.settings import ClientConfig
from client_component.transport import AggregatorClient, AggregatorError
from contract import privacy, wire
from contract.messages import Phase, Status
from contract.secagg.messages import Roster, SharesIn, UnmaskRequest
from contract.secagg.params import SecAggParams
from contract.secagg.quantize import Quantizer
from contract.settings import values_of

log = logging.getLogger("client_component")
MAX_SESSIONS_PER_ROUND = 20


class SecureAggregationOff(RuntimeError):
    """This client runs secure aggregation and the aggregator does not (or the reverse)."""


@dataclass
class Contribution:
    """One round's masked-to-be vector, kept until the round's model is out (a restarted
    aggregator asks for it again, under fresh keys)."""

    round: int
    vector: np.ndarray  # quantised update, weight, metrics (uint32)
    metric_names: list[str]
    sessions: set[str] = field(default_factory=set)  # sessions it was offered in
    privacy: dict[str, float] = field(default_factory=dict)  # dp=example: the site's ledger


class SecureUplink:
    """Sends a client's updates by secure aggregation."""

    def __init__(self, aggregator: AggregatorClient, config: ClientConfig) -> None:
        self.aggregator, self.client_id = aggregator, config.client_id
        self.params: SecAggParams = config.secagg_params
        self.quantizer = Quantizer(self.params.clip, self.params.max_examples,
                                   self.params.num_clients)
        self.ledger = UnmaskLedger(config.client_id)
        # dp=client: clip to this L2 norm and add a share of the noise (distributed_dp)
        self.client_dp = ((config.dp_clip_norm, privacy.client_noise(values_of(config)))
                          if config.dp == "client" else None)

    def contribution(self, round_: int, served: dict[str, np.ndarray],
                     weights: list[np.ndarray], num_examples: int,
                     metrics: dict[str, float], privacy: dict[str, float] | None = None
                     ) -> Contribution:
        """The round's vector: new weights minus the served model's, clipped and quantised
        (with dp=client: clipped in L2 norm, noised and weighted 1 first)."""
        model, _ = wire.split_control(served)
        update = [np.asarray(w, np.float64) - np.asarray(s, np.float64)
                  for w, s in zip(weights, wire.tensors_to_list(model), strict=True)]
        if self.client_dp is not None:
            clip_norm, noise = self.client_dp
            update, norm = clipped_noised(update, clip_norm, noise, self.params.t)
            num_examples = 1
            log.info("client=%d round=%d dp=client update_norm=%.4g clip_norm=%g", self.client_id,
                     round_, norm, clip_norm)
        names = sorted(metrics)
        vector, clipped = self.quantizer.encode(update, num_examples,
                                                [metrics[n] for n in names])
        if clipped:
            log.warning("client=%d round=%d secagg clipped %d of %d coordinates to +-%g",
                        self.client_id, round_, clipped, vector.size - 1 - len(names),
                        self.params.clip)
        return Contribution(round_, vector, names, privacy=dict(privacy or {}))

    def send(self, contribution: Contribution) -> None:
        """Take part in the round's secure aggregation until a session completes, or the
        aggregator closes a stage without this client (it then waits for the model). A lost
        connection resumes the same session (every step is idempotent); a new session (the
        aggregator restarted) starts again with a new ``Participant``: fresh keys."""
        participant = None
        for _ in range(MAX_SESSIONS_PER_ROUND):
            try:
                participant = participant or Participant(self.client_id, self.params,
                                                         contribution.round)
                self._exchange(contribution, participant)
                return
            except requests.RequestException as exc:
                log.warning("client=%d round=%d secagg connection lost (%s): resuming",
                            self.client_id, contribution.round, exc)
                self.aggregator.wait_ready()
            except TooFewHolders as exc:
                log.warning("client=%d round=%d sits out secure aggregation: %s",
                            self.client_id, contribution.round, exc)
                return
            except SessionMismatch as exc:
                log.warning("client=%d round=%d secagg %s: fresh keys", self.client_id,
                            contribution.round, exc)
                participant = None
            except AggregatorError as exc:
                if exc.code == "stage_closed":
                    log.warning("client=%d round=%d left out of secure aggregation: %s",
                                self.client_id, contribution.round, exc.detail)
                    return
                if exc.status == 404:
                    raise self._off(exc) from exc
                if exc.code != "session_superseded":
                    raise
                log.warning("client=%d round=%d secagg session superseded: fresh keys",
                            self.client_id, contribution.round)
                participant = None
        raise AggregatorError(409, "session_superseded", "the round's secure aggregation "
                              f"restarted {MAX_SESSIONS_PER_ROUND} times", "secagg")

    @staticmethod
    def _off(exc: AggregatorError) -> Exception:
        return SecureAggregationOff("this client runs secure_aggregation=secagg but the "
                                    "aggregator has no /v1/secagg endpoints: give both the "
                                    f"same setting ({exc})")

    def lost(self, status: Status, contribution: Contribution) -> bool:
        """Whether the aggregator runs the round again in a session this client never joined
        (it restarted): the contribution must be sent again."""
        if status.secure_aggregation != "secagg":
            raise SecureAggregationOff("this client runs secure_aggregation=secagg but the "
                                       "aggregator does not: give both the same setting")
        return (status.phase == Phase.WAITING and status.round == contribution.round
                and bool(status.secagg_session)
                and status.secagg_session not in contribution.sessions)

    def _exchange(self, contribution: Contribution, participant: Participant) -> None:
        round_, me = contribution.round, self.client_id
        # A resumed participant names its session: a restarted aggregator refuses keys that
        # were already advertised to the session it lost (409 session_superseded).
        reply = self.aggregator.post_json("/v1/secagg/keys", participant.advert().to_json())
        session = str(reply.json().get("session", ""))
        contribution.sessions.add(session)
        participant.join(session)  # a participant's keys serve one session only
        roster = Roster.from_json(self._poll("/v1/secagg/roster", round_).json())
        self.aggregator.post_body("/v1/secagg/shares", participant.share(roster).encode())
        inbox = SharesIn.decode(self._poll("/v1/secagg/shares", round_, client_id=me).content)
        masked = participant.masked(inbox, contribution.vector, contribution.metric_names,
                                    contribution.privacy)
        self.aggregator.post_body("/v1/secagg/masked", masked.encode())
        request = UnmaskRequest.from_json(self._poll("/v1/secagg/unmask", round_).json())
        self.ledger.check(request)
        answer = participant.unmask(request)
        self.ledger.record(request)
        self.aggregator.post_body("/v1/secagg/unmask", answer.encode())
        log.info("client=%d round=%d secagg done session=%s survivors=%s dropped=%s", me,
                 round_, participant.session, request.survivors, request.dropped)

    def _poll(self, path: str, round_: int, **params: object):
        return self.aggregator.long_poll(path, {"round": round_, **params})


@dataclass(frozen=True)
class PostedUpdate:
    """The last plain update sent, kept to re-send if a restarted aggregator lost it."""

    weights: list[np.ndarray]
    meta: wire.UpdateMeta
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # control variate changes

    @property
    def round(self) -> int:
        """The round this update is for."""
        return self.meta.round


class PlainUplink:
    """Sends a client's updates in the clear (``POST /v1/update``)."""

    def __init__(self, aggregator: AggregatorClient, client_id: int) -> None:
        self.aggregator, self.client_id = aggregator, client_id

    def send(self, update: PostedUpdate) -> None:
        """Post the update (a duplicate of one the aggregator has is fine)."""
        self.aggregator.post_update(update.weights, update.meta, update.extra)

    def lost(self, status: Status, update: PostedUpdate) -> bool:
        """Whether the aggregator waits on the update's round without it (a restart)."""
        return (status.phase == Phase.WAITING and status.round == update.round
                and self.client_id not in status.reported)
