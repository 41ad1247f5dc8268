"""The real client (Keras training, HTTP transport) against a real aggregator."""

import threading

import numpy as np
import pytest

from client_component.run import run_client
from client_component.settings import ClientConfig
from client_component.transport import AggregatorClient, AggregatorError, AggregatorUnreachable
from contract import wire
from tests.support.live_aggregator import TOKEN, free_port, small_weights, start_aggregator


def test_three_clients_train_and_the_global_model_improves():
    agg = start_aggregator(num_clients=3, rounds=3)
    try:
        configs = [ClientConfig(server=agg.url, client_id=cid, num_clients=3, rounds=3,
                                learning_rate=0.01, token=TOKEN, seed=1)
                   for cid in range(3)]
        results, errors = {}, []

        def work(config):
            try:
                results[config.client_id] = run_client(config)
            except Exception as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(c,)) for c in configs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors
        history = agg.coordinator.history
        assert [r.round for r in history] == [1, 2, 3]
        assert history[-1].metrics["val_loss"] < history[0].metrics["val_loss"]
        final = agg.coordinator.final_metrics()
        assert final["test_accuracy"] > 0.85 and final["test_auc"] > 0.9
        assert agg.coordinator.wait_until_complete(timeout=5)
    finally:
        agg.server.stop()


def test_client_waits_for_a_late_aggregator_with_backoff():
    port = free_port()
    client = AggregatorClient(f"http://127.0.0.1:{port}", TOKEN)
    holder = {}
    starter = threading.Timer(1.5, lambda: holder.update(agg=_start_on(port)))
    starter.start()
    try:
        client.wait_ready(max_wait_s=30)
    finally:
        starter.join()
        holder["agg"].server.stop()


def _start_on(port):
    from server_component.app import create_app
    from server_component.coordinator import RoundCoordinator
    from server_component.serve import AggregatorServer
    from tests.support.live_aggregator import Aggregator

    coordinator = RoundCoordinator(1, 1)
    server = AggregatorServer(create_app(coordinator, token=TOKEN), "127.0.0.1", port, 4)
    return Aggregator(coordinator, server.start())


def test_unreachable_aggregator_gives_up_within_the_bound():
    client = AggregatorClient(f"http://127.0.0.1:{free_port()}", TOKEN)
    with pytest.raises(AggregatorUnreachable, match="not reachable within 1 s"):
        client.wait_ready(max_wait_s=1)


def test_refusals_carry_status_code_and_detail():
    agg = start_aggregator(num_clients=1, rounds=1)
    try:
        client = AggregatorClient(agg.url, TOKEN)
        client.post_init(wire.tensors_to_list(small_weights()), wire.InitMeta(0))
        with pytest.raises(AggregatorError) as info:
            client.post_update([np.ones((3, 2), np.float32)], wire.UpdateMeta(0, 1, 5))
        assert info.value.status == 422 and info.value.code == "incompatible_update"
        with pytest.raises(AggregatorError) as info:
            AggregatorClient(agg.url, "wrong").fetch_model(0)
        assert info.value.status == 401
    finally:
        agg.server.stop()
