"""Runs stay apart and nothing unsafe travels: two aggregators at once with their own tokens,
no pickle on the wire or on disk, and no token in what the aggregator shows."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import requests

from contract import wire
from contract.credentials import client_token
from server_component.app import create_app
from server_component.coordinator import RoundCoordinator
from server_component.serve import AggregatorServer
from tests.support.live_aggregator import Aggregator, small_weights
from tests.support.paths import REPO_ROOT


def aggregator_with(token: str) -> Aggregator:
    coordinator = RoundCoordinator(2, 1)
    server = AggregatorServer(create_app(coordinator, token=token), "127.0.0.1", 0, 6).start()
    agg = Aggregator(coordinator, server)
    agg.http.headers["Authorization"] = f"Bearer {token}"
    return agg


@pytest.mark.reliability(
    scenario="two runs at once; a client of run A calls run B",
    expected="401 for update, model and status; nothing reaches run B")
def test_two_runs_at_once_never_cross(observe):
    run_a, run_b = aggregator_with("token-of-run-a"), aggregator_with("token-of-run-b")
    try:
        assert run_a.init().status_code == 202 and run_b.init().status_code == 202
        # A client of run A that reaches run B's Service (wrong URL, stale DNS, a mix-up):
        stray = requests.Session()
        stray.headers["Authorization"] = "Bearer token-of-run-a"
        meta = wire.UpdateMeta(0, 1, 10).to_metadata()
        for call in (lambda: stray.post(f"{run_b.url}/v1/update", timeout=10,
                                        data=wire.encode(small_weights(0), meta)),
                     lambda: stray.get(f"{run_b.url}/v1/model", params={"round": 0},
                                       timeout=10),
                     lambda: stray.get(f"{run_b.url}/v1/status", timeout=10)):
            response = call()
            assert response.status_code == 401
            assert response.json()["error"] == "unauthorized"
            observe(f"{response.request.method} {response.request.path_url.split('?')[0]} "
                    f"-> {response.status_code}")
        assert run_a.update(0, 1).status_code == 202
        assert run_b.coordinator.status().reported == []
        assert run_b.coordinator.counters.snapshot().updates_accepted == 0
        assert run_a.coordinator.status().reported == [0]
        observe("run B accepted 0 updates; run A's own update accepted")
    finally:
        run_a.server.stop()
        run_b.server.stop()


@pytest.mark.reliability(scenario="pickle payload as init and as update",
                         expected="400 malformed; the aggregator's state unchanged")
def test_a_pickle_payload_is_refused_and_changes_nothing(observe):
    agg = aggregator_with("t")
    try:
        payload = pickle.dumps(small_weights())
        assert agg.post("/v1/init", payload).status_code == 400
        assert agg.init().status_code == 202
        before = agg.coordinator.status()
        response = agg.post("/v1/update", pickle.dumps({"client_id": 0, **small_weights()}))
        assert response.status_code == 400
        assert response.json()["error"] == "malformed"
        assert agg.coordinator.status() == before
        observe(f"update -> {response.status_code} {response.json()['error']}; state unchanged")
    finally:
        agg.server.stop()


@pytest.mark.reliability(scenario="secrets in what the aggregator shows",
                         expected="the token appears in no status page, metric or status")
def test_the_token_appears_in_no_page_metric_or_status(observe):
    token = "tok-" + "x7" * 16
    agg = aggregator_with(token)
    try:
        agg.init()
        agg.update(0, 1)
        shown = [agg.get("/").text, agg.get("/metrics").text, agg.get("/v1/status").text]
        assert all(token not in text for text in shown)
        observe(f"searched /, /metrics, /v1/status ({sum(map(len, shown))} bytes): "
                "token absent")
    finally:
        agg.server.stop()


@pytest.mark.reliability(scenario="pickle anywhere in the code",
                         expected="no np.load(allow_pickle=True), no pickle.load")
def test_nothing_is_ever_unpickled(observe):
    sources = [p for d in ("server_component", "client_component", "pipelines", "components")
               for p in (REPO_ROOT / d).rglob("*.py")]
    offenders = [str(p) for p in sources if "allow_pickle=True" in p.read_text()
                 or "pickle.load" in p.read_text()]
    assert offenders == []
    observe(f"{len(sources)} source files searched, 0 offenders")


def test_npz_data_is_loaded_without_pickle(tmp_path, monkeypatch):
    from client_component.datasets import load_dataset

    path = Path(tmp_path / "tiny.npz")
    rng = np.random.default_rng(0)
    np.savez(path, **{f"{s}_images": rng.integers(0, 255, (4, 8, 8), dtype=np.uint8)
                      for s in ("train", "val", "test")},
             **{f"{s}_labels": np.array([[0], [1], [0], [1]]) for s in ("train", "val", "test")})
    calls = []
    real_load = np.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("allow_pickle", False))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", recording_load)
    load_dataset("npz", str(path), seed=0)
    assert calls and not any(calls)


@pytest.mark.reliability(
    scenario="a client's own token used to post as another client (init, update, done)",
    expected="401 naming the token's owner; the round and the done list unchanged")
def test_a_client_token_speaks_only_for_its_client(observe):
    secret = "run-secret-for-credentials"
    agg = aggregator_with(secret)
    as_client_1 = requests.Session()
    as_client_1.headers["Authorization"] = f"Bearer {client_token(secret, 1)}"
    try:
        init = as_client_1.post(f"{agg.url}/v1/init", timeout=10,
                                data=wire.encode(small_weights(), {"client_id": "0"}))
        assert init.status_code == 401 and agg.coordinator.status().model_version == -1
        assert as_client_1.post(f"{agg.url}/v1/init", timeout=10, data=wire.encode(
            small_weights(), {"client_id": "1"})).status_code == 202
        forged = as_client_1.post(f"{agg.url}/v1/update", timeout=10, data=wire.encode(
            small_weights(0), wire.UpdateMeta(0, 1, 10).to_metadata()))
        done = as_client_1.post(f"{agg.url}/v1/done", json={"client_id": 0}, timeout=10)
        for response in (init, forged, done):
            assert response.status_code == 401, response.text
            assert "client 1's: it cannot act for client 0" in response.json()["detail"]
        status = agg.coordinator.status()
        assert status.reported == [] and status.done == []
        observe(f"init/update/done as client 0 -> {init.status_code}/{forged.status_code}/"
                f"{done.status_code}; reported {status.reported}, done {status.done}")
        own = as_client_1.post(f"{agg.url}/v1/update", timeout=10, data=wire.encode(
            small_weights(1), wire.UpdateMeta(1, 1, 10).to_metadata()))
        assert own.status_code == 202 and agg.coordinator.status().reported == [1]
        assert as_client_1.get(f"{agg.url}/v1/status", timeout=10).status_code == 200
        observe("its own update: 202; status readable with its token")
    finally:
        agg.server.stop()
