"""FedNova and SCAFFOLD: the server arithmetic against the papers' formulas, the wire
metadata they need, and whole runs over HTTP on quadratic sites where FedAvg provably
misses the optimum (different local step counts; different curvatures)."""


import numpy as np
import pytest

from client_component.federated_client import ClientConfig, UnsupportedStrategy, federate
from client_component.transport import AggregatorClient
from contract import wire
from contract.errors import IncompatibleUpdate, MalformedRequest
from server_component.checkpoint import load_checkpoint
from server_component.coordinator import RoundCoordinator
from server_component.strategies import FedNova, Scaffold, fednova_step, parse_strategy
from tests.support.federation import federate_all
from tests.support.live_aggregator import TOKEN, start_aggregator
from tests.support.numpy_learner import NumpyLearner


class QuadraticSite:
    """f_i(w) = h/2 ||w - o_i||^2, trained by ``steps`` plain gradient steps per round: a
    Learner whose federated optimum is known in closed form."""

    def __init__(self, optimum: np.ndarray, curvature: float, steps: int, examples: int,
                 learning_rate: float) -> None:
        self.optimum, self.curvature, self.steps = optimum, curvature, steps
        self.examples, self.learning_rate = examples, learning_rate
        self.weights = np.zeros_like(optimum)
        self.last_local_steps, self.momentum = None, 0.0
        self.control = self.own_control = self.change = None

    def get_weights(self) -> list[np.ndarray]:
        return [self.weights.astype(np.float32)]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.weights = np.array(weights[0], np.float64)

    def set_control(self, control: list[np.ndarray]) -> None:
        self.control = np.array(control[0], np.float64)
        if self.own_control is None:
            self.own_control = np.zeros_like(self.control)

    def control_delta(self) -> list[np.ndarray] | None:
        return None if self.change is None else [self.change.astype(np.float32)]

    def fit(self, round_: int) -> tuple[int, dict[str, float]]:
        start, w = self.weights.copy(), self.weights.copy()
        for _ in range(self.steps):
            gradient = self.curvature * (w - self.optimum)
            if self.control is not None:
                gradient += self.control - self.own_control
            w -= self.learning_rate * gradient
        self.weights, self.last_local_steps = w, self.steps
        if self.control is not None:
            new = (self.own_control - self.control
                   + (start - w) / (self.learning_rate * self.steps))
            self.change, self.own_control = new - self.own_control, new
        return self.examples, {"loss": float(np.sum((w - self.optimum) ** 2))}

    def evaluate_test(self) -> tuple[int, dict[str, float]]:
        return 1, {"loss": float(np.sum((self.weights - self.optimum) ** 2))}


OPTIMA = np.random.default_rng(0).normal(size=(3, 4)) * 3
EXAMPLES = (30, 10, 20)


def federated_optimum(strategy: str, curvatures, steps, learning_rate: float,
                      rounds: int = 60) -> np.ndarray:
    sites = [QuadraticSite(OPTIMA[i].astype(np.float32), curvatures[i], steps[i],
                           EXAMPLES[i], learning_rate) for i in range(3)]
    agg = start_aggregator(3, rounds, strategy=parse_strategy(strategy))
    try:
        federate_all(agg.url, sites, rounds, TOKEN)
        final = wire.decode(agg.coordinator.final_model()).tensors
        assert set(final) == {"w000"}, "control variates stay out of the final model"
        return final["w000"].astype(np.float64)
    finally:
        agg.server.stop()


@pytest.mark.parametrize("fednova", ["fednova", "fednova:inf"])
def test_fednova_removes_the_bias_of_unequal_local_steps(fednova):
    """Same curvature, steps 2/20/8: FedAvg's fixed point leans towards the site that ran the
    most steps; FedNova's is the examples-weighted optimum to first order in the step size,
    whether it takes the paper's step or the shorter default one (more rounds to get there)."""
    p = np.array(EXAMPLES) / sum(EXAMPLES)
    target = (p[:, None] * OPTIMA).sum(0)
    fedavg = federated_optimum("fedavg", (1, 1, 1), (2, 20, 8), 0.02, rounds=100)
    normalised = federated_optimum(fednova, (1, 1, 1), (2, 20, 8), 0.02, rounds=100)
    assert np.linalg.norm(fedavg - target) > 0.8
    assert np.linalg.norm(normalised - target) < 0.1


