"""The compiled pipeline, run by the local runner, with issue 18's options together (one
local run: they are minutes each): multi-label findings from a ChestMNIST-layout file the
test writes (per-finding AUCs in the Metrics, the report and MLflow), tracked in a real
MLflow server (the aggregator's run carries the KFP run id, and the export task adds
model.keras to it as an MLflow Keras model that loads back with the final weights), those of
the round select_model picked (every round's model kept under the final model artifact),
half the clients sampled each round."""

import csv
import json
import re

import numpy as np
import pytest

from bench.multilabel_files import write_chestmnist
from contract import wire
from contract.sampling import ClientSampling
from tests.pipeline.test_local_run import local_run
from tests.support.mlflow_server import MlflowServer


@pytest.mark.slow
def test_a_pipeline_run_is_one_mlflow_run_with_its_keras_model(tmp_path):
    server = MlflowServer(tmp_path / "mlflow")
    data = write_chestmnist(tmp_path / "chestmnist.npz", train=240, val=40, test=80)
    try:
        result = local_run(tmp_path / "runs", "--arg", "num_clients=4", "--arg", "rounds=2",
                           # multi-label findings, label-skewed over the sites (issue 18)
                           "--arg", "dataset=npz", "--arg", f"data_uri={data}",
                           "--arg", "labels=effusion,nodule,pneumonia",
                           "--arg", "partition=dirichlet:0.5",
                           # half the clients each round (issue 18's sampling end to end)
                           "--arg", "fraction_fit=0.5", "--arg", "seed=2",
                           "--arg", f"mlflow_tracking_uri={server.uri}",
                           "--arg", "mlflow_experiment=pneumonia-fl",
                           # and the best round's model, every round's kept (issue 18)
                           "--arg", "select_model=best:val_auc",
                           "--arg", "keep_round_models=true")
        assert result.returncode == 0, result.stdout + result.stderr
        kfp_run_id = re.search(r"run ([0-9a-f-]{36})", result.stdout).group(1)
        run = server.run_of(kfp_run_id, experiment="pneumonia-fl")
        assert run.info.status == "FINISHED"
        assert run.data.params["client.dataset"] == "npz"  # the clients' settings too
        assert run.data.params["client.labels"] == "effusion,nodule,pneumonia"
        assert run.data.metrics["rounds_completed"] == 2.0
        check_multi_label(run_dir_of(tmp_path), run.data.metrics)

        run_dir = run_dir_of(tmp_path)
        keras_meta = json.loads((run_dir / "export-model" / "keras_model.metadata.json")
                                .read_text())
        assert keras_meta["mlflow_run_id"] == run.info.run_id
        assert keras_meta["selected_model"].startswith("round ")
        assert "(best:val_auc = " in keras_meta["selected_model"]
        rounds = run_dir / "aggregator" / "final_model" / "rounds"
        assert sorted(p.name for p in rounds.iterdir()) == [
            "round-0001.safetensors", "round-0002.safetensors"]
        assert run.data.metrics["selected_round"] in (1.0, 2.0)
        check_sampling(run_dir, clients=4, rounds=2, sampling=ClientSampling(4, 0.5, seed=2))
        import mlflow

        mlflow.set_tracking_uri(server.uri)
        model = mlflow.keras.load_model(keras_meta["mlflow_model_uri"])
        assert model.output_shape == (None, 3)  # one sigmoid unit per finding
        final = wire.decode((run_dir / "aggregator" / "final_model" /
                             "final_weights.safetensors").read_bytes())
        for loaded, expected in zip(model.get_weights(), wire.tensors_to_list(final.tensors),
                                    strict=True):
            np.testing.assert_array_equal(loaded, expected)
        logged = server.client().search_logged_models(
            experiment_ids=[run.info.experiment_id])
        assert [m.source_run_id for m in logged] == [run.info.run_id]
    finally:
        server.stop()


def run_dir_of(tmp_path):
    [run_dir] = (tmp_path / "runs").iterdir()
    return run_dir


FINDINGS = ("effusion", "nodule", "pneumonia")


def check_multi_label(run_dir, tracked: dict):
    """Per-finding and macro AUC in the Metrics artifact (the clients' weighted and the
    pooled counts'), the summed per-finding counts, the report's table, MLflow's metrics."""
    metrics = json.loads((run_dir / "aggregator" / "metrics").read_text())
    for finding in FINDINGS:
        for name in (f"test_auc_{finding}", f"pooled_auc_{finding}",
                     f"test_sensitivity_{finding}", f"test_specificity_{finding}"):
            assert 0.0 <= metrics[name] <= 1.0, name
        assert tracked[f"test_auc_{finding}"] == metrics[f"test_auc_{finding}"]
    assert metrics["test_auc"] == metrics["test_macro_auc"]
    assert metrics["pooled_macro_auc"] == pytest.approx(
        sum(metrics[f"pooled_auc_{f}"] for f in FINDINGS) / 3, abs=1e-5)
    # A ClassificationMetrics artifact holds one matrix: a multi-label run logs none.
    assert not (run_dir / "aggregator" / "classification").exists()
    report = (run_dir / "aggregator" / "report.html").read_text()
    assert "Per finding (summed over clients)" in report and "ROC per finding" in report
    for client in range(4):
        log = (run_dir / "logs" / f"client-{client}.log").read_text()
        assert "event=partition client=" in log and "final test" in log


def check_sampling(run_dir, clients, rounds, sampling):
    """Each round trained the clients the seeded sample names; the others sat it out; the
    outputs say who was sampled."""
    aggregator_log = (run_dir / "logs" / "aggregator.log").read_text()
    for round_ in range(1, rounds + 1):
        assert f"event=sample round={round_} selected={sampling.select(round_)}" in aggregator_log
        assert f"round={round_}/{rounds} clients={sampling.sample_size} " in aggregator_log
    rows = list(csv.DictReader((run_dir / "aggregator" / "round_metrics").open()))
    assert [r["sampled"] for r in rows] == [" ".join(map(str, sampling.select(r)))
                                            for r in range(1, rounds + 1)]
    for client in range(clients):
        log = (run_dir / "logs" / f"client-{client}.log").read_text()
        sat_out = [int(r) for r in re.findall(r"not sampled for round (\d+)", log)]
        assert sat_out == [r for r in range(1, rounds + 1) if client not in sampling.select(r)]
        assert "final test" in log  # every client evaluates the final model
    assert "grey: not sampled" in (run_dir / "aggregator" / "report.html").read_text()
