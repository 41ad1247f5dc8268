"""The local runner executing the compiled YAML end to end: real processes, real training."""

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from components.runtime import TENSORFLOW_IMAGE
from contract import wire
from tests.server.test_report import check_in_browser
from tests.support.paths import REPO_ROOT

PIPELINE = REPO_ROOT / "compiled" / "fl_pipeline.yaml"


def local_run(runs_dir, *args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "pipelines.local_run", "--pipeline", str(PIPELINE),
         "--runs-dir", str(runs_dir), *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def start_local_run(runs_dir, *args) -> subprocess.Popen:
    """A local run whose output a test reads line by line (to kill a task mid-run)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.local_run", "--pipeline", str(PIPELINE),
         "--runs-dir", str(runs_dir), *args],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def check_artifacts_as_the_kfp_ui_reads_them(task_dir, clients, rounds, tmp_path):
    # Metrics: a flat JSON object of numbers (the UI's scalar metrics table).
    metrics = json.loads((task_dir / "metrics").read_text())
    assert all(isinstance(v, int | float) for v in metrics.values())
    assert {"rounds_completed", "clients_completed", "wall_time_s", "bytes_exchanged",
            "test_loss", "test_accuracy", "test_auc", "test_sensitivity",
            "test_specificity"} <= set(metrics)
    assert metrics["clients_completed"] == clients and metrics["bytes_exchanged"] > 0
    # ClassificationMetrics: the confusion matrix and ROC structures the UI draws.
    classification = json.loads((task_dir / "classification").read_text())
    matrix = classification["confusionMatrix"]
    assert [a["displayName"] for a in matrix["annotationSpecs"]] == ["0", "1"]
    cells = [row["row"] for row in matrix["rows"]]
    assert len(cells) == 2 and all(len(row) == 2 for row in cells)
    roc = classification["confidenceMetrics"]
    assert len(roc) == 101 and set(roc[0]) == {"confidenceThreshold", "recall",
                                               "falsePositiveRate"}
    assert (roc[0]["recall"], roc[-1]["recall"]) == (0.0, 1.0)
    # Dataset: per client and round, then each client's final evaluation.
    table = pd.read_csv(task_dir / "client_metrics")
    assert len(table) == clients * rounds + clients
    final = table[table["round"] == "final"]
    assert sorted(final["client_id"]) == list(range(clients))
    assert sum(map(sum, cells)) == final["examples"].sum()  # every test example counted once
    # Model: the weights, and metadata the UI lists beside them.
    model_dir = task_dir / "final_model"
    assert (model_dir / "final_weights.safetensors").is_file()
    metadata = json.loads((task_dir / "final_model.metadata.json").read_text())
    assert metadata["rounds"] == rounds and metadata["clients"] == clients
    assert metadata["framework"].startswith("tensorflow ")
    # export-model: a .keras file holding exactly the final weights.
    import keras

    exported = keras.models.load_model(task_dir.parent / "export-model" / "keras_model" /
                                       "model.keras")
    final = wire.tensors_to_list(wire.decode(
        (model_dir / "final_weights.safetensors").read_bytes()).tensors)
    assert len(exported.get_weights()) == len(final)
    for got, want in zip(exported.get_weights(), final, strict=True):
        np.testing.assert_array_equal(got, want)
    # HTML: opens in a browser and shows the plots.
    check_in_browser(task_dir / "report.html", tmp_path)


@pytest.mark.slow
def test_three_clients_two_rounds_end_to_end(tmp_path):
    # On GPU nodes: no GPU here, so the pod spec the driver would build asks for two and the
    # clients train on the CPU, saying so (with the -gpu image on a GPU node: GPU:0).
    result = local_run(tmp_path, "--arg", "num_clients=3", "--arg", "rounds=2",
                       "--arg", "client_accelerator_type=nvidia.com/gpu",
                       "--arg", "client_accelerator_count=2",
                       "--arg", "client_cpu_request=500m", "--arg", "client_memory_request=3Gi")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "round=1/2 clients=3" in out and "round=2/2 clients=3" in out
    assert "would create Service fl-" in out and "would delete Service fl-" in out
    [run_dir] = list(tmp_path.iterdir())
    # The aggregator checkpointed into the directory standing in for the run's PVC.
    [checkpoint] = (run_dir / "volumes").glob("fl-*-checkpoint/checkpoint.safetensors")
    assert wire.read_metadata(checkpoint.read_bytes())["version"] == "2"
    model = wire.decode((run_dir / "aggregator" / "final_model" / "final_weights.safetensors")
                        .read_bytes())
    assert model.metadata["round"] == "2" and len(model.tensors) == 6
    rows = list(csv.DictReader((run_dir / "aggregator" / "round_metrics").open()))
    assert [(r["round"], r["clients"]) for r in rows] == [("1", "3"), ("2", "3")]
    metrics = json.loads((run_dir / "aggregator" / "metrics").read_text())
    assert metrics["rounds_completed"] == 2 and metrics["test_accuracy"] > 0.8
    check_artifacts_as_the_kfp_ui_reads_them(run_dir / "aggregator", clients=3, rounds=2,
                                             tmp_path=tmp_path)
    logs = {p.name for p in (run_dir / "logs").iterdir()}
    assert {"aggregator.log", "client-0.log", "client-1.log", "client-2.log",
            "client-credentials.log"} <= logs
    assert f"outputs in {run_dir}/" in out
    # What each pod would ask for (KFP driver rules), and the devices TensorFlow used.
    for client in ("client-0", "client-1", "client-2"):
        log = (run_dir / "logs" / f"{client}.log").read_text()
        assert log.startswith(f"# pod: image {TENSORFLOW_IMAGE}; requests cpu=500m "
                              "memory=3Gi; limits nvidia.com/gpu=2\n"), log[:200]
        assert "TensorFlow devices: CPU:0 (training on CPU)" in log
    assert (run_dir / "logs" / "aggregator.log").read_text().startswith(
        "# pod: image python:3.11-slim; requests cpu=500m memory=1Gi; limits none\n")


@pytest.mark.slow
@pytest.mark.reliability(
    scenario="a client's data is unreadable on every attempt (local runner, compiled YAML)",
    expected="retries exhausted (1 + 2): the run fails naming the client and the reason; "
             "the exit task tears down; no process left behind")
def test_a_failing_client_stops_the_run_and_the_exit_task_still_runs(tmp_path, observe):
    # The path exists (argument checks pass) but is no .npz: the clients fail at run time.
    corrupt = tmp_path.parent / f"{tmp_path.name}-corrupt.npz"
    corrupt.write_bytes(b"not a zip archive")
    result = local_run(tmp_path, "--arg", "num_clients=2", "--arg", "rounds=1",
                       "--arg", "dataset=npz", "--arg", f"data_uri={corrupt}")
    assert result.returncode == 1
    assert "FAILED: task client-" in result.stdout
    assert f"{corrupt}: not a readable .npz file" in result.stdout
    assert "Traceback" not in result.stderr
    assert "would delete Service fl-" in result.stdout  # teardown ran after the failure
    [run_dir] = list(tmp_path.iterdir())
    attempts = (run_dir / "logs" / "client-0.log").read_text().count("# attempt")
    assert attempts == 3  # the compiled retry policy: 1 try + 2 retries
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout == "", "the aggregator or a client outlived the failed run"
    [failed] = [line for line in result.stdout.splitlines() if "FAILED: task client-" in line]
    observe(f"exit 1, {attempts} attempts; {failed.split('; log')[0].strip()}; "
            f"'{corrupt.name}: not a readable .npz file'; teardown ran; no orphans")


@pytest.mark.parametrize("args, message", [
    (["--arg", "num_clients=abc"], "parameter num_clients='abc' is not a NUMBER_INTEGER"),
    (["--arg", "clients=3"], "unknown pipeline parameter(s) ['clients']"),
    (["--arg", "rounds"], "--arg expects NAME=VALUE"),
])
def test_bad_arguments_fail_before_anything_starts(tmp_path, args, message):
    result = local_run(tmp_path, *args, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.reliability(
    scenario="aggregator killed (-9) after round 2 (local runner, compiled YAML)",
    expected="KFP's retry restarts it; it resumes from the checkpoint on the run's volume; "
             "rounds 1-6 each closed once; the run succeeds")
def test_aggregator_killed_mid_run_is_retried_and_resumes_from_its_volume(tmp_path, observe):
    """kill -9 the aggregator after round 2: the compiled retry policy restarts it, it resumes
    from the checkpoint on the run's volume, clients resync, and no round is lost or run twice."""
    proc = start_local_run(tmp_path, "--arg", "num_clients=3", "--arg", "rounds=6")
    output = []
    for line in proc.stdout:
        output.append(line)
        if "round=2/6" in line:
            pattern = f"kfp.dsl.executor_main.*{tmp_path}.*function_to_execute aggregator"
            killed = subprocess.run(["pkill", "-9", "-f", pattern])
            assert killed.returncode == 0, "no aggregator process to kill"
    assert proc.wait(timeout=600) == 0, "".join(output)
    [run_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    log = (run_dir / "logs" / "aggregator.log").read_text()
    assert "# attempt 2" in log and "event=resumed version=" in log
    rows = list(csv.DictReader((run_dir / "aggregator" / "round_metrics").open()))
    assert [r["round"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    [resumed] = re.findall(r"event=resumed version=\d+ rounds_closed=\d+", log)
    observe(f"attempt 2 logged '{resumed}'; rounds closed: {[int(r['round']) for r in rows]}")


@pytest.mark.slow
@pytest.mark.reliability(
    scenario="a client killed (-9) mid-run (local runner, compiled YAML)",
    expected="KFP's retry restarts it; it rejoins at the current round; every round closes "
             "with every client; the run succeeds")
def test_a_client_killed_mid_run_is_retried_and_rejoins(tmp_path, observe):
    rounds = 12
    proc = start_local_run(tmp_path, "--arg", "num_clients=3", "--arg", f"rounds={rounds}")
    output, killed_after = [], None
    for line in proc.stdout:
        output.append(line)
        closed = re.search(rf"\[aggregator\] round=(\d+)/{rounds} ", line)
        if closed and killed_after is None:
            pattern = f"kfp.dsl.executor_main.*{tmp_path}/.*/client-1/"
            assert subprocess.run(["pkill", "-9", "-f", pattern]).returncode == 0, \
                "no client-1 process to kill"
            killed_after = int(closed.group(1))
    assert proc.wait(timeout=600) == 0, "".join(output)
    [run_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    log = (run_dir / "logs" / "client-1.log").read_text()
    assert "# attempt 2" in log
    rejoined = re.findall(rf"client=1 round=(\d+)/{rounds} ", log.split("# attempt 2")[1])
    assert rejoined and int(rejoined[0]) > killed_after, log[-3000:]
    rows = list(csv.DictReader((run_dir / "aggregator" / "round_metrics").open()))
    assert [(r["round"], r["clients"]) for r in rows] == \
        [(str(r), "3") for r in range(1, rounds + 1)]
    observe(f"killed after round {killed_after} closed; attempt 2 trained from round "
            f"{rejoined[0]} on; all {rounds} rounds closed with 3 clients")
