"""Differential privacy through the real protocol: clients over HTTP to a live aggregator.
A site whose budget is spent ends the run with the last model (every client finishes, no
crash); a restarted client resumes its budget from the aggregator's ledger; under secure
aggregation the clients' noise shares add up to the central mechanism's noise."""

import numpy as np
import pytest

from client_component.federated_client import federate
from client_component.settings import ClientConfig
from client_component.transport import AggregatorClient
from contract import privacy, wire
from contract.secagg.params import SecAggParams
from server_component.run_privacy import RunPrivacy
from tests.support.federation import federate_all
from tests.support.live_aggregator import TOKEN, start_aggregator
from tests.support.numpy_learner import NumpyLearner

STEPS_PER_ROUND = 50


class BudgetedLearner(NumpyLearner):
    """NumpyLearner that spends DP-SGD steps from a real budget, as KerasLearner does."""

    def __init__(self, client_id, target, sampling_rate=0.05, **kwargs):
        super().__init__(client_id, **kwargs)
        self.privacy_budget = privacy.PrivacyBudget(
            privacy.Mechanism(1.0, sampling_rate), 1e-5, target)
        self.last_local_steps = None

    def private_steps_per_round(self):
        return STEPS_PER_ROUND

    def fit(self, round_):
        steps = self.privacy_budget.allow(STEPS_PER_ROUND)
        self.privacy_budget.spend(steps, next_round=STEPS_PER_ROUND)
        self.last_local_steps = steps
        return super().fit(round_)


def _rounds_within(target, sampling_rate):
    mechanism = privacy.Mechanism(1.0, sampling_rate)
    return max(r for r in range(1, 50)
               if mechanism.epsilon(r * STEPS_PER_ROUND, 1e-5) <= target)


def test_a_spent_budget_ends_the_run_with_the_last_model():
    # Client 2 samples more of its (smaller) data per step: it reaches the budget first.
    target, rounds = 3.0, 12
    rates = {0: 0.01, 1: 0.01, 2: 0.03}  # client 2 can afford 3 rounds, the others 12+
    expected_final = _rounds_within(target, rates[2])
    assert expected_final < _rounds_within(target, rates[0]) and expected_final < rounds
    aggregator = start_aggregator(3, rounds, coordinator_kwargs={
        "privacy": RunPrivacy("example", 1.0, 1.0, 0.0, target, 3)})
    learners = [BudgetedLearner(c, target, rates[c]) for c in range(3)]
    try:
        results = federate_all(aggregator.url, learners, rounds, TOKEN, dp="example",
                               dp_target_epsilon=target, dp_noise_multiplier=1.0,
                               logit_adjustment="none")
        status = aggregator.coordinator.status()
    finally:
        aggregator.server.stop()
    assert sorted(results) == [0, 1, 2]  # every client finished: no crash
    assert status.final_version == expected_final and status.phase.value == "done"
    assert "client(s) [2] reached the privacy budget" in status.stopped
    assert all(learner.rounds_fitted == list(range(1, expected_final + 1))
               for learner in learners)
    assert all(learner.privacy_budget.epsilon <= target for learner in learners)
    record = aggregator.coordinator.history[-1].privacy
    assert record["epsilon"] == pytest.approx(learners[2].privacy_budget.epsilon)
    assert record["client_steps"] == {str(c): learners[c].privacy_budget.spent
                                      for c in range(3)}
    assert status.epsilon <= target


def test_a_restarted_client_resumes_its_budget_from_the_aggregator():
    target, rounds = 50.0, 4
    aggregator = start_aggregator(2, rounds, coordinator_kwargs={
        "privacy": RunPrivacy("example", 1.0, 1.0, 0.0, target, 2)})
    try:
        first = [BudgetedLearner(c, target) for c in range(2)]
        federate_all(aggregator.url, first, rounds, TOKEN, dp="example",
                     dp_target_epsilon=target, logit_adjustment="none")
        # The same client starts again (a retried pod): its fresh budget starts at zero
        # steps, and resumes from what the aggregator recorded.
        retried = BudgetedLearner(0, target)
        config = ClientConfig(server=aggregator.url, client_id=0, num_clients=2, rounds=rounds,
                              token=TOKEN, dp="example", dp_target_epsilon=target,
                              logit_adjustment="none", connect_timeout_s=10)
        federate(retried, AggregatorClient(aggregator.url, TOKEN, long_poll_s=2), config)
    finally:
        aggregator.server.stop()
    assert retried.privacy_budget.spent == first[0].privacy_budget.spent == 4 * STEPS_PER_ROUND
    assert aggregator.coordinator.status().dp_steps == {"0": 200, "1": 200}


