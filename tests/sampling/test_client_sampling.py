"""Client sampling (fraction_fit, min_fit_clients): which clients a round asks, reproducibly;
rounds that close on their sample; clients that sit out the rounds they are not sampled for;
every strategy; a restart that draws the resumed round's sample again."""

import re
import threading
from collections import Counter

import numpy as np
import pytest

from contract import wire
from contract.errors import NotSelected
from contract.sampling import ClientSampling
from server_component.coordinator import RoundCoordinator
from server_component.report import participation_grid
from server_component.strategies import parse_strategy
from tests.reliability.test_resilience import run_federation
from tests.server.test_coordinator import init, update
from tests.support import federation
from tests.support.live_aggregator import TOKEN, start_aggregator
from tests.support.numpy_learner import NumpyLearner


@pytest.mark.parametrize("clients, fraction, minimum, size", [
    (10, 0.5, 0, 5), (10, 0.1, 0, 1), (10, 0.1, 3, 3), (5, 0.3, 0, 1), (3, 0.01, 0, 1),
    (4, 0.99, 0, 3), (4, 1.0, 0, 4), (4, 0.5, 9, 4)])
def test_the_sample_size_is_flowers(clients, fraction, minimum, size):
    # Flower: max(int(available * fraction_fit), min_fit_clients), at least one, at most all.
    assert ClientSampling(clients, fraction, minimum).sample_size == size


def test_a_seeded_sample_is_a_function_of_seed_and_round():
    sampling = ClientSampling(10, 0.3, seed=7)
    first = [sampling.select(r) for r in range(1, 21)]
    assert first == [ClientSampling(10, 0.3, seed=7).select(r) for r in range(1, 21)]
    assert all(len(s) == 3 and s == sorted(set(s)) for s in first)
    assert len({tuple(s) for s in first}) > 10  # rounds differ
    assert first != [ClientSampling(10, 0.3, seed=8).select(r) for r in range(1, 21)]


def test_every_client_is_sampled_at_the_stated_rate():
    sampling = ClientSampling(10, 0.3, seed=0)
    counts = Counter(c for r in range(1, 2001) for c in sampling.select(r))
    # 2000 rounds x 3/10: 600 each; binomial sd ~20, so 5 sd is 100.
    assert all(abs(counts[c] - 600) < 100 for c in range(10)), counts
    assert sampling.rate == 0.3


def test_poisson_sampling_is_unseeded_at_rate_q():
    sampling = ClientSampling(20, 0.25, seed=0, poisson=True)
    draws = [sampling.select(1) for _ in range(400)]
    assert len({tuple(d) for d in draws}) > 300  # not a function of (seed, round)
    sizes = [len(d) for d in draws]
    assert abs(np.mean(sizes) - 5) < 0.5 and min(sizes) < 5 < max(sizes)
    assert sampling.expected_clients == 5.0 and sampling.rate == 0.25


class SiteLearner(NumpyLearner):
    """A NumpyLearner that also says its local steps (FedNova) and keeps a control variate
    (SCAFFOLD), so that one learner serves every strategy."""

    last_local_steps = 3
    control = None

    def set_control(self, control):
        self.control = control

    def control_delta(self):
        if self.control is None:
            return None
        return [np.full_like(w, 0.001) for w in self.weights]


def sampled_federation(strategy="fedavg", clients=5, rounds=4, fraction=0.4, **kwargs):
    sampling = ClientSampling(clients, fraction, seed=3)
    agg = start_aggregator(clients, rounds, strategy=parse_strategy(strategy),
                           coordinator_kwargs={"sampling": sampling, **kwargs})
    learners = [SiteLearner(c) for c in range(clients)]
    try:
        federation.federate_all(agg.url, learners, rounds, TOKEN, timeout=60, long_poll_s=2)
    finally:
        agg.server.stop()
    return agg.coordinator, learners, sampling


@pytest.mark.parametrize("strategy", ["fedavg", "fedavgm", "fedadam", "fednova", "scaffold",
                                      "median", "trimmed-mean:0.2"])
def test_each_round_trains_exactly_its_sample_with_every_strategy(strategy):
    coordinator, learners, sampling = sampled_federation(strategy)
    for record in coordinator.history:
        assert record.client_ids == record.selected == sampling.select(record.round)
        assert record.missing == []
    for learner in learners:  # a client trains only in the rounds it was sampled for
        assert learner.rounds_fitted == [r for r in range(1, 5)
                                         if learner.client_id in sampling.select(r)]
    assert coordinator.final_version == 4 and not coordinator.failure
    # Every client evaluated the final model, sampled or not.
    assert sorted(coordinator.final_client_metrics()) == [0, 1, 2, 3, 4]


