"""Client-level DP (DP-FedAvg) at the aggregator: clipping bounds each client's contribution,
the central noise has the stated standard deviation, the budget ends training before it is
exceeded, and a restarted aggregator does not reset it."""

import numpy as np
import pytest

from contract import privacy, wire
from contract.errors import TrainingFinished
from server_component.checkpoint import load_checkpoint
from server_component.coordinator import RoundCoordinator
from server_component.run_privacy import RunPrivacy
from server_component.strategies import FedAdam

SERVED = {"a": np.zeros((40, 50), np.float32), "b": np.zeros(100, np.float32)}


def _coordinator(num_clients=3, rounds=3, noise=1e-9, clip=1.0, target=0.0, seed=0, **kw):
    ledger = RunPrivacy("client", noise, clip, 0.0, target, num_clients, noise_seed=seed)
    coordinator = RoundCoordinator(num_clients, rounds, privacy=ledger, **kw)
    coordinator.submit_init(wire.Message(dict(SERVED), {wire.META_CLIENT_ID: "0"}))
    return coordinator


def _update(coordinator, client_id, round_, tensors, examples=10):
    meta = wire.UpdateMeta(client_id, round_, examples, {})
    return coordinator.submit_update(wire.Message(tensors, meta.to_metadata()))


def _displacement(scale, seed):
    rng = np.random.default_rng(seed)
    return {n: (rng.normal(size=a.shape) * scale).astype(np.float32)
            for n, a in SERVED.items()}


def _flat(tensors):
    return np.concatenate([tensors[n].ravel().astype(np.float64) for n in sorted(tensors)])


def _model(coordinator, version):
    return wire.decode(coordinator.wait_for_model(version, 1)).tensors


def test_each_clients_update_is_clipped_and_weighs_the_same():
    coordinator = _coordinator()
    updates = [_displacement(s, seed) for seed, s in enumerate((1.0, 0.001, 0.3))]
    for cid, update in enumerate(updates):
        _update(coordinator, cid, 1, update, examples=10 ** cid)  # examples are ignored
    averaged = _flat(_model(coordinator, 1))
    expected = sum(_flat(u) * min(1.0, 1.0 / np.linalg.norm(_flat(u))) for u in updates) / 3
    np.testing.assert_allclose(averaged, expected, atol=1e-6)
    assert all(np.linalg.norm(_flat(u)) > 1 for u in (updates[0], updates[2]))
    factors = coordinator.strategy.last_clip_factors
    assert factors[1] == 1.0 and factors[0] < 1 and factors[2] < 1


def test_a_missing_client_does_not_change_the_denominator():
    clock = [0.0]
    coordinator = _coordinator(min_clients=2, round_timeout=5, clock=lambda: clock[0])
    update = _displacement(0.0001, 1)  # under the bound: not clipped
    _update(coordinator, 0, 1, update)
    _update(coordinator, 1, 1, update)
    clock[0] = 6
    with coordinator._cond:
        coordinator._on_deadline(coordinator._open)
    np.testing.assert_allclose(_flat(_model(coordinator, 1)), _flat(update) * 2 / 3, atol=1e-7)


def test_the_central_noise_has_the_stated_standard_deviation():
    noise, clip, clients = 1.5, 0.4, 3
    coordinator = _coordinator(num_clients=clients, noise=noise, clip=clip, seed=11)
    for cid in range(clients):
        _update(coordinator, cid, 1, dict(SERVED))  # no displacement: only the noise moves
    moved = _flat(_model(coordinator, 1))
    # 2100 coordinates: the sample standard deviation is within ~4.6 % (3 sigma).
    assert np.std(moved) == pytest.approx(noise * clip / clients, rel=0.05)


def test_the_budget_ends_training_before_a_round_that_would_exceed_it(tmp_path):
    noise, target = 3.0, 3.0
    delta = privacy.default_delta(3)
    mechanism = privacy.Mechanism(noise)
    affordable = max(k for k in range(1, 20) if mechanism.epsilon(k, delta) <= target)
    rounds = affordable + 3
    coordinator = _coordinator(rounds=rounds, noise=noise, target=target,
                               checkpoint_dir=str(tmp_path))
    for round_ in range(1, affordable + 1):
        for cid in range(3):
            _update(coordinator, cid, round_, _displacement(0.01, cid))
    status = coordinator.status()
    assert status.final_version == affordable and status.phase.value == "published"
    assert status.epsilon <= target < mechanism.epsilon(affordable + 1, delta)
    assert "privacy budget" in status.stopped
    with pytest.raises(TrainingFinished, match="privacy budget"):
        _update(coordinator, 0, affordable + 1, dict(SERVED))
    with pytest.raises(TrainingFinished):
        coordinator.wait_for_model(affordable + 1, 0.1)
    assert coordinator.final_model() is not None  # the last model is the final one

    # A restarted aggregator resumes the ledger from the checkpoint: no budget is reset.
    again = RoundCoordinator(3, rounds, privacy=RunPrivacy("client", noise, 1.0, 0.0, target,
                                                           3),
                             checkpoint_dir=str(tmp_path))
    again.restore(load_checkpoint(str(tmp_path), again.config))
    resumed = again.status()
    assert resumed.final_version == affordable and resumed.epsilon == status.epsilon
    assert resumed.phase.value == "published" and resumed.stopped == status.stopped


