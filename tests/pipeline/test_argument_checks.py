"""Bad pipeline arguments are refused before anything starts: one line naming the parameter
and what it accepts, exit 2, no run directory, no process, no request to a KFP backend."""

import psutil
import pytest

from pipelines import local_run, submit
from pipelines.argument_checks import check_arguments
from pipelines.parameters import PipelineArgumentError
from tests.pipeline.test_submit import kfp_api
from tests.support.http_recorder import HttpRecorder
from tests.support.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "compiled" / "fl_pipeline.yaml"

BAD = [
    ("num_clients=0", "num_clients must be at least 1, got 0"),
    ("rounds=0", "rounds must be at least 1, got 0"),
    ("min_clients=9", "min_clients must be 0 (all clients) or in 1..num_clients=5, got 9"),
    ("strategy=fedsgd", "accepted: fedavg, fedavgm[:momentum[:server_lr]], fedadam, "
                        "fednova[:max_extrapolation], scaffold[:server_lr], median, "
                        "trimmed-mean[:beta]"),
    ("strategy=trimmed-mean:0.7", "trimmed-mean beta must be in [0, 0.5)"),
    ("dataset=mnist", "dataset 'mnist' is not accepted; accepted: breast_cancer, npz"),
    ("partition=dirichlet:-1", "partition:"),
    ("partition=shards", "partition:"),
    ("model=resnet", "model: unknown model 'resnet'"),
    ("norm=batch", "norm 'batch' is not accepted; accepted: none, group"),
    ("channels=2", "channels 2 is not accepted; accepted: 1, 3"),
    ("connect_timeout_s=0", "connect_timeout_s must be greater than 0"),
    ("max_update_mb=0", "max_update_mb must be greater than 0"),
    ("learning_rate=0", "learning_rate must be greater than 0"),
    ("update_dtype=bfloat16", "update_dtype 'bfloat16' is not accepted; accepted: float32"),
    ("class_weights=auto", "class_weights 'auto' is not accepted"),
    ("aggregator_port=70000", "aggregator_port must be in 1..65535"),
    ("checkpoint_size=lots", "checkpoint_size 'lots' is not a Kubernetes quantity"),
    ("dataset=npz", "data_uri is required for dataset npz"),
    ("uncertainty=u_maybe", "uncertainty 'u_maybe' is not accepted; accepted: u_ones, "
                            "u_zeros, ignore"),
    ("labels=Edema", "labels chooses the findings of multi-label data (dataset npz or "
                     "chexpert); dataset breast_cancer has none"),
    ("dp_noise_multiplier=-1", "dp_noise_multiplier must be at least 0"),
    ("dp_clip_norm=0", "dp_clip_norm must be greater than 0"),
    ("dp_delta=1", "dp_delta must be in [0, 1)"),
    ("dp_target_epsilon=3", "dp_target_epsilon needs dp=example or client"),
    ("dp=example", "dp=example needs logit_adjustment=none"),
    ("client_cpu_request=two", "client_cpu_request 'two' is not a CPU amount"),
    ("client_memory_request=2GB", "client_memory_request '2GB' is not a Kubernetes quantity"),
    ("client_accelerator_type=gpu", "client_accelerator_type 'gpu' is not a Kubernetes "
                                    "extended resource name"),
    ("client_accelerator_count=1.5", "client_accelerator_count '1.5' must be a whole number"),
    ("client_image=", "client_image '' is not an image reference"),
    ("mlflow_tracking_uri=mlflow:5000", "mlflow_tracking_uri 'mlflow:5000' is not an MLflow "
                                        "tracking URI"),
    ("mlflow_experiment= ", "mlflow_experiment must name an MLflow experiment"),
    ("fraction_fit=0", "fraction_fit must be in (0, 1], got 0"),
    ("min_fit_clients=9", "min_fit_clients must be at most num_clients=5, got 9"),
    ("select_model=best", "select_model 'best' is not accepted; accepted: last, "
                          "best:<metric>"),
    ("round_models_max_mb=0", "round_models_max_mb must be greater than 0"),
]


@pytest.mark.reliability(
    scenario="bad pipeline argument", expected="exit 2 before anything starts: one line "
    "naming the parameter and what it accepts; no run directory, no process")
@pytest.mark.parametrize("arg, message", BAD, ids=[arg for arg, _ in BAD])
def test_the_local_runner_refuses_before_starting_anything(tmp_path, capsys, arg, message,
                                                           observe):
    runs = tmp_path / "runs"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    code = local_run.main(["--pipeline", str(PACKAGE), "--runs-dir", str(runs), "--arg", arg])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not runs.exists()  # no half-written outputs
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before  # nothing started
    observe(f"exit 2: {err.strip()[:110]}")


def test_a_missing_local_data_path_is_named(tmp_path, capsys):
    missing = tmp_path / "client-{client_id}.npz"
    (tmp_path / "client-0.npz").write_bytes(b"")
    code = local_run.main(["--pipeline", str(PACKAGE), "--runs-dir", str(tmp_path / "runs"),
                           "--arg", "dataset=npz", "--arg", f"data_uri={missing}",
                           "--arg", "num_clients=2"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"no such file or directory: {tmp_path / 'client-1.npz'}" in err


def test_every_problem_is_reported_at_once():
    with pytest.raises(PipelineArgumentError) as exc:
        check_arguments({"num_clients": 0, "rounds": 0, "strategy": "x"})
    message = str(exc.value)
    assert all(name in message for name in ("num_clients", "rounds", "strategy"))


@pytest.mark.reliability(
    scenario="bad argument to the submit CLI (num_clients=0)",
    expected="exit 2 with one line; no run is created on the KFP backend")
def test_submit_refuses_before_any_run_is_created(capsys, observe):
    with HttpRecorder(kfp_api(existing_pipeline=False)) as api:
        code = submit.main(["--host", api.url, "run", "--package", str(PACKAGE),
                            "--arg", "num_clients=0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "num_clients must be at least 1, got 0" in err
    assert not [r for r in api.requests if r.path == "/apis/v2beta1/runs"]
    observe(f"exit 2: {err.strip()[:90]}; requests sent: "
            f"{sorted({r.method + ' ' + r.path for r in api.requests})}")


def test_the_defaults_pass():
    from pipelines.parameters import root_parameters, with_defaults
    check_arguments(with_defaults(root_parameters(PACKAGE), {}), local=True)


def test_client_sampling_with_secure_aggregation_is_refused_in_one_line():
    with pytest.raises(PipelineArgumentError) as exc:
        check_arguments({"fraction_fit": 0.5, "secure_aggregation": "secagg"})
    assert "fraction_fit=0.5 is not supported with secure_aggregation=secagg" in str(exc.value)