def test_the_round_average_is_over_the_sample_only():
    coordinator, learners, sampling = sampled_federation(rounds=1)
    [selected] = [sampling.select(1)]
    final = coordinator.final_model()
    weights = wire.tensors_to_list(wire.decode(final).tensors)
    start = NumpyLearner(0).get_weights()
    examples = {c: 10 * (c + 1) for c in selected}
    steps = {c: np.float32(0.01 * (c + 1)) for c in selected}
    expected = sum(examples[c] * (start[0] + steps[c]) for c in selected) / sum(examples.values())
    np.testing.assert_allclose(weights[0], expected, rtol=1e-6)


def test_an_update_from_a_client_outside_the_sample_is_409_and_changes_nothing():
    sampling = ClientSampling(5, 0.4, seed=3)
    coordinator = RoundCoordinator(5, 2, sampling=sampling)
    init(coordinator)
    outsider = next(c for c in range(5) if c not in sampling.select(1))
    with pytest.raises(NotSelected, match=f"client {outsider} is not in round 1's sample"):
        update(coordinator, outsider, 1)
    status = coordinator.status()
    assert status.reported == [] and status.selected == sampling.select(1)
    assert status.trains(outsider, 1) is False and status.trains(status.selected[0], 1)
    assert status.trains(outsider, 2) is None  # not the open round


def test_a_round_closes_at_its_deadline_with_the_quorum_of_its_sample(tmp_path):
    sampling = ClientSampling(5, 0.6, seed=1)  # 3 per round
    selected = sampling.select(1)
    straggler = selected[-1]
    release = threading.Event()

    def stall(cid, round_):
        if cid == straggler and round_ == 1:
            release.wait(10)

    agg = start_aggregator(5, 2, coordinator_kwargs={
        "sampling": sampling, "min_clients": 2, "round_timeout": 1.0})
    threading.Thread(target=agg.coordinator.enforce_deadlines, daemon=True).start()
    learners = [NumpyLearner(c, before_fit=stall) for c in range(5)]
    results, errors = {}, {}
    threads = federation.start_clients(agg.url, learners, 2, TOKEN, results, errors,
                                       long_poll_s=2)
    try:
        agg.coordinator.wait_for_model(1, timeout=20)
        release.set()
        for thread in threads:
            thread.join(60)
    finally:
        agg.server.stop()
    first = agg.coordinator.history[0]
    assert first.selected == selected and first.missing == [straggler]
    assert first.client_ids == [c for c in selected if c != straggler]
    assert not errors, errors


def test_the_participation_grid_tells_sampled_out_from_missing():
    coordinator, _, sampling = sampled_federation(rounds=2)
    grid = participation_grid(coordinator.history, 5)
    for c in range(5):
        assert grid[c] == [2 if c in sampling.select(r) else 0 for r in (1, 2)]


@pytest.mark.slow
def test_a_restarted_aggregator_draws_the_resumed_rounds_sample_again(tmp_path):
    hold = threading.Event()
    ckpt = tmp_path / "ckpt"
    flags = ("--fraction-fit", "0.67", "--seed", "5", "--checkpoint-dir", str(ckpt))
    sampling = ClientSampling(3, 0.67, seed=5)
    blocker = sampling.select(3)[0]

    def hold_round_3(cid, round_):
        if cid == blocker and round_ == 3:
            hold.wait(60)

    def crash_and_restart(server, port, out):
        from tests.support.aggregator_process import AggregatorProcess

        assert server.wait_for("event=sample round=3")
        server.proc.kill()
        server.proc.wait()
        restarted = AggregatorProcess(port, out, "--num-clients", "3", "--rounds", "4", *flags)
        hold.set()
        return restarted

    server, learners, _, errors, _ = run_federation(tmp_path, flags=flags,
                                                    before_fit=hold_round_3,
                                                    on_started=crash_and_restart)
    assert not errors and server.wait() == 0, server.output
    resumed = re.search(r"event=sample round=3 selected=(\[[0-9, ]*\])", server.output)
    assert resumed and resumed.group(1) == str(sampling.select(3))
    for learner in learners:
        assert learner.rounds_fitted == [r for r in range(1, 5)
                                         if learner.client_id in sampling.select(r)]
