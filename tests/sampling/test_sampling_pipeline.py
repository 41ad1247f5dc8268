"""Client sampling through the compiled pipeline in the local runner: each round trains the
clients the seeded sample names, the others sit it out, and the outputs say who was sampled."""

import csv
import re

import pytest

from contract.sampling import ClientSampling
from tests.pipeline.test_local_run import local_run


@pytest.mark.slow
def test_a_pipeline_run_with_fraction_fit_trains_each_rounds_sample(tmp_path):
    result = local_run(tmp_path, "--arg", "num_clients=4", "--arg", "rounds=3",
                       "--arg", "fraction_fit=0.5", "--arg", "seed=2")
    assert result.returncode == 0, result.stdout + result.stderr
    sampling = ClientSampling(4, 0.5, seed=2)
    [run_dir] = list(tmp_path.iterdir())
    aggregator_log = (run_dir / "logs" / "aggregator.log").read_text()
    for round_ in (1, 2, 3):
        assert f"event=sample round={round_} selected={sampling.select(round_)}" in aggregator_log
        assert f"round={round_}/3 clients=2 " in aggregator_log
    rows = list(csv.DictReader((run_dir / "aggregator" / "round_metrics").open()))
    assert [r["sampled"] for r in rows] == [" ".join(map(str, sampling.select(r)))
                                            for r in (1, 2, 3)]
    for client in range(4):
        log = (run_dir / "logs" / f"client-{client}.log").read_text()
        sat_out = [int(r) for r in re.findall(r"not sampled for round (\d+)", log)]
        assert sat_out == [r for r in (1, 2, 3) if client not in sampling.select(r)]
        assert "final test" in log  # every client evaluates the final model
    assert "grey: not sampled" in (run_dir / "aggregator" / "report.html").read_text()
