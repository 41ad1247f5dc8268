"""The accountant (contract.privacy): its ε against dp-accounting used directly and against the
textbook value, the budget's arithmetic, and the settings it refuses."""

import subprocess
import sys

import dp_accounting
import pytest
from dp_accounting import pld, rdp

from client_component.settings import ClientConfig
from contract import privacy
from contract.settings import problems
from server_component.settings import AggregatorConfig

ABADI = dict(sampling_rate=0.01, noise_multiplier=4.0, steps=10_000, delta=1e-5)


def test_epsilon_equals_dp_accounting_used_directly():
    event = dp_accounting.PoissonSampledDpEvent(0.004, dp_accounting.GaussianDpEvent(1.1))
    accountant = rdp.RdpAccountant(list(privacy.rdp_orders()))
    accountant.compose(event, 14_062)
    ours = privacy.Mechanism(1.1, 0.004).epsilon(14_062, 1e-5)
    assert ours == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-12)
    # Whole orders only: within 1 % of dp-accounting's full default set.
    full = rdp.RdpAccountant()
    full.compose(event, 14_062)
    assert full.get_epsilon(1e-5) <= ours <= 1.01 * full.get_epsilon(1e-5)


def test_abadi_et_al_mnist_setting_is_within_the_papers_bound():
    """Abadi et al. 2016, section 3.1: q = 0.01, sigma = 4, delta = 1e-5, T = 10000 steps gives
    epsilon ~ 1.26 with the moments accountant (9.34 with strong composition). The RDP
    accountant is a tighter upper bound: at most the paper's figure, at least the near-exact
    PLD accountant's."""
    mechanism = privacy.Mechanism(ABADI["noise_multiplier"], ABADI["sampling_rate"])
    ours = mechanism.epsilon(ABADI["steps"], ABADI["delta"])
    exact = pld.PLDAccountant()
    exact.compose(mechanism.event(), ABADI["steps"])
    assert exact.get_epsilon(ABADI["delta"]) - 1e-3 <= ours <= 1.26
    assert ours == pytest.approx(1.035, abs=0.01)


def test_client_level_rounds_are_unsampled_gaussians():
    mechanism = privacy.Mechanism(1.0)
    assert isinstance(mechanism.event(), dp_accounting.GaussianDpEvent)
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(1.0), 5)
    assert mechanism.epsilon(5, 1e-5) == pytest.approx(accountant.get_epsilon(1e-5))


def test_releases_within_is_the_largest_count_under_the_target():
    mechanism, delta = privacy.Mechanism(1.0, 0.02), 1e-5
    allowed = mechanism.releases_within(2.0, delta, spent=100, wanted=5000)
    assert 0 < allowed < 5000
    assert mechanism.epsilon(100 + allowed, delta) <= 2.0 < mechanism.epsilon(
        101 + allowed, delta)
    assert mechanism.releases_within(0.0, delta, 0, 7) == 7  # no budget


def test_budget_is_exhausted_before_a_round_that_would_exceed_it():
    budget = privacy.PrivacyBudget(privacy.Mechanism(1.0, 0.05), 1e-5, target_epsilon=3.0)
    rounds = 0
    while not budget.exhausted:
        steps = budget.allow(100)
        budget.spend(steps, next_round=100)
        rounds += 1
        assert budget.epsilon <= 3.0
        assert rounds < 1000
    assert budget.mechanism.epsilon(budget.spent + 100, 1e-5) > 3.0
    report = budget.report()
    assert report["exhausted"] == 1.0 and report["steps"] == budget.spent


def test_restore_never_lowers_the_spent_steps():
    budget = privacy.PrivacyBudget(privacy.Mechanism(1.0, 0.05), 1e-5)
    budget.restore(40)
    budget.restore(10)
    assert budget.spent == 40


def test_default_delta_is_below_one_over_the_units():
    assert privacy.default_delta(1000) == 1e-5
    assert privacy.default_delta(1_000_000) == pytest.approx(1e-7)


