"""Secure-aggregation settings that cannot work are refused before anything starts, with one
line naming the parameter: in the pipeline's argument checks and on both command lines."""

import subprocess
import sys

import pytest

from pipelines.argument_checks import check_arguments
from pipelines.parameters import PipelineArgumentError, pipeline_parameters
from tests.support.paths import REPO_ROOT

REFUSED = [
    ({"strategy": "median"}, "strategy=median cannot work on masked inputs"),
    ({"strategy": "trimmed-mean"}, "strategy=trimmed-mean cannot work on masked inputs"),
    ({"strategy": "fednova"}, "strategy=fednova cannot work on masked inputs"),
    ({"strategy": "scaffold"}, "strategy=scaffold cannot work on masked inputs"),
    ({"secagg_threshold": 2}, "secagg_threshold must be 0 (a majority, 3) or in 3..5"),
    ({"secagg_threshold": 6}, "secagg_threshold must be 0 (a majority, 3) or in 3..5"),
    ({"num_clients": 30, "secagg_neighbours": 3}, "a positive even number"),
    ({"num_clients": 50, "secagg_max_examples": 10**9}, "do not fit 32-bit sums"),
    ({"secagg_clip": 0.0}, "secagg_clip"),
]


def _arguments(**overrides):
    values = {p.name: p.default for p in pipeline_parameters(5)}
    return {**values, "secure_aggregation": "secagg", **overrides}


@pytest.mark.parametrize(("overrides", "message"), REFUSED)
def test_the_pipeline_refuses_what_cannot_work_in_one_line(overrides, message):
    with pytest.raises(PipelineArgumentError) as refused:
        check_arguments(_arguments(**overrides))
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("strategy", ["fedavg", "fedavgm:0.5", "fedadam"])
def test_strategies_on_the_unmasked_average_are_accepted(strategy):
    check_arguments(_arguments(strategy=strategy))
    check_arguments(_arguments(strategy="median", secure_aggregation="off"))


def test_both_command_lines_refuse_with_one_line_and_exit_2(tmp_path):
    aggregator = subprocess.run(
        [sys.executable, "-m", "server_component", "--num-clients", "5", "--rounds", "1",
         "--secure-aggregation", "secagg", "--strategy", "median", "--out", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert aggregator.returncode == 2
    assert "cannot work on masked inputs" in aggregator.stderr
    client = subprocess.run(
        [sys.executable, "-m", "client_component", "--server", "http://127.0.0.1:9",
         "--client-id", "0", "--num-clients", "5", "--rounds", "1",
         "--secure-aggregation", "secagg", "--secagg-threshold", "1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert client.returncode == 2
    [error] = [line for line in client.stderr.splitlines() if "error:" in line]
    assert "secagg_threshold must be 0 (a majority, 3)" in error  # argparse's usage, then it
