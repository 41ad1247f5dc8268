"""One secure-aggregation round run in process: ``Participant`` objects (the clients' code)
and a ``SecureRound`` (the aggregator's), messages passed as the wire encodes them, with
clients dropping out before any stage. No HTTP: the protocol's arithmetic and its rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from client_component.secure_participant import Participant
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
from server_component.secure_round import SecureRound, Stage

STAGES = ("keys", "shares", "masked", "unmask")


@dataclass
class Recording:
    """Everything the aggregator received in the round (bodies as sent)."""

    adverts: list[dict] = field(default_factory=list)
    shares: list[bytes] = field(default_factory=list)
    masked: dict[int, np.ndarray] = field(default_factory=dict)
    replies: list[bytes] = field(default_factory=list)


@dataclass
class Outcome:
    """The unmasked sum decoded, and what the aggregator saw."""

    update_sum: np.ndarray
    total_weight: int
    metric_sums: np.ndarray
    survivors: list[int]
    dropped: list[int]
    recording: Recording
    server: SecureRound
    clients: dict[int, Participant]
    quantizer: Quantizer


def run_round(params: SecAggParams, updates: Sequence[np.ndarray], weights: Sequence[int],
              metrics: Sequence[Sequence[float]] = (), drop: Mapping[str, set[int]] = {},
              round_: int = 1) -> Outcome:
    """Secure-aggregate flat float ``updates``; ``drop[stage]``: clients gone before it."""
    quantizer = Quantizer(params.clip, params.max_examples, params.num_clients)
    n = params.num_clients
    metrics = metrics or [[] for _ in range(n)]
    names = [f"m{i}" for i in range(len(metrics[0]))]
    server = SecureRound(params, round_, model_words=updates[0].size + 1)
    record = Recording()
    clients = {c: Participant(c, params, round_) for c in range(n)}
    gone: set[int] = set()

    def alive(stage: str) -> list[int]:
        gone.update(drop.get(stage, set()))
        return [c for c in range(n) if c not in gone]

    for c in alive("keys"):
        body = clients[c].advert().to_json()
        record.adverts.append(body)
        server.add_keys(KeyAdvert.from_json(body))
        clients[c].join(server.session)
    server.close_stage()
    roster = Roster.from_json(server.roster().to_json())
    for c in alive("shares"):
        if c in roster.keys:
            body = bytes(clients[c].share(roster).encode())
            record.shares.append(body)
            server.add_shares(SharesOut.decode(body))
    server.close_stage()
    for c in alive("masked"):
        if c in server.shares:
            inbox = SharesIn.decode(server.inbox(c).encode())
            vector, _ = quantizer.encode([updates[c]], weights[c], metrics[c])
            body = bytes(clients[c].masked(inbox, vector, names).encode())
            record.masked[c] = MaskedInput.decode(body).vector.copy()
            server.add_masked(MaskedInput.decode(body))
    server.close_stage()
    request = UnmaskRequest.from_json(server.unmask_request().to_json())
    for c in alive("unmask"):
        if c in request.survivors:
            body = bytes(clients[c].unmask(request).encode())
            record.replies.append(body)
            server.add_reply(UnmaskReply.decode(body))
    assert server.stage == Stage.UNMASK
    total = server.unmasked_sum()
    update_sum, weight, metric_sums = quantizer.decode(total, len(names))
    return Outcome(update_sum, weight, metric_sums, request.survivors, request.dropped,
                   record, server, clients, quantizer)
