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


# ---- robust strategies and FedAdam --------------------------------------------------------

from server_component.strategies import (  # noqa: E402
    AdamParams,
    FedAdam,
    FedAvg,
    Median,
    StrategyError,
    TrimmedMean,
    UpdateList,
    coordinate_median,
    fedadam_step,
    parse_strategy,
    trimmed_mean,
)


def test_median_and_trimmed_mean_match_hand_computations():
    updates = [[np.array([1.0, 10.0], np.float32)], [np.array([2.0, 20.0], np.float32)],
               [np.array([3.0, 30.0], np.float32)], [np.array([100.0, -50.0], np.float32)]]
    np.testing.assert_allclose(coordinate_median(updates)[0], [2.5, 15.0])
    # beta 0.25 of 4 cuts one value from each end: mean of the middle two.
    np.testing.assert_allclose(trimmed_mean(updates, 0.25)[0], [2.5, 15.0])
    np.testing.assert_allclose(trimmed_mean(updates, 0.0)[0], [26.5, 2.5])


def test_fedadam_step_matches_a_hand_computation():
    current, aggregated = [np.array([1.0], np.float32)], [np.array([2.0], np.float32)]
    params = AdamParams(eta=0.1, beta_1=0.9, beta_2=0.99, tau=1e-9)
    new, m, v = fedadam_step(current, aggregated, None, None, server_round=1, params=params)
    # delta 1: m = 0.1, v = 0.01; eta_norm = 0.1*sqrt(1-0.99^2)/(1-0.9^2)
    eta_norm = 0.1 * np.sqrt(1 - 0.99**2) / (1 - 0.9**2)
    np.testing.assert_allclose(m[0], [0.1])
    np.testing.assert_allclose(v[0], [0.01])
    np.testing.assert_allclose(new[0], [1.0 + eta_norm * 0.1 / 0.1], rtol=1e-6)


def test_robust_strategies_keep_every_update_and_say_so():
    assert Median().keeps_all_updates and TrimmedMean(0.2).keeps_all_updates
    assert isinstance(Median().new_round(), UpdateList)
    assert not parse_strategy("fedavg").keeps_all_updates
    assert not FedAdam().keeps_all_updates


@pytest.mark.parametrize("spec, name", [("fedavg", "fedavg"), ("FedAdam", "fedadam"),
                                        ("fedavgm", "fedavgm:0.9"), ("fedavgm:0.5", "fedavgm:0.5"),
                                        ("fedavgm:0.5:0.5", "fedavgm:0.5:0.5"),
                                        ("median", "median"), ("trimmed-mean", "trimmed-mean:0.1"),
                                        ("trimmed-mean:0.2", "trimmed-mean:0.2")])
def test_parse_strategy(spec, name):
    assert parse_strategy(spec).name == name


@pytest.mark.parametrize("spec", ["krum", "fedavg:1", "trimmed-mean:0.5", "trimmed-mean:x",
                                  "fedavgm:1", "fedavgm:-0.1", "fedavgm:x", "fedavgm:0.5:0",
                                  "trimmed-mean:nan"])
def test_bad_strategies_name_the_accepted_ones(spec):
    with pytest.raises(StrategyError):
        parse_strategy(spec)


def test_fedadam_state_survives_a_checkpoint_round_trip():
    current = {"w000": np.ones(3, np.float32)}
    a, b = FedAdam(), FedAdam()
    acc = a.new_round()
    acc.add({"w000": np.full(3, 2.0, np.float32)}, 1)
    a.aggregate(acc, current, 1)
    b.load_state(a.state())
    for strategy in (a, b):
        acc = strategy.new_round()
        acc.add({"w000": np.full(3, 3.0, np.float32)}, 1)
    new_a = a.aggregate(acc, current, 2)
    acc_b = b.new_round()
    acc_b.add({"w000": np.full(3, 3.0, np.float32)}, 1)
    np.testing.assert_array_equal(new_a["w000"], b.aggregate(acc_b, current, 2)["w000"])


# ---- cross-check against Flower's reference implementations --------------------------------

def _flower():
    try:
        from flwr.server.strategy import aggregate as flower_aggregate
    except ImportError as exc:  # pragma: no cover - depends on the dev install
        pytest.skip(f"flwr is not importable ({exc}); `make venv` installs it --no-deps")
    return flower_aggregate


def _random_results(seed: int, clients: int = 7):
    rng = np.random.default_rng(seed)
    shapes = [(5, 4), (4,), (3, 3, 2)]
    return [([rng.normal(size=s).astype(np.float32) for s in shapes],
             int(rng.integers(1, 100))) for _ in range(clients)]


