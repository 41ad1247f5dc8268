"""The client's side of a federated run: init, then per round fetch → train → evaluate → post."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from client_component.data import load_dataset
from client_component.evaluation import evaluate
from client_component.local_data import client_shard
from client_component.model import build_model
from client_component.transport import AggregatorClient
from server_component import wire

log = logging.getLogger("client_component")


@dataclass(frozen=True)
class ClientConfig:
    server: str
    client_id: int
    num_clients: int
    rounds: int
    dataset: str = "breast_cancer"
    data_uri: str = ""
    partition: str = "iid"
    seed: int = 0
    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-3
    token: str | None = None
    connect_timeout_s: float = 600.0


def run_client(config: ClientConfig) -> dict[str, float]:
    """Take part in every round; returns the final global model's metrics on the test split."""
    data = client_shard(
        load_dataset(config.dataset, config.data_uri, config.seed),
        config.client_id, config.num_clients, config.partition, config.seed,
    )
    log.info("client=%d train=%d val=%d test=%d", config.client_id, len(data.y_train),
             len(data.y_val), len(data.y_test))
    model = build_model(data.input_shape, data.num_classes, data.kind,
                        config.learning_rate, seed=config.seed)
    aggregator = AggregatorClient(config.server, config.token)
    aggregator.wait_ready(config.connect_timeout_s)
    aggregator.post_init(model.get_weights(), config.client_id)
    started = time.monotonic()
    for round_ in range(1, config.rounds + 1):
        model.set_weights(aggregator.fetch_model(round_ - 1))
        model.fit(data.x_train, data.y_train, epochs=config.local_epochs,
                  batch_size=config.batch_size, verbose=0, shuffle=True)
        metrics = evaluate(model, data.x_val, data.y_val, data.num_classes)
        meta = wire.UpdateMeta(config.client_id, round_, len(data.y_train),
                               {f"val_{k}": v for k, v in metrics.items()})
        aggregator.post_update(model.get_weights(), meta)
        log.info("client=%d round=%d/%d %s elapsed_s=%.1f", config.client_id, round_,
                 config.rounds, _fmt(metrics), time.monotonic() - started)
    model.set_weights(aggregator.fetch_model(config.rounds))
    final = evaluate(model, data.x_test, data.y_test, data.num_classes)
    aggregator.post_done(config.client_id, {f"test_{k}": v for k, v in final.items()},
                         len(data.y_test))
    log.info("client=%d final test %s", config.client_id, _fmt(final))
    return final


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
