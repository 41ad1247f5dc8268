"""Benchmarks in a tiny configuration: they run end to end (CI does not assert timings)."""

import subprocess
import sys

import pytest

from bench.multilabel_files import write_chestmnist
from client_component.datasets.npz import CHESTMNIST_LABELS
from tests.support.paths import REPO_ROOT


@pytest.mark.slow
def test_bench_memory_smoke():
    result = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--clients-list", "2,4", "--params", "20000",
         "--rounds", "1"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("memory: P=20000 ")
    assert "fedavg_peak_mib=2:" in summary and "median_growth=" in summary


@pytest.mark.slow
def test_bench_quality_smoke_on_multi_label_data_through_real_processes(tmp_path):
    """The plain quality bench on a written ChestMNIST-layout file (breast_cancer runs in the
    sampling and DP smokes): both summary lines, the multi-label one with every finding."""
    data = write_chestmnist(tmp_path / "chestmnist.npz", train=200, val=40, test=100)
    out, (quality,) = _summary(["bench.quality", "--data", str(data), "--clients", "2",
                                "--rounds", "2", "--width", "8"], "quality:")
    assert set(quality) == {"federated_auc", "federated_acc", "centralized_auc",
                            "centralized_acc", "gap_auc"}
    [line] = [x for x in out.splitlines() if x.startswith("quality_multilabel:")]
    values = dict(p.split("=", 1) for p in line.split()[1:])
    assert values["labels"] == "14" and values["data"] == "chestmnist"
    assert float(values["macro_auc"]) == float(quality["federated_auc"]) > 0.5
    assert [p.split(":")[0] for p in values["per_label"].split(",")] == sorted(
        CHESTMNIST_LABELS)


def _summary(args, prefix, timeout=600):
    result = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith(prefix)]
    assert lines, result.stdout
    return result.stdout, [dict(p.split("=", 1) for p in line.split()[1:]) for line in lines]


@pytest.mark.slow
def test_bench_transport_smoke_runs_every_design_it_can():
    out, summaries = _summary(
        ["bench.transport", "--clients", "2", "--params", "20000", "--rounds", "1",
         "--baseline-rounds", "1", "--designs", "ours,ours-f16,seed,floor"], "transport:")
    (values,) = summaries
    assert values["N"] == "2" and values["P"] == "20000"
    for key in ("ours", "seed_design", "floor"):
        assert values[key].endswith("s") and float(values[key][:-1]) > 0
    assert float(values["speedup_vs_seed"]) > 1  # the seed design sleep-polls for 1 s
    assert values["flower"] == "skipped"  # not asked for
    assert "ours (float16 updates)" in out


@pytest.mark.slow
def test_bench_transport_smoke_compares_secure_with_plain_aggregation():
    _, summaries = _summary(
        ["bench.transport", "--clients", "3", "--params", "20000", "--rounds", "1",
         "--designs", "ours,ours-secagg"], "transport_secagg:")
    (values,) = summaries
    assert values["N"] == "3" and values["P"] == "20000"
    assert float(values["overhead"]) > 0 and float(values["secure_peak_mib"]) > 0


@pytest.mark.slow
def test_bench_training_smoke_compares_the_fl_client_with_plain_keras():
    out, (values,) = _summary(["bench.training", "--data", "breast_cancer", "--rounds", "2"],
                              "training:")
    assert float(values["fl_vs_plain"]) > 0
    assert 0 <= float(values["fl_round_overhead"]) < 1
    [dp_line] = [line for line in out.splitlines() if line.startswith("training_dp: ")]
    dp = dict(p.split("=", 1) for p in dp_line.split()[1:])
    assert float(dp["dp_vs_plain"]) > 0 and float(dp["dp_examples_per_s"]) > 0


@pytest.mark.slow
def test_bench_scale_smoke_completes_with_no_error():
    _, (values,) = _summary(["bench.scale", "--clients", "4", "--rounds", "2"], "scale:")
    assert values["completed"] == "yes" and values["errors"] == "0"


@pytest.mark.slow
def test_bench_quality_sweep_smoke_through_real_processes():
    """The sweep's small CI grid: two alphas (one the hard 0.1), FedAvg and FedAvgM, every
    run through a real aggregator and real client processes (one client count: the suite's
    time budget)."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.quality", "--sweep", "--data", "breast_cancer",
         "--alphas", "0.1,0.5", "--clients-list", "2", "--seeds", "1", "--rounds", "2",
         "--learning-rate", "0.01", "--strategies", "fedavg,fedavgm"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    runs = [line for line in lines if line.startswith("sweep_run: ")]
    assert len(runs) == 2 * 1 * 2
    summaries = [line for line in lines if line.startswith("quality_sweep: ")]
    assert [line.split()[1] for line in summaries] == ["strategy=fedavg", "strategy=fedavgm"]
    values = dict(part.split("=") for part in summaries[0].split()[1:] if "=" in part)
    assert {"runs", "worst_auc", "median_gap", "worst_auc_alpha_0.1", "median_auc_alpha_0.1",
            "centralized_median"} <= set(values)
    assert values["runs"] == "2" and 0.5 < float(values["centralized_median"]) <= 1.0


@pytest.mark.slow
def test_a_failing_pooled_client_fails_the_run_at_once_with_its_traceback(tmp_path):
    from bench.client_pool import ClientPool, ClientRunFailed

    stopped = []
    job = {"server": "http://127.0.0.1:9", "client_id": 0, "num_clients": 1, "rounds": 1,
           "dataset": "npz", "data_uri": str(tmp_path / "none.npz"), "connect_timeout_s": 1.0}
    with ClientPool(1) as pool, pytest.raises(ClientRunFailed, match="none.npz"):
        pool.run([job], timeout_s=120, on_failure=lambda: stopped.append(True))
    assert stopped == [True]


@pytest.mark.slow
def test_bench_quality_dp_smoke_through_real_processes():
    result = subprocess.run(
        [sys.executable, "-m", "bench.quality", "--data", "breast_cancer", "--clients", "2",
         "--rounds", "2", "--dp", "3", "--dp-partitions", "iid"], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("quality_dp: data=breast_cancer partition=iid clients=2 "
                              "epsilon=3 delta=1e-05 ")
    values = dict(part.split("=") for part in summary.split()[1:])
    assert float(values["noise_multiplier"]) > 0.3
    assert 0.5 < float(values["auc"]) <= 1 and float(values["nonprivate_auc"]) > 0.8


@pytest.mark.slow
def test_bench_quality_sampling_smoke_through_real_processes():
    result = subprocess.run(
        [sys.executable, "-m", "bench.quality", "--data", "breast_cancer", "--clients", "2",
         "--rounds", "1", "--fraction-fit", "0.5"], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("quality_sampling: data=breast_cancer partition=iid clients=2 "
                              "rounds=1 fraction_fit=0.5 clients_per_round=1 ")
    values = dict(part.split("=") for part in summary.split()[1:])
    assert (values["client_rounds"], values["full_client_rounds"]) == ("1", "2")
    assert 0.5 < float(values["auc"]) <= 1 and 0.5 < float(values["full_auc"]) <= 1