@pytest.mark.parametrize("seed", range(5))
def test_cross_check_with_flower_aggregate_median_trimmed(seed):
    flower = _flower()
    results = _random_results(seed)
    updates = [w for w, _ in results]
    for ours, theirs in [
        (weighted_average(results), flower.aggregate(results)),
        (coordinate_median(updates), flower.aggregate_median(results)),
        (trimmed_mean(updates, 0.2), flower.aggregate_trimmed_avg(results, 0.2)),
    ]:
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _cross_check_with_flower_over_three_rounds(flower_class, ours, seed, **flower_kwargs):
    """Three rounds of ``ours`` against Flower's ``flower_class`` on the same random updates."""
    _flower()
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

    rng = np.random.default_rng(seed)
    initial = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    flower = flower_class(initial_parameters=ndarrays_to_parameters(initial), **flower_kwargs)
    current = {"w000": initial[0], "w001": initial[1]}
    for server_round in (1, 2, 3):
        results = _random_results(100 * (seed + 1) + server_round, clients=4)
        results = [([w[0][:4, :3], w[1][:3]], n) for w, n in results]
        fit = [(None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(w), n, {}))
               for w, n in results]
        theirs = parameters_to_ndarrays(flower.aggregate_fit(server_round, fit, [])[0])
        acc = ours.new_round()
        for w, n in results:
            acc.add({"w000": w[0], "w001": w[1]}, n)
        current = ours.aggregate(acc, current, server_round)
        np.testing.assert_allclose(current["w000"], theirs[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(current["w001"], theirs[1], rtol=1e-4, atol=1e-5)


def test_cross_check_fedadam_with_flower_over_three_rounds():
    _flower()
    from flwr.server.strategy import FedAdam as FlowerFedAdam

    _cross_check_with_flower_over_three_rounds(FlowerFedAdam, FedAdam(), seed=0)


def test_running_sum_across_chunk_boundaries_equals_the_pure_function():
    from server_component.chunked import CHUNK
    rng = np.random.default_rng(3)
    size = 2 * CHUNK + 17  # several chunks and a ragged tail
    results = [([rng.normal(size=size).astype(np.float32), rng.normal(size=(3, 2))
                 .astype(np.float32)], n) for n in (3, 11, 40)]
    running = RunningWeightedSum()
    for weights, n in results:
        running.add({"w000": weights[0], "w001": weights[1]}, n)
    dtypes = {"w000": np.dtype(np.float32), "w001": np.dtype(np.float32)}
    streamed = running.average(dtypes)
    for i, ref in enumerate(weighted_average(results)):
        np.testing.assert_array_equal(streamed[f"w{i:03d}"], ref)


def test_a_reset_sum_reuses_its_buffers_and_forgets_the_last_round():
    running = RunningWeightedSum()
    running.add({"w000": np.full(5, 100.0, np.float32)}, 7)
    buffer = running._sums["w000"]
    running.reset()
    results = [([np.full(5, 1.0, np.float32)], 1), ([np.full(5, 4.0, np.float32)], 3)]
    for weights, n in results:
        running.add({"w000": weights[0]}, n)
    assert running._sums["w000"] is buffer
    out = {"w000": np.empty(5, np.float32)}
    running.average_into(out)
    np.testing.assert_array_equal(out["w000"], weighted_average(results)[0])


def test_float16_updates_average_into_the_float32_global_model():
    current = {"w000": np.zeros(4, np.float32)}
    for strategy in (FedAvg(), Median(), TrimmedMean(0.0)):
        accumulator = strategy.new_round()
        accumulator.add({"w000": np.full(4, 1.5, np.float16)}, 1)
        accumulator.add({"w000": np.full(4, 2.5, np.float16)}, 1)
        new = strategy.aggregate(accumulator, current, 1)
        assert new["w000"].dtype == np.float32, strategy.name
        np.testing.assert_allclose(new["w000"], 2.0)


def test_all_finite_sees_a_nan_in_any_chunk():
    from server_component.chunked import CHUNK, all_finite
    values = np.zeros(3 * CHUNK, np.float32)
    assert all_finite(values)
    values[2 * CHUNK + 5] = np.nan
    assert not all_finite(values)


def test_fedavgm_steps_match_a_hand_computation_and_survive_a_checkpoint():
    current = {"w000": np.zeros(2, np.float32)}
    strategy, restored = parse_strategy("fedavgm:0.5"), parse_strategy("fedavgm:0.5")
    acc = strategy.new_round()
    acc.add({"w000": np.array([1.0, 2.0], np.float32)}, 1)
    current = strategy.aggregate(acc, current, 1)  # velocity = -(1, 2): a plain FedAvg step
    np.testing.assert_allclose(current["w000"], [1.0, 2.0])
    restored.load_state(strategy.state())
    for s in (strategy, restored):
        acc = s.new_round()
        acc.add({"w000": np.array([2.0, 2.0], np.float32)}, 3)
        # velocity = 0.5 * -(1, 2) + -(1, 0) = -(1.5, 1); the model moves by it
        np.testing.assert_allclose(s.aggregate(acc, current, 2)["w000"], [2.5, 3.0])


def test_cross_check_fedavgm_with_flower_over_three_rounds():
    _flower()
    from flwr.server.strategy import FedAvgM as FlowerFedAvgM

    _cross_check_with_flower_over_three_rounds(
        FlowerFedAvgM, parse_strategy("fedavgm:0.9"), seed=1, server_momentum=0.9,
        server_learning_rate=1.0)


def test_the_accepted_names_come_from_the_registry():
    """A registered class is all it takes: its usage is listed and its name parses."""
    from server_component.strategies import REGISTRY, STRATEGIES

    assert STRATEGIES == tuple(cls.usage for cls in REGISTRY.values())
    for name, cls in REGISTRY.items():
        assert isinstance(parse_strategy(name), cls)
        assert cls.__doc__, f"strategy {name} says what it does"


@pytest.mark.parametrize("spec, expected", [("fedavgm::0.5", "fedavgm:0.9:0.5"),
                                            ("scaffold:0.5", "scaffold:0.5"),
                                            ("scaffold", "scaffold"), ("fednova", "fednova"),
                                            ("fednova:1", "fednova"),
                                            ("fednova:inf", "fednova:inf")])
def test_empty_parameters_keep_their_defaults(spec, expected):
    assert parse_strategy(spec).name == expected


@pytest.mark.parametrize("spec", ["fednova:0.5", "fednova:nan", "fednova:1:2",
                                  "scaffold:0", "scaffold:x", "scaffold:1:2"])
def test_bad_new_strategy_specs_are_refused(spec):
    with pytest.raises(StrategyError):
        parse_strategy(spec)