def test_a_restart_mid_run_keeps_the_rounds_already_released(tmp_path):
    coordinator = _coordinator(rounds=5, noise=1.0, checkpoint_dir=str(tmp_path))
    for round_ in (1, 2):
        for cid in range(3):
            _update(coordinator, cid, round_, _displacement(0.01, cid))
    again = RoundCoordinator(3, 5, privacy=RunPrivacy("client", 1.0, 1.0, 0.0, 0.0, 3),
                             checkpoint_dir=str(tmp_path))
    again.restore(load_checkpoint(str(tmp_path), again.config))
    assert again.privacy.rounds_released == 2
    assert again.status().epsilon == pytest.approx(
        privacy.Mechanism(1.0).epsilon(2, privacy.default_delta(3)))


def test_fedadam_runs_on_the_noised_average():
    coordinator = _coordinator(strategy=FedAdam())
    for cid in range(3):
        _update(coordinator, cid, 1, _displacement(0.01, cid))
    moved = _flat(_model(coordinator, 1))
    assert np.all(np.isfinite(moved)) and np.any(moved != 0)
    assert coordinator.strategy.name == "fedadam"


def _adaptive(tmp_path=None, clients=20, quantile=0.5, clip=0.1, seed=5):
    ledger = RunPrivacy("client", 1.0, clip, 0.0, 0.0, clients, clip_quantile=quantile,
                        noise_seed=seed)
    coordinator = RoundCoordinator(clients, 40, privacy=ledger,
                                   checkpoint_dir=str(tmp_path) if tmp_path else None)
    coordinator.submit_init(wire.Message(dict(SERVED), {wire.META_CLIENT_ID: "0"}))
    return coordinator


def _round_with_norms(coordinator, round_, norms):
    served = wire.decode(coordinator.wait_for_model(round_ - 1, 1)).tensors
    for cid, norm in enumerate(norms):
        direction = _displacement(1.0, cid)
        scale = norm / np.linalg.norm(_flat(direction))
        _update(coordinator, cid, round_, {
            n: (served[n] + direction[n] * scale).astype(np.float32) for n in served})


def test_adaptive_clipping_moves_the_clip_norm_to_the_target_quantile():
    coordinator = _adaptive()
    norms = np.linspace(0.5, 1.5, 20)  # median 1.0
    for round_ in range(1, 31):
        _round_with_norms(coordinator, round_, norms)
    # From 0.1, geometric steps of at most exp(0.1) reach the median in ~25 rounds.
    assert coordinator.strategy.clip_norm == pytest.approx(1.0, abs=0.25)
    assert coordinator.history[-1].privacy["clip_norm"] == coordinator.strategy.last_clip_norm


def test_adaptive_clipping_raises_the_sums_noise_so_the_privacy_is_unchanged():
    # 20 clients: count noise sigma_b = 1, so z_sum = (1 - 1/4)^-1/2 for z = 1.
    assert privacy.adaptive_sum_noise(1.0, 20) == pytest.approx(1 / np.sqrt(0.75))
    coordinator = _adaptive(clip=0.5, seed=9)
    for cid in range(20):
        _update(coordinator, cid, 1, dict(SERVED))
    moved = _flat(_model(coordinator, 1))
    assert np.std(moved) == pytest.approx(0.5 / np.sqrt(0.75) / 20, rel=0.05)
    with pytest.raises(ValueError, match="needs more than 10 clients"):
        privacy.adaptive_sum_noise(1.0, 10)


def test_the_adapted_clip_norm_survives_a_restart(tmp_path):
    coordinator = _adaptive(tmp_path)
    for round_ in (1, 2, 3):
        _round_with_norms(coordinator, round_, np.full(20, 2.0))
    adapted = coordinator.strategy.clip_norm
    assert adapted > 0.1
    again = RoundCoordinator(20, 40, privacy=RunPrivacy("client", 1.0, 0.1, 0.0, 0.0, 20,
                                                        clip_quantile=0.5),
                             checkpoint_dir=str(tmp_path))
    again.restore(load_checkpoint(str(tmp_path), again.config))
    assert again.strategy.clip_norm == adapted


