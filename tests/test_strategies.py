import numpy as np
import pytest

from server_component.strategies import RunningWeightedSum, weighted_average


def test_weighted_average_matches_hand_computation():
    a = [np.array([1.0, 2.0], np.float32), np.array([[0.0]], np.float32)]
    b = [np.array([3.0, 6.0], np.float32), np.array([[4.0]], np.float32)]
    # weights 1 and 3: (1*1 + 3*3)/4 = 2.5, (2 + 18)/4 = 5, (0 + 12)/4 = 3
    avg = weighted_average([(a, 1), (b, 3)])
    np.testing.assert_allclose(avg[0], [2.5, 5.0])
    np.testing.assert_allclose(avg[1], [[3.0]])
    assert avg[0].dtype == np.float32


def test_running_sum_equals_the_pure_function_on_random_inputs():
    rng = np.random.default_rng(0)
    shapes = [(4, 3), (3,), (2, 2, 2)]
    results = [([rng.normal(size=s).astype(np.float32) for s in shapes], int(rng.integers(1, 50)))
               for _ in range(7)]
    running = RunningWeightedSum()
    for weights, n in results:
        running.add({f"w{i:03d}": w for i, w in enumerate(weights)}, n)
    streamed = running.average()
    reference = weighted_average(results)
    for i, ref in enumerate(reference):
        np.testing.assert_allclose(streamed[f"w{i:03d}"], ref, rtol=1e-6)
        assert streamed[f"w{i:03d}"].dtype == np.float32


def test_running_sum_holds_one_accumulator_per_tensor_whatever_the_clients():
    running = RunningWeightedSum()
    for n in range(1, 30):
        running.add({"w000": np.ones(10, np.float32)}, n)
    assert len(running._sums) == 1 and running._sums["w000"].shape == (10,)
    np.testing.assert_allclose(running.average()["w000"], np.ones(10))


def test_degenerate_inputs_are_refused():
    with pytest.raises(ValueError):
        weighted_average([])
    with pytest.raises(ValueError):
        RunningWeightedSum().add({"w000": np.ones(1)}, 0)
    with pytest.raises(ValueError):
        RunningWeightedSum().average()