def test_scaffold_reaches_the_optimum_fedavg_drifts_from():
    """Curvatures 1/4/0.25 and ten local steps: FedAvg converges off the optimum (client
    drift); SCAFFOLD's control variates cancel the drift."""
    curvatures = np.array([1.0, 4.0, 0.25])
    p = np.array(EXAMPLES) / sum(EXAMPLES)
    target = (p[:, None] * curvatures[:, None] * OPTIMA).sum(0) / (p * curvatures).sum()
    fedavg = federated_optimum("fedavg", curvatures, (10, 10, 10), 0.1)
    scaffold = federated_optimum("scaffold", curvatures, (10, 10, 10), 0.1)
    assert np.linalg.norm(fedavg - target) > 0.5
    assert np.linalg.norm(scaffold - target) < 1e-3


@pytest.mark.parametrize("max_extrapolation", [1.0, 3.0, np.inf])
def test_fednova_folded_as_updates_arrive_equals_the_papers_formula(max_extrapolation):
    rng = np.random.default_rng(3)
    current = {"w000": rng.normal(size=(5, 3)).astype(np.float32),
               "w001": rng.normal(size=7).astype(np.float32)}
    strategy, updates = FedNova(max_extrapolation), []
    accumulator = strategy.new_round()
    for cid in range(4):
        tensors = {k: (v + rng.normal(size=v.shape)).astype(np.float32)
                   for k, v in current.items()}
        meta = wire.UpdateMeta(cid, 1, int(rng.integers(5, 100)),
                               local_steps=int(rng.integers(1, 40)), momentum=0.9 * (cid % 2))
        strategy.fold(accumulator, wire.Message(tensors), meta)
        updates.append(([tensors["w000"], tensors["w001"]], meta.num_examples,
                        wire.step_norm(meta.local_steps, meta.momentum)))
    new = strategy.aggregate(accumulator, current, 1)
    expected = fednova_step([current["w000"], current["w001"]], updates, max_extrapolation)
    np.testing.assert_allclose(new["w000"], expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new["w001"], expected[1], rtol=1e-5, atol=1e-6)


def test_fednova_with_equal_steps_is_fedavg():
    current = {"w000": np.zeros(3, np.float32)}
    strategy = FedNova()
    accumulator = strategy.new_round()
    for cid, (value, n) in enumerate(((1.0, 10), (4.0, 30))):
        strategy.fold(accumulator, wire.Message({"w000": np.full(3, value, np.float32)}),
                      wire.UpdateMeta(cid, 1, n, local_steps=7, momentum=0.9))
    np.testing.assert_allclose(strategy.aggregate(accumulator, current, 1)["w000"], 3.25)


def test_fednova_hand_computation():
    """x = 0; site A (3 examples) moved to -1 in 1 step, site B (1 example) to -5 in 10
    steps: direction 0.75 * 1 + 0.25 * 0.5 = 0.875 per unit step. The paper's tau_eff =
    0.75 * 1 + 0.25 * 10 = 3.25 gives -2.84375 (FedAvg: -2); the default tau_eff, the
    harmonic mean 1 / (0.75 / 1 + 0.25 / 10) = 1 / 0.775, gives -0.875 / 0.775 = -1.1290."""
    updates = [([np.full(1, -1.0)], 3, 1.0), ([np.full(1, -5.0)], 1, 10.0)]
    np.testing.assert_allclose(fednova_step([np.zeros(1)], updates, np.inf)[0], -2.84375)
    np.testing.assert_allclose(fednova_step([np.zeros(1)], updates)[0], -0.875 / 0.775)
    np.testing.assert_allclose(fednova_step([np.zeros(1)], updates, 2.0)[0], -1.75 / 0.775)


def test_fednova_never_moves_past_the_clients_models_by_default():
    """The X-ray collapse in miniature: sites of 2051, 219 and 21 examples ran 65, 7 and 1
    momentum-SGD steps (Dirichlet(0.1), 10 sites). The paper's tau_eff throws the model ~5x
    past the farthest client; the default stays inside the clients' models."""
    x = np.zeros(2)
    ends = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.5])]
    updates = [([e], n, wire.step_norm(steps, 0.9))
               for e, n, steps in zip(ends, (2051, 219, 21), (65, 7, 1), strict=True)]
    default = fednova_step([x], updates)[0]
    paper = fednova_step([x], updates, np.inf)[0]
    hull = np.stack(ends)
    assert np.all(default >= hull.min(0)) and np.all(default <= hull.max(0))
    assert np.linalg.norm(paper) > 4 * np.linalg.norm(hull, axis=1).max()


@pytest.mark.parametrize("steps, momentum", [(1, 0.9), (7, 0.9), (30, 0.5), (12, 0.0)])
def test_step_norm_is_how_far_keras_sgd_moves_per_unit_gradient(steps, momentum):
    """The closed form against Keras's own SGD: a constant gradient 1 at learning rate 1."""
    import keras

    variable = keras.Variable(np.zeros(1, np.float32))
    optimizer = keras.optimizers.SGD(learning_rate=1.0, momentum=momentum)
    for _ in range(steps):
        optimizer.apply_gradients([(keras.ops.ones((1,)), variable)])
    moved = -float(keras.ops.convert_to_numpy(variable)[0])
    assert moved == pytest.approx(wire.step_norm(steps, momentum), rel=1e-5)