@pytest.mark.parametrize(("values", "message"), [
    ({"dp": "example"}, "dp_clip_quantile needs dp=client without secure_aggregation"),
    ({"secure_aggregation": "secagg"}, "needs dp=client without secure_aggregation"),
    ({"num_clients": 5}, "needs more than 10 clients"),
    ({"dp_clip_quantile": 1.0}, "dp_clip_quantile must be in [0, 1)"),
])
def test_adaptive_clipping_refusals(values, message):
    from contract.settings import problems
    from server_component.settings import AggregatorConfig

    settings = {"dp": "client", "dp_clip_quantile": 0.5, "dp_noise_multiplier": 1.0,
                "num_clients": 20, "secure_aggregation": "off", "rounds": 5, "dp_delta": 0.0,
                "dp_target_epsilon": 0.0, **values}
    assert any(message in p for p in problems(AggregatorConfig, settings)), problems(
        AggregatorConfig, settings)


def test_an_example_level_ledger_is_rebuilt_from_the_round_records():
    from server_component.checkpoint import RoundRecord

    ledger = RunPrivacy("example", 0.0, 1.0, 0.0, 8.0, 2)  # sites calibrate their noise
    for cid, (steps, eps, sigma) in enumerate(((40, 2.5, 0.9), (30, 3.1, 1.2))):
        ledger.note_update(cid, {"steps": steps, "epsilon": eps, "delta": 1e-5,
                                 "exhausted": 0.0, "noise_multiplier": sigma})
    record = RoundRecord(1, [0, 1], 20, {}, 1.0, privacy=ledger.close_round(1, 5))
    again = RunPrivacy("example", 0.0, 1.0, 0.0, 8.0, 2)
    again.restore([record])
    assert again.client_steps == {0: 40, 1: 30}
    assert again.epsilon == 3.1 and again.reported_delta == 1e-5
    assert again.reported_noise == 0.9  # not the setting's 0


def test_with_client_sampling_the_accountant_credits_the_real_sampling_rate():
    import dp_accounting
    from dp_accounting import rdp

    from contract.sampling import ClientSampling

    sampling = ClientSampling(10, 0.3, poisson=True)
    coordinator = _coordinator(num_clients=10, rounds=50, noise=1.0, sampling=sampling)
    ledger = coordinator.privacy
    assert ledger.sampling_rate == 0.3
    ledger.rounds_released = 20
    accountant = rdp.RdpAccountant(list(privacy.rdp_orders()))
    accountant.compose(dp_accounting.PoissonSampledDpEvent(
        0.3, dp_accounting.GaussianDpEvent(1.0)), 20)
    assert ledger.epsilon == pytest.approx(accountant.get_epsilon(ledger.delta), rel=1e-9)
    everyone = RunPrivacy("client", 1.0, 1.0, ledger.delta, 0.0, 10, rounds_released=20)
    assert ledger.epsilon < everyone.epsilon  # amplification by sampling


def test_sampled_rounds_divide_by_the_expected_number_of_clients_and_may_be_empty():
    from contract.sampling import ClientSampling

    sampling = ClientSampling(4, 0.5, poisson=True)
    coordinator = _coordinator(num_clients=4, rounds=200, noise=1e-9, sampling=sampling)
    step = _displacement(0.0001, 1)  # under the clip bound: not clipped
    checked = 0
    # Until a round was empty and five rounds were checked: P(no empty round in 200) ~ 3e-6.
    while not any(not r.selected for r in coordinator.history) or checked < 5:
        status = coordinator.status()  # an empty round closed as it opened: never open
        round_, selected = status.round, status.selected
        assert selected
        before = _model(coordinator, round_ - 1)
        for cid in selected:
            _update(coordinator, cid, round_, {n: before[n] + step[n] for n in SERVED})
        if coordinator.status().round != round_ + 1:
            continue  # the next round was empty and closed at once: our model is superseded
        checked += 1
        moved = _flat(_model(coordinator, round_)) - _flat(before)
        # DP-FedAvg's fixed denominator: q N = 2 expected clients, whoever came.
        np.testing.assert_allclose(moved, _flat(step) * len(selected) / 2.0, atol=1e-6)
    empty = [r for r in coordinator.history if not r.selected]
    assert empty and all(r.client_ids == [] and r.privacy["rounds"] == r.round
                         for r in empty)  # released (noise only) and accounted
