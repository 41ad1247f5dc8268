"""A real aggregator (waitress on loopback, in this process) and small model weights, for
tests that speak HTTP to it."""

from __future__ import annotations

import socket

import numpy as np
import requests

from contract import wire
from server_component.app import create_app
from server_component.coordinator import RoundCoordinator
from server_component.serve import AggregatorServer
from server_component.strategies import Strategy

TOKEN = "test-token"


def small_weights(offset: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "w000": np.full((3, 2), 1.0 + offset, np.float32),
        "w001": np.arange(2, dtype=np.float32) + offset,
    }


class Aggregator:
    """A live aggregator plus a session that speaks to it, for HTTP tests."""

    def __init__(self, coordinator: RoundCoordinator, server: AggregatorServer) -> None:
        self.coordinator, self.server, self.url = coordinator, server, server.url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {TOKEN}"

    def post(self, path: str, body: bytes, **kwargs) -> requests.Response:
        return self.http.post(self.url + path, data=body, timeout=10, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(self.url + path, timeout=10, **kwargs)

    def init(self, weights: dict[str, np.ndarray] | None = None, client_id: int = 0):
        body = wire.encode(weights or small_weights(), {wire.META_CLIENT_ID: str(client_id)})
        return self.post("/v1/init", body)

    def update(self, client_id: int, round_: int, num_examples: int = 10,
               weights: dict[str, np.ndarray] | None = None, metrics: dict | None = None):
        meta = wire.UpdateMeta(client_id, round_, num_examples, metrics or {})
        body = wire.encode(weights or small_weights(client_id), meta.to_metadata())
        return self.post("/v1/update", body)


def start_aggregator(num_clients: int, rounds: int, strategy: Strategy | None = None,
                     coordinator_kwargs: dict | None = None, **app_kwargs) -> Aggregator:
    coordinator = RoundCoordinator(num_clients, rounds, strategy=strategy,
                                   **(coordinator_kwargs or {}))
    app = create_app(coordinator, token=TOKEN, **app_kwargs)
    server = AggregatorServer(app, "127.0.0.1", 0, threads=num_clients + 4).start()
    return Aggregator(coordinator, server)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
