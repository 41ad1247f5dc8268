"""float16 updates (``--update-dtype float16``): half the upload, the same protocol, and a
global model that stays float32 and within float16 rounding of the float32 run."""


import numpy as np

from client_component.federated_client import as_update_dtype
from contract import wire
from tests.support.federation import federate_all
from tests.support.live_aggregator import TOKEN, start_aggregator
from tests.support.numpy_learner import NumpyLearner

SHAPES = ((64, 32), (32,))


def run(update_dtype: str) -> tuple[list[np.ndarray], int]:
    agg = start_aggregator(num_clients=2, rounds=3)
    try:
        learners = [NumpyLearner(cid, shapes=SHAPES) for cid in range(2)]
        federate_all(agg.url, learners, 3, TOKEN, timeout=60, update_dtype=update_dtype)
        assert agg.coordinator.wait_until_complete(timeout=30)
        final = wire.tensors_to_list(wire.decode(agg.coordinator.final_model()).tensors)
        return final, agg.coordinator.counters.snapshot().bytes_received
    finally:
        agg.server.stop()


def test_float16_updates_halve_the_upload_and_keep_a_float32_model():
    full, full_bytes = run("float32")
    half, half_bytes = run("float16")
    assert [w.dtype for w in half] == [np.float32, np.float32]
    for a, b in zip(full, half, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3)
    assert 0.45 < half_bytes / full_bytes < 0.55


def test_only_float_weights_are_narrowed():
    weights = [np.ones(3, np.float32), np.arange(3, dtype=np.int64)]
    narrowed = as_update_dtype(weights, "float16")
    assert [w.dtype for w in narrowed] == [np.float16, np.int64]
    assert as_update_dtype(weights, "float32") is weights
