"""Clients speaking the real protocol (``federate`` over ``AggregatorClient``) to a live
aggregator, one thread each: the fan-out every multi-client test needs."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from client_component.federated_client import Learner, federate
from client_component.settings import ClientConfig
from client_component.transport import AggregatorClient


def start_clients(url: str, learners: Sequence[Learner], rounds: int, token: str,
                  results: dict, errors: dict, long_poll_s: float = 30.0,
                  **settings) -> list[threading.Thread]:
    """Start one client thread per learner (client id = its index); each puts its final
    metrics into ``results`` or its exception into ``errors``, by client id."""
    def work(cid: int) -> None:
        config = ClientConfig(server=url, client_id=cid, num_clients=len(learners),
                              rounds=rounds, token=token, connect_timeout_s=30, **settings)
        try:
            results[cid] = federate(learners[cid], AggregatorClient(url, token,
                                                                    long_poll_s=long_poll_s),
                                    config)
        except Exception as exc:  # the test asserts on errors
            errors[cid] = exc

    threads = [threading.Thread(target=work, args=(cid,), daemon=True)
               for cid in range(len(learners))]
    for thread in threads:
        thread.start()
    return threads


def federate_all(url: str, learners: Sequence[Learner], rounds: int, token: str,
                 timeout: float = 120.0, **settings) -> dict:
    """Every learner takes part in every round; their final metrics by client id (the
    first client error is raised)."""
    results, errors = {}, {}
    for thread in start_clients(url, learners, rounds, token, results, errors, **settings):
        thread.join(timeout=timeout)
    if errors:
        raise next(iter(errors.values()))
    return results
