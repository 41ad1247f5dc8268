"""The aggregator over real HTTP on loopback: every status code, and state left untouched."""

import threading

import numpy as np
import pytest
import requests

from contract import wire
from tests.support.live_aggregator import small_weights, start_aggregator


def status(agg):
    return agg.get("/v1/status").json()


def test_healthz_needs_no_token_but_v1_does(aggregator):
    assert requests.get(aggregator.url + "/healthz", timeout=5).json() == {"status": "ok"}
    response = requests.get(aggregator.url + "/v1/status", timeout=5)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    wrong = requests.get(aggregator.url + "/v1/status", timeout=5,
                         headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_status_before_init(aggregator):
    assert status(aggregator) == {
        "round": 0, "rounds": 2, "phase": "waiting", "model_version": -1, "num_clients": 2,
        "min_clients": 2, "strategy": "fedavg", "reported": [], "done": [],
        "last_metrics": {}, "error": None, "secure_aggregation": "off", "secagg_session": "",
        "secagg_stage": "", "final_version": 2, "dp": "off", "epsilon": 0.0, "dp_steps": {},
        "stopped": "", "selected": [], "fraction_fit": 1.0,
    }


def test_first_init_wins_and_later_inits_are_ignored(aggregator):
    assert aggregator.init(small_weights(0.0), client_id=1).status_code == 202
    assert aggregator.init(small_weights(5.0), client_id=0).json() == {"adopted": False}
    model = wire.decode(aggregator.get("/v1/model", params={"round": 0}).content)
    np.testing.assert_array_equal(model.tensors["w000"], small_weights(0.0)["w000"])
    assert model.metadata == {"round": "0"}


def test_a_full_round_publishes_the_weighted_average(aggregator):
    aggregator.init()
    assert aggregator.update(0, 1, num_examples=1, metrics={"val_accuracy": 0.5}).status_code == 202
    assert status(aggregator)["reported"] == [0]
    assert aggregator.get("/v1/model", params={"round": 1}).status_code == 204
    assert aggregator.update(1, 1, num_examples=3, metrics={"val_accuracy": 0.9}).status_code == 202
    model = wire.decode(aggregator.get("/v1/model", params={"round": 1}).content)
    # offsets 0 and 1 weighted 1:3 -> +0.75
    np.testing.assert_allclose(model.tensors["w000"], np.full((3, 2), 1.75))
    assert model.metadata["round"] == "1"
    st = status(aggregator)
    assert st["round"] == 2 and st["reported"] == []
    assert st["last_metrics"] == pytest.approx({"val_accuracy": 0.8})


def test_long_poll_returns_as_soon_as_the_round_closes(aggregator):
    aggregator.init()
    aggregator.update(0, 1)
    result = {}

    def poll():
        result["response"] = aggregator.get("/v1/model", params={"round": 1, "wait": 20})

    poller = threading.Thread(target=poll)
    poller.start()
    aggregator.update(1, 1)
    poller.join(timeout=10)
    assert not poller.is_alive()
    assert result["response"].status_code == 200


def test_identical_resend_is_idempotent_and_a_different_one_conflicts(aggregator):
    aggregator.init()
    assert aggregator.update(0, 1).status_code == 202
    again = aggregator.update(0, 1)
    assert again.status_code == 200 and again.json() == {"status": "duplicate"}
    other = aggregator.update(0, 1, num_examples=99)
    assert other.status_code == 409 and other.json()["error"] == "round_conflict"
    assert status(aggregator)["reported"] == [0]


@pytest.mark.parametrize("round_", [0, 2, 7])
def test_wrong_round_is_409_and_changes_nothing(aggregator, round_):
    aggregator.init()
    before = status(aggregator)
    response = aggregator.update(0, round_)
    assert response.status_code == 409
    assert set(response.json()) == {"error", "detail"}
    assert status(aggregator) == before


def test_update_before_init_is_409(aggregator):
    assert aggregator.update(0, 1).status_code == 409


@pytest.mark.parametrize("body", [b"", b"not safetensors at all", b"\xff" * 64])
def test_malformed_bodies_are_400_and_change_nothing(aggregator, body):
    aggregator.init()
    before = status(aggregator)
    response = aggregator.post("/v1/update", body)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed"
    assert status(aggregator) == before


def test_unknown_client_id_is_refused(aggregator):
    aggregator.init()
    response = aggregator.update(5, 1)
    assert response.status_code == 400
    assert "unknown client id 5" in response.json()["detail"]


@pytest.mark.parametrize("weights", [
    {"w000": np.ones((3, 2), np.float32)},  # a tensor missing
    {"w000": np.ones((2, 3), np.float32), "w001": np.ones(2, np.float32)},  # shape
    {"w000": np.ones((3, 2), np.float64), "w001": np.ones(2, np.float32)},  # dtype
    {"w000": np.full((3, 2), np.nan, np.float32), "w001": np.ones(2, np.float32)},  # NaN
    {"w000": np.full((3, 2), np.inf, np.float32), "w001": np.ones(2, np.float32)},  # Inf
])
def test_incompatible_tensors_are_422_and_change_nothing(aggregator, weights):
    aggregator.init()
    before = status(aggregator)
    response = aggregator.update(0, 1, weights=weights)
    assert response.status_code == 422
    assert response.json()["error"] == "incompatible_update"
    assert status(aggregator) == before


def test_bad_example_count_is_422(aggregator):
    aggregator.init()
    meta = {"client_id": "0", "round": "1", "num_examples": "0"}
    response = aggregator.post("/v1/update", wire.encode(small_weights(), meta))
    assert response.status_code == 422


def test_oversized_body_is_413_before_reading_it(aggregator):
    aggregator.init()
    big = {"w000": np.ones((3, 2), np.float32), "w001": np.ones(100_000, np.float32)}
    response = aggregator.update(0, 1, weights=big)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_model_query_validation(aggregator):
    assert aggregator.get("/v1/model").status_code == 400
    assert aggregator.get("/v1/model", params={"round": "x"}).status_code == 400
    assert aggregator.get("/v1/model", params={"round": 0, "wait": "nan"}).status_code == 400
    assert aggregator.get("/v1/model", params={"round": 3}).status_code == 410


def test_after_the_last_round_updates_get_410_and_done_completes(aggregator):
    aggregator.init()
    for round_ in (1, 2):
        for cid in (0, 1):
            assert aggregator.update(cid, round_).status_code == 202
    assert status(aggregator)["phase"] == "published"
    assert aggregator.update(0, 2).status_code == 410
    assert aggregator.get("/v1/model", params={"round": 2}).status_code == 200
    assert aggregator.get("/v1/model", params={"round": 1}).status_code == 409
    for cid in (0, 1):
        response = aggregator.http.post(aggregator.url + "/v1/done", timeout=5, json={
            "client_id": cid, "metrics": {"test_accuracy": 0.5 + cid / 4}, "num_examples": 2})
        assert response.status_code == 200
    assert status(aggregator)["phase"] == "done"
    assert aggregator.coordinator.wait_until_complete(timeout=1)
    assert aggregator.coordinator.final_metrics() == pytest.approx({"test_accuracy": 0.625})


@pytest.mark.parametrize("payload", [None, {}, {"client_id": "0"}, {"client_id": True},
                                     {"client_id": 9}, {"client_id": 0, "metrics": [1]}])
def test_bad_done_bodies_are_400(aggregator, payload):
    response = aggregator.http.post(aggregator.url + "/v1/done", json=payload, timeout=5)
    assert response.status_code == 400
    assert status(aggregator)["done"] == []


def test_done_counts_are_summed_and_mismatched_or_bad_ones_refused(aggregator):
    def done(cid, counts):
        return aggregator.http.post(aggregator.url + "/v1/done", timeout=5, json={
            "client_id": cid, "metrics": {}, "num_examples": 8, "counts": counts})

    two_by_two = {"confusion_matrix": [[3, 1], [0, 4]],
                  "roc": {"thresholds": [0.0, 0.5, 1.0], "tp": [4, 4, 0], "fp": [4, 1, 0]}}
    assert done(0, two_by_two).status_code == 200
    bad = done(1, {"confusion_matrix": [[2, 0, 0], [0, 3, 0], [0, 0, 3]]})
    assert bad.status_code == 400 and "other classes or ROC thresholds" in bad.json()["detail"]
    assert done(1, {"confusion_matrix": "x"}).json()["error"] == "malformed"
    assert status(aggregator)["done"] == [0]
    assert done(1, two_by_two).status_code == 200
    total = aggregator.coordinator.final_counts().to_json()
    assert total["confusion_matrix"]["matrix"] == [[6, 2], [0, 8]]
    assert total["roc"] == {"fpr": [0.0, 0.25, 1.0], "tpr": [0.0, 1.0, 1.0],
                            "thresholds": [1.0, 0.5, 0.0]}


@pytest.mark.parametrize("metrics, message", [
    ({"examples": 1.0}, "not one of"), ({"<script>": 1.0}, "must be 1-64 letters"),
    ({f"m{i}": 1.0 for i in range(65)}, "at most 64 metrics"),
])
def test_metric_names_are_checked(aggregator, metrics, message):
    response = aggregator.http.post(aggregator.url + "/v1/done", timeout=5, json={
        "client_id": 0, "metrics": metrics, "num_examples": 1})
    assert response.status_code == 400 and message in response.json()["detail"]


def test_oversized_done_and_init_metadata_are_refused(aggregator):
    huge = aggregator.http.post(aggregator.url + "/v1/done", timeout=5,
                                data=b"{" + b" " * (2 << 20) + b"}",
                                headers={"Content-Type": "application/json"})
    assert huge.status_code == 413
    roomy = start_aggregator(num_clients=2, rounds=2)  # bodies up to 1 GiB
    try:
        body = wire.encode(small_weights(), {wire.META_CLIENT_ID: "0",
                                             wire.META_SETTINGS: "{" + " " * 70_000 + "}"})
        refused = roomy.post("/v1/init", body)
        assert refused.status_code == 400 and "longer than 65536" in refused.json()["detail"]
        assert roomy.coordinator.status().model_version == -1
    finally:
        roomy.server.stop()


def test_unknown_paths_and_methods_answer_json(aggregator):
    missing = aggregator.get("/v1/nothing")
    assert missing.status_code == 404 and "error" in missing.json()
    wrong_method = aggregator.get("/v1/update")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_many_concurrent_clients_each_round_closes_once():
    from tests.support.live_aggregator import start_aggregator

    agg = start_aggregator(num_clients=12, rounds=3)
    try:
        agg.init()
        for round_ in (1, 2, 3):
            threads = [threading.Thread(target=agg.update, args=(cid, round_, cid + 1))
                       for cid in range(12)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert agg.coordinator.history[-1].round == round_
            assert agg.coordinator.history[-1].num_examples == sum(range(1, 13))
        assert len(agg.coordinator.history) == 3
    finally:
        agg.server.stop()


def test_a_streamed_update_with_a_nan_in_its_last_chunk_leaves_the_round_untouched():
    """Updates are read from the spooled body a chunk at a time; every check runs before the
    first value is folded, so a late NaN must not leave a partial sum behind."""
    from tests.support.live_aggregator import start_aggregator
    size = 3 * wire.CHUNK_BYTES // 4 + 5  # several chunks of float32
    agg = start_aggregator(num_clients=2, rounds=1, max_update_bytes=64 << 20)
    try:
        base = {"w000": np.zeros(size, np.float32), "w001": np.zeros(2, np.float32)}
        agg.init(base)
        poisoned = {"w000": np.ones(size, np.float32), "w001": np.ones(2, np.float32)}
        poisoned["w000"][-1] = np.nan
        assert agg.update(0, 1, num_examples=1, weights=poisoned).status_code == 422
        for cid, value in ((0, 1.0), (1, 4.0)):
            weights = {"w000": np.full(size, value, np.float32),
                       "w001": np.full(2, value, np.float32)}
            assert agg.update(cid, 1, num_examples=1 + 2 * cid, weights=weights)\
                .status_code == 202
        final = wire.decode(agg.get("/v1/model", params={"round": 1}).content).tensors
        np.testing.assert_array_equal(final["w000"], np.full(size, 3.25, np.float32))
    finally:
        agg.server.stop()


def test_done_with_metrics_that_are_not_an_object_is_refused(aggregator):
    # Found by Schemathesis: a falsy non-object (0, [], "") was read as "no metrics".
    for bad in (0, [], "", None):
        response = aggregator.http.post(aggregator.url + "/v1/done", timeout=5,
                                        json={"client_id": 0, "metrics": bad})
        assert response.status_code == 400, (bad, response.text)
        assert "metrics" in response.json()["detail"]
    assert aggregator.coordinator.status().done == []
