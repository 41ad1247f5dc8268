"""Multi-label findings through the compiled pipeline and the local runner, from a
CheXpert-layout folder the test writes (PNGs, train.csv/valid.csv with 1/0/-1/blank):
uncertain mentions ignored, two findings chosen, per-finding metrics in the Metrics artifact,
the summed per-finding counts in the report, a .keras model with one sigmoid per finding.
(The ChestMNIST-layout npz runs through the pipeline in tests/tracking/test_mlflow_pipeline.py,
with client sampling and MLflow.)"""

import json
import re

import keras
import pandas as pd
import pytest

from bench.multilabel_files import write_chexpert
from tests.pipeline.test_local_run import local_run


@pytest.mark.slow
def test_a_chexpert_folder_trains_through_the_compiled_pipeline(tmp_path):
    root = write_chexpert(tmp_path / "data" / "CheXpert-v1.0-small", train=48, valid=16)
    result = local_run(tmp_path / "runs", "--arg", "num_clients=2", "--arg", "rounds=2",
                       "--arg", "dataset=chexpert", "--arg", f"data_uri={root}",
                       "--arg", "labels=Cardiomegaly,Pleural Effusion",
                       "--arg", "uncertainty=ignore", "--arg", "image_size=16")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [run_dir] = (tmp_path / "runs").iterdir()
    metrics = json.loads((run_dir / "aggregator" / "metrics").read_text())
    for finding in ("cardiomegaly", "pleural_effusion"):
        assert {f"test_auc_{finding}", f"pooled_auc_{finding}",
                f"test_sensitivity_{finding}"} <= set(metrics)
    assert "test_macro_auc" in metrics and "pooled_macro_auc" in metrics
    report = (run_dir / "aggregator" / "report.html").read_text()
    # uncertain (-1) test entries are ignored: the summed counts hold the others only
    valid = pd.read_csv(root / "valid.csv")["Pleural Effusion"]
    assert (valid == -1).any()
    row = re.search(r"<td class='l'>Pleural Effusion</td><td>(\d+)</td><td>(\d+)</td>", report)
    assert (int(row[1]), int(row[2])) == ((valid == 1).sum(), (valid == 0).sum()
                                         + valid.isna().sum())
    summary = json.loads((run_dir / "aggregator" / "final_model" / "summary.json").read_text())
    assert summary["client_settings"]["uncertainty"] == "ignore"
    assert [len(p["labels"]) for p in summary["partitions"]] == [2, 2]  # positives per finding
    log = (run_dir / "logs" / "client-0.log").read_text()
    assert "round=2/2 " in log and " val_auc_cardiomegaly=" in log and " val_macro_auc=" in log
    model = keras.models.load_model(run_dir / "export-model" / "keras_model" / "model.keras")
    assert model.input_shape == (None, 16, 16, 1) and model.output_shape == (None, 2)
