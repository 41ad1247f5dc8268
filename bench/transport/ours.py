"""Our design: the real aggregator process (waitress, safetensors, streaming FedAvg) and
real clients speaking protocol v1 through ``client_component.transport``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.harness import AggregatorProcess, model_weights
from bench.transport.rounds import DesignResult, RoundPlan, client_loop, run_lockstep

TOKEN = "bench"


def measure(plan: RoundPlan, update_dtype: str = "float32",
            launcher: Sequence[str] = ()) -> DesignResult:
    server = AggregatorProcess("--num-clients", str(plan.num_clients),
                               "--rounds", str(plan.total_rounds), "--token", TOKEN,
                               "--shutdown-grace", "60", launcher=launcher)
    server.track_peak()
    try:
        from client_component.transport import AggregatorClient
        AggregatorClient(server.url, TOKEN).post_init(model_weights(plan.params), 0)
        times, wire_bytes = run_lockstep(plan, _client, server.url, update_dtype)
        if server.stop(timeout=120) != 0:
            raise RuntimeError("aggregator failed:\n" + "".join(server.lines[-20:]))
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    name = "ours" if update_dtype == "float32" else f"ours ({update_dtype} updates)"
    return DesignResult(name, times, wire_bytes, server.peak_mib)


def _client(cid: int, plan: RoundPlan, barrier, queue, url: str, update_dtype: str) -> None:
    from client_component.transport import AggregatorClient
    from contract import wire

    client = AggregatorClient(url, TOKEN)
    update = model_weights(plan.params, seed=cid + 1)
    # Payload bytes of one round: the update body out, the model body back.
    payload = (len(wire.encode(wire.tensors_from_list(update))) * np.dtype(update_dtype).itemsize
               // 4 + sum(w.nbytes for w in update))

    def one_round(round_: int) -> int:
        weights = [w.astype(update_dtype, copy=False) for w in update]
        status = client.post_update(weights, wire.UpdateMeta(cid, round_, 10 + cid))
        if status != "accepted":
            raise RuntimeError(f"client {cid} round {round_}: update {status}")
        client.fetch_model(round_)
        return payload

    client_loop(barrier, queue, plan.total_rounds, one_round)
    client.post_done(cid, {}, 1)