def test_privacy_reports_are_checked_on_the_wire():
    aggregator = start_aggregator(2, 1, coordinator_kwargs={
        "privacy": RunPrivacy("example", 1.0, 1.0, 0.0, 0.0, 2)})
    try:
        aggregator.init()
        meta = wire.UpdateMeta(0, 1, 10, {}).to_metadata()
        for bad in ('{"epsilon": -1}', '{"secret": 1}', '{"epsilon": "a"}', "[1]"):
            body = wire.encode({"w000": np.ones((3, 2), np.float32),
                                "w001": np.ones(2, np.float32)},
                               {**meta, wire.META_PRIVACY: bad})
            response = aggregator.post("/v1/update", body)
            assert response.status_code in (400, 422), (bad, response.text)
            assert "error" in response.json()
        assert aggregator.coordinator.status().reported == []
    finally:
        aggregator.server.stop()


def test_distributed_noise_under_secure_aggregation_adds_up_to_the_central_noise():
    clients, noise, clip = 5, 2.0, 0.5
    params = SecAggParams(clients, clip=clip * (1 + 6 * noise), max_examples=1)
    aggregator = start_aggregator(clients, 1, coordinator_kwargs={
        "secure": params, "privacy": RunPrivacy("client", noise, clip, 0.0, 0.0, clients)})
    learners = [NumpyLearner(c, shapes=((60, 50),)) for c in range(clients)]
    served = learners[0].get_weights()[0].astype(np.float64)
    try:
        federate_all(aggregator.url, learners, 1, TOKEN, secure_aggregation="secagg",
                     dp="client", dp_noise_multiplier=noise, dp_clip_norm=clip,
                     timeout=180)
        final = wire.decode(aggregator.coordinator.final_model()).tensors
    finally:
        aggregator.server.stop()
    moved = next(iter(final.values())).astype(np.float64) - served
    # Each NumpyLearner moves every coordinate by 0.01 (client_id + 1): norms 0.55..2.7, so
    # every update is clipped to 0.5 along the all-ones direction.
    clipped_mean = clip / np.sqrt(served.size)
    assert np.mean(moved) == pytest.approx(clipped_mean, abs=0.02)
    # The average carries noise of std noise x clip / N when every client survives (each
    # added noise x clip / sqrt(t), t = 3, so the five shares add a bit more than needed).
    threshold = params.t
    expected_std = noise * clip * np.sqrt(clients / threshold) / clients
    assert np.std(moved) == pytest.approx(expected_std, rel=0.06)
    assert np.std(moved) >= noise * clip / clients


def test_a_client_refuses_an_aggregator_with_another_dp_mode():
    from client_component.federated_client import PrivacyMismatch

    aggregator = start_aggregator(1, 1)  # dp off: it would add no noise
    try:
        config = ClientConfig(server=aggregator.url, client_id=0, num_clients=1, rounds=1,
                              token=TOKEN, dp="client", connect_timeout_s=10)
        with pytest.raises(PrivacyMismatch, match="the aggregator runs dp=off"):
            federate(NumpyLearner(0), AggregatorClient(aggregator.url, TOKEN), config)
        assert aggregator.coordinator.status().reported == []
    finally:
        aggregator.server.stop()


def test_a_spent_budget_ends_a_secure_run_too():
    # Under secure aggregation the site's ledger travels beside its masked vector.
    target, rounds = 3.0, 6
    rates = {0: 0.01, 1: 0.01, 2: 0.03}
    expected_final = _rounds_within(target, rates[2])
    aggregator = start_aggregator(3, rounds, coordinator_kwargs={
        "secure": SecAggParams(3), "privacy": RunPrivacy("example", 1.0, 1.0, 0.0, target, 3)})
    learners = [BudgetedLearner(c, target, rates[c]) for c in range(3)]
    try:
        federate_all(aggregator.url, learners, rounds, TOKEN, dp="example",
                     dp_target_epsilon=target, logit_adjustment="none",
                     secure_aggregation="secagg", timeout=180)
        status = aggregator.coordinator.status()
    finally:
        aggregator.server.stop()
    assert status.final_version == expected_final < rounds
    assert status.dp_steps == {str(c): learners[c].privacy_budget.spent for c in range(3)}
