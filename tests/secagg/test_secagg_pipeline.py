"""The compiled pipeline in the local runner with ``secure_aggregation=secagg``: five clients,
one killed mid-run (the compiled retry policy restarts it), ``min_clients`` 4; the run
succeeds and its final model's test AUC is within 0.005 of the same run in the clear."""

import csv
import json
import re
import subprocess

import pytest

from tests.pipeline.test_local_run import start_local_run

ROUNDS = 6
SCENARIO = ("--arg", "num_clients=5", "--arg", f"rounds={ROUNDS}", "--arg", "min_clients=4",
            "--arg", "round_timeout=6")


def _run_with_a_client_killed(runs_dir, *args):
    """Kill client 4 once round 1 has closed; the run's exit status, its directory, the
    rounds' participants and its final metrics."""
    proc = start_local_run(runs_dir, *SCENARIO, *args)
    output, killed = [], False
    for line in proc.stdout:
        output.append(line)
        if not killed and re.search(rf"\[aggregator\] round=1/{ROUNDS} ", line):
            pattern = f"kfp.dsl.executor_main.*{runs_dir}/.*/client-4/"
            assert subprocess.run(["pkill", "-9", "-f", pattern]).returncode == 0, \
                "no client-4 process to kill"
            killed = True
    status = proc.wait(timeout=600)
    [run_dir] = [p for p in runs_dir.iterdir() if p.is_dir()]
    rows = list(csv.DictReader((run_dir / "aggregator" / "round_metrics").open()))
    metrics = json.loads((run_dir / "aggregator" / "metrics").read_text()) if status == 0 \
        else {}
    return status, "".join(output), run_dir, rows, metrics


@pytest.mark.slow
@pytest.mark.reliability(
    scenario="secure aggregation, a client killed (-9) mid-run, min_clients 4 (compiled YAML)",
    expected="a round it misses closes with the other 4 at the deadline, it rejoins after its "
             "retry; the run succeeds; test AUC within 0.005 of the same run in the clear")
def test_a_secure_run_with_a_client_killed_matches_the_plain_run(tmp_path, observe):
    (tmp_path / "secure").mkdir()
    (tmp_path / "plain").mkdir()
    status, output, run_dir, rows, secure = _run_with_a_client_killed(
        tmp_path / "secure", "--arg", "secure_aggregation=secagg")
    assert status == 0, output[-5000:]
    assert "event=secagg_unmasked" in (run_dir / "logs" / "aggregator.log").read_text()
    short = [r["round"] for r in rows if r["clients"] == "4"]
    # Whether the retry misses a round depends on how fast it restarts (TensorFlow's import
    # against the 6 s deadline): a round it missed closed without it, and only without it.
    assert all(r["missing"] == "4" for r in rows if r["clients"] == "4"), rows
    assert all(r["clients"] in ("4", "5") for r in rows), rows
    assert "# attempt 2" in (run_dir / "logs" / "client-4.log").read_text()
    status, output, _, plain_rows, plain = _run_with_a_client_killed(tmp_path / "plain")
    assert status == 0, output[-5000:]
    assert abs(secure["test_auc"] - plain["test_auc"]) <= 0.005
    observe(f"rounds with 4 clients: {short}; test AUC secure {secure['test_auc']:.4f} vs "
            f"plain {plain['test_auc']:.4f}")