BAD = [
    ({"dp_noise_multiplier": -1.0}, "dp_noise_multiplier must be at least 0"),
    ({"dp_clip_norm": 0.0}, "dp_clip_norm must be greater than 0"),
    ({"dp_delta": 1.0}, "dp_delta must be in [0, 1)"),
    ({"dp": "off", "dp_target_epsilon": 3.0}, "dp_target_epsilon needs dp=example or client"),
    ({"dp_noise_multiplier": 0.0}, "needs dp_noise_multiplier > 0"),
    ({"dp": "laplace"}, "dp 'laplace' is not accepted"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
@pytest.mark.parametrize("config", [AggregatorConfig, ClientConfig])
def test_bad_dp_settings_are_refused_in_both_configs(config, change, message):
    values = {"dp": "example", "dp_noise_multiplier": 1.0, "dp_clip_norm": 1.0,
              "dp_delta": 0.0, "dp_target_epsilon": 0.0, "num_clients": 3,
              "logit_adjustment": "none", "class_weights": "none", "strategy": "fedavg",
              **change}
    found = problems(config, values)
    assert any(message in p for p in found), found


def test_client_level_budget_below_one_round_is_refused_at_start():
    values = {"dp": "client", "dp_noise_multiplier": 0.5, "dp_clip_norm": 1.0, "dp_delta": 0.0,
              "dp_target_epsilon": 0.5, "num_clients": 5, "strategy": "fedavg"}
    [problem] = problems(AggregatorConfig, values)
    assert "below one round's ε" in problem


def test_dp_example_refuses_losses_built_from_label_counts():
    values = {"dp": "example", "dp_noise_multiplier": 1.0, "dp_clip_norm": 1.0,
              "dp_delta": 0.0, "dp_target_epsilon": 0.0, "logit_adjustment": "prior",
              "class_weights": "none"}
    [problem] = problems(ClientConfig, values)
    assert "logit_adjustment=none" in problem


def test_client_level_dp_refuses_strategies_that_need_each_update():
    values = {"dp": "client", "strategy": "median"}
    [problem] = problems(AggregatorConfig, values)
    assert "strategy=median cannot work on clipped, noised updates" in problem


@pytest.mark.parametrize("module", ["server_component", "client_component"])
def test_the_command_line_refuses_bad_dp_in_one_line(module):
    args = ["--num-clients", "2", "--rounds", "1", "--dp", "example",
            "--dp-noise-multiplier", "-1"]
    if module == "client_component":
        args += ["--server", "http://127.0.0.1:1", "--client-id", "0",
                 "--logit-adjustment", "none"]
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "--dp-noise-multiplier must be at least 0" in errors[0], errors
    assert done.stderr.rstrip().endswith(errors[0])  # argparse: usage, then the one line


def test_calibrated_noise_spends_the_target_exactly():
    sigma = privacy.calibrate(0.04, 250, 8.0, 1e-5)
    assert privacy.Mechanism(sigma, 0.04).epsilon(250, 1e-5) <= 8.0
    assert privacy.Mechanism(sigma * 0.995, 0.04).epsilon(250, 1e-5) > 8.0


def test_noise_zero_with_a_target_means_calibrated():
    values = {"dp": "client", "dp_noise_multiplier": 0.0, "dp_clip_norm": 1.0, "dp_delta": 0.0,
              "dp_target_epsilon": 4.0, "num_clients": 5, "rounds": 10, "strategy": "fedavg"}
    assert problems(AggregatorConfig, values) == []
    sigma = privacy.client_noise(values)
    delta = privacy.default_delta(5)
    assert privacy.Mechanism(sigma).epsilon(10, delta) <= 4.0 < privacy.Mechanism(
        sigma * 0.99).epsilon(10, delta)
    without_target = {**values, "dp_target_epsilon": 0.0}
    assert any("or 0 with dp_target_epsilon" in p
               for p in problems(AggregatorConfig, without_target))