def test_scaffold_control_moves_by_the_participating_share():
    strategy = Scaffold()
    strategy.bind(4)
    current = strategy.initial_model({"w000": np.zeros(2, np.float32)})
    assert set(current) == {"w000", "control/w000"}
    accumulator = strategy.new_round()
    for cid, n in ((0, 10), (1, 30)):  # two of four clients took part
        strategy.fold(accumulator, wire.Message({"w000": np.full(2, cid + 1.0, np.float32),
                                                 "control/w000": np.full(2, 4.0 * cid,
                                                                         np.float32)}),
                      wire.UpdateMeta(cid, 1, n))
    new = strategy.aggregate(accumulator, current, 1)
    np.testing.assert_allclose(new["w000"], 1.75)  # (10 * 1 + 30 * 2) / 40
    np.testing.assert_allclose(new["control/w000"], 0.5 * 3.0)  # share 2/4 of (30 * 4) / 40


def _coordinator(strategy: str, tmp_path=None) -> RoundCoordinator:
    coordinator = RoundCoordinator(2, 2, strategy=parse_strategy(strategy),
                                   checkpoint_dir=str(tmp_path) if tmp_path else None)
    coordinator.submit_init(wire.Message({"w000": np.zeros(3, np.float32)},
                                         {"client_id": "0"}))
    return coordinator


def test_fednova_refuses_an_update_without_local_steps_and_keeps_the_round():
    coordinator = _coordinator("fednova")
    bare = wire.Message({"w000": np.ones(3, np.float32)},
                        wire.UpdateMeta(0, 1, 5).to_metadata())
    with pytest.raises(MalformedRequest, match="local_steps"):
        coordinator.submit_update(bare)
    assert coordinator.status().reported == []
    good = wire.UpdateMeta(0, 1, 5, local_steps=3).to_metadata()
    assert coordinator.submit_update(wire.Message({"w000": np.ones(3, np.float32)},
                                                  good)) == "accepted"


@pytest.mark.parametrize("key, value", [("local_steps", "0"), ("local_steps", "x"),
                                        ("momentum", "1"), ("momentum", "nan"),
                                        ("momentum", "-0.1")])
def test_bad_step_metadata_is_a_422(key, value):
    meta = {**wire.UpdateMeta(0, 1, 5, local_steps=3).to_metadata(), key: value}
    with pytest.raises(IncompatibleUpdate, match=key):
        wire.parse_update_meta(meta)


def test_scaffold_serves_control_variates_and_refuses_updates_without_them(tmp_path):
    coordinator = _coordinator("scaffold", tmp_path)
    served = wire.decode(coordinator.wait_for_model(0, timeout=1)).tensors
    np.testing.assert_array_equal(served["control/w000"], np.zeros(3))
    with pytest.raises(IncompatibleUpdate, match="SCAFFOLD"):
        coordinator.submit_update(wire.Message({"w000": np.ones(3, np.float32)},
                                               wire.UpdateMeta(0, 1, 5).to_metadata()))
    for cid in range(2):
        coordinator.submit_update(wire.Message(
            {"w000": np.ones(3, np.float32), "control/w000": np.full(3, 2.0, np.float32)},
            wire.UpdateMeta(cid, 1, 5).to_metadata()))
    # The server's c survives a restart: it is part of the checkpointed global model.
    checkpoint = load_checkpoint(str(tmp_path), coordinator.config)
    np.testing.assert_allclose(checkpoint.model["control/w000"], 2.0)


def test_inits_may_not_use_the_control_prefix():
    coordinator = RoundCoordinator(2, 2)
    with pytest.raises(MalformedRequest, match="reserved"):
        coordinator.submit_init(wire.Message({"control/w000": np.zeros(3, np.float32)},
                                             {"client_id": "0"}))


def test_a_learner_without_control_variates_says_why_it_cannot_join_scaffold():
    agg = start_aggregator(1, 1, strategy=Scaffold())
    try:
        config = ClientConfig(server=agg.url, client_id=0, num_clients=1, rounds=1,
                              token=TOKEN, connect_timeout_s=30)
        with pytest.raises(UnsupportedStrategy, match="SCAFFOLD"):
            federate(NumpyLearner(0), AggregatorClient(agg.url, TOKEN), config)
    finally:
        agg.server.stop()
