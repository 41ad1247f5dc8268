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
