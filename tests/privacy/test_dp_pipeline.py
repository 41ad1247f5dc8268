"""The compiled pipeline in the local runner with example-level DP and a budget: the sites train
with DP-SGD, the budget ends training early, and the run says so where users look (the
Metrics artifact, the round table, the HTML report, the aggregator's log) without failing."""

import csv
import json

import pytest

from tests.pipeline.test_local_run import start_local_run

ROUNDS, TARGET = 8, 8.0


@pytest.mark.slow
@pytest.mark.reliability(
    scenario="dp=example with dp_target_epsilon=8 over 8 rounds (compiled YAML, 3 clients)",
    expected="training ends after the last round the budget allows; the run succeeds; ε ≤ 8 "
             "in the Metrics artifact, round table and report")
def test_a_private_run_stops_at_its_budget_and_reports_epsilon(tmp_path, observe):
    proc = start_local_run(tmp_path, "--arg", "num_clients=3", "--arg", f"rounds={ROUNDS}",
                           "--arg", "dp=example", "--arg", "dp_noise_multiplier=1.2",
                           "--arg", f"dp_target_epsilon={TARGET}",
                           "--arg", "logit_adjustment=none")
    output = proc.stdout.read()
    assert proc.wait(timeout=600) == 0, output[-5000:]
    [run_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    aggregator = run_dir / "aggregator"
    metrics = json.loads((aggregator / "metrics").read_text())
    final = int(metrics["dp_final_version"])
    assert 1 <= final < ROUNDS, metrics
    assert 0 < metrics["dp_epsilon"] <= TARGET and metrics["dp_delta"] <= 1e-5
    assert metrics["dp_noise_multiplier"] == 1.2 and metrics["dp_steps"] > 0
    rows = list(csv.DictReader((aggregator / "round_metrics").open()))
    assert [int(r["round"]) for r in rows] == list(range(1, final + 1))
    epsilons = [float(r["epsilon"]) for r in rows]
    assert epsilons == sorted(epsilons) and epsilons[-1] <= TARGET
    per_client = list(csv.DictReader((aggregator / "client_metrics").open()))
    assert all(float(r["epsilon"]) <= TARGET for r in per_client if r["round"] != "final")
    report = (aggregator / "report.html").read_text()
    assert "Privacy" in report and "Training ended early" in report
    log = (run_dir / "logs" / "aggregator.log").read_text()
    assert "event=privacy_budget_reached" in log
    assert "dp=example steps=" in (run_dir / "logs" / "client-0.log").read_text()
    assert metrics["test_auc"] > 0.8
    observe(f"stopped after round {final} of {ROUNDS} at ε={metrics['dp_epsilon']:.3f}; "
            f"test AUC {metrics['test_auc']:.4f}")
