"""Our design with secure aggregation: the same aggregator process and client processes as
``ours``, every update going through the four SecAgg+ stages (``client_component.uplink``):
key agreement, sealed shares, masked uint32 vectors, unmasking. Timed the same way, so the
two are comparable round for round."""

from __future__ import annotations

import numpy as np

from bench.harness import AggregatorProcess, model_weights
from bench.transport.rounds import DesignResult, RoundPlan, client_loop, run_lockstep

TOKEN = "bench"


def measure(plan: RoundPlan) -> DesignResult:
    """Per-round times and the aggregator's peak RSS with ``secure_aggregation=secagg``."""
    server = AggregatorProcess("--num-clients", str(plan.num_clients),
                               "--rounds", str(plan.total_rounds), "--token", TOKEN,
                               "--shutdown-grace", "60", "--secure-aggregation", "secagg")
    server.track_peak()
    try:
        from client_component.transport import AggregatorClient
        AggregatorClient(server.url, TOKEN).post_init(model_weights(plan.params), 0)
        times, wire_bytes = run_lockstep(plan, _client, server.url)
        if server.stop(timeout=120) != 0:
            raise RuntimeError("aggregator failed:\n" + "".join(server.lines[-20:]))
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    return DesignResult("ours, secure aggregation (SecAgg+)", times, wire_bytes,
                        server.peak_mib)


def _client(cid: int, plan: RoundPlan, barrier, queue, url: str) -> None:
    from client_component.settings import ClientConfig
    from client_component.transport import AggregatorClient
    from client_component.uplink import SecureUplink
    from contract import wire

    client = AggregatorClient(url, TOKEN)
    config = ClientConfig(server=url, client_id=cid, num_clients=plan.num_clients,
                          rounds=plan.total_rounds, secure_aggregation="secagg")
    uplink = SecureUplink(client, config)
    rng = np.random.default_rng(cid + 1)
    served = client.fetch_tensors(0)
    step = [rng.normal(0, 1e-3, a.shape).astype(np.float32)
            for a in wire.tensors_to_list(served)]

    def one_round(round_: int) -> int:
        nonlocal served
        weights = [s + d for s, d in zip(wire.tensors_to_list(served), step, strict=True)]
        contribution = uplink.contribution(round_, served, weights, 10 + cid, {})
        uplink.send(contribution)
        served = client.fetch_tensors(round_)
        # Payload of a round: the masked vector out, the model back (shares and keys are
        # O(N) small messages).
        return contribution.vector.nbytes + sum(a.nbytes for a in served.values())

    client_loop(barrier, queue, plan.total_rounds, one_round)
    client.post_done(cid, {}, 1)
