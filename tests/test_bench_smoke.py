"""Benchmarks in a tiny configuration: they run end to end (CI does not assert timings)."""

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


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
def test_bench_quality_smoke_through_real_processes():
    result = subprocess.run(
        [sys.executable, "-m", "bench.quality", "--data", "breast_cancer", "--clients", "2",
         "--rounds", "2", "--learning-rate", "0.01"], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("quality: federated_auc=")
    values = dict(part.split("=") for part in summary.split()[1:])
    assert set(values) == {"federated_auc", "federated_acc", "centralized_auc",
                           "centralized_acc", "gap_auc"}
    assert float(values["federated_acc"]) > 0.8 and float(values["centralized_acc"]) > 0.8
