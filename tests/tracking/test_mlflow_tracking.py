"""Experiment tracking against a real MLflow tracking server (``mlflow server`` with a SQLite
store, started on loopback): what the aggregator logs is read back through MLflow's client;
a restarted aggregator continues its MLflow run; a tracking server that is down or dies
costs the run one log line, never the run."""

import threading

import pytest

from server_component.checkpoint import CHECKPOINT_FILE
from server_component.outputs import FINAL_WEIGHTS
from server_component.tracking import RunTracker
from tests.reliability.test_resilience import run_federation
from tests.support.aggregator_process import AggregatorProcess
from tests.support.live_aggregator import free_port
from tests.support.mlflow_server import MlflowServer


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


def history_steps(server, run_id, key):
    return sorted(int(m.step) for m in server.client().get_metric_history(run_id, key))


def test_a_federation_is_tracked_round_by_round_with_its_outputs(tmp_path, mlflow_server,
                                                                 monkeypatch):
    monkeypatch.setenv("KFP_RUN_ID", "kfp-run-tracked")
    monkeypatch.setenv("KFP_NAMESPACE", "hospital-a")
    server, _, _, errors, out = run_federation(
        tmp_path, n=2, rounds=3, flags=("--mlflow-tracking-uri", mlflow_server.uri))
    assert not errors and server.wait() == 0, server.output
    assert "event=tracking " in server.output and "tracking_unavailable" not in server.output

    run = mlflow_server.run_of("kfp-run-tracked")
    assert run.info.status == "FINISHED" and run.info.run_name == "fl-kfp-run-tracked"
    assert run.data.tags["kfp_namespace"] == "hospital-a"
    params = run.data.params
    assert (params["num_clients"], params["rounds"], params["strategy"]) == ("2", "3", "fedavg")
    assert "token" not in params and "out" not in params  # secrets and wiring stay out
    assert params["mlflow_tracking_uri"] == mlflow_server.uri
    # Every round once, at its step; the clients' own validation metric averaged.
    assert history_steps(mlflow_server, run.info.run_id, "round_clients") == [1, 2, 3]
    rounds = mlflow_server.client().get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in sorted(rounds, key=lambda m: m.step)] == [1, 2, 3]
    assert [round(m.value, 4) for m in sorted(rounds, key=lambda m: m.step)] == [0.51, 0.52, 0.53]
    # Final metrics, as the KFP Metrics artifact has them.
    assert run.data.metrics["rounds_completed"] == 3.0
    assert "test_accuracy" in run.data.metrics
    # The outputs, byte for byte.
    artifacts = {a.path for a in mlflow_server.client().list_artifacts(run.info.run_id)}
    assert {FINAL_WEIGHTS, "report.html", "round_metrics.csv", "client_metrics.csv",
            "summary.json"} <= artifacts
    local = mlflow_server.client().download_artifacts(run.info.run_id, FINAL_WEIGHTS,
                                                      str(tmp_path))
    assert open(local, "rb").read() == (out / FINAL_WEIGHTS).read_bytes()


def test_a_restarted_aggregator_continues_its_mlflow_run_without_repeating_rounds(
        tmp_path, mlflow_server, monkeypatch):
    monkeypatch.setenv("KFP_RUN_ID", "kfp-run-restarted")
    hold = threading.Event()
    ckpt = tmp_path / "ckpt"
    flags = ("--mlflow-tracking-uri", mlflow_server.uri, "--checkpoint-dir", str(ckpt))

    def client_2_waits_in_round_3(cid, round_):
        if cid == 2 and round_ == 3:
            hold.wait(60)

    def crash_and_restart(server, port, out):
        assert server.wait_for("round=3 client=0", "round=3 client=1")
        server.proc.kill()
        server.proc.wait()
        assert (ckpt / CHECKPOINT_FILE).exists()
        restarted = AggregatorProcess(port, out, "--num-clients", "3", "--rounds", "4", *flags)
        hold.set()
        return restarted

    server, _, _, errors, _ = run_federation(tmp_path, flags=flags,
                                             before_fit=client_2_waits_in_round_3,
                                             on_started=crash_and_restart)
    assert not errors and server.wait() == 0, server.output
    run = mlflow_server.run_of("kfp-run-restarted")  # one MLflow run, not two
    assert run.info.status == "FINISHED"
    assert history_steps(mlflow_server, run.info.run_id, "round_clients") == [1, 2, 3, 4]


def test_a_tracking_server_that_is_down_costs_one_line_and_the_run_completes(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    server, _, _, errors, out = run_federation(tmp_path, n=2, rounds=2,
                                               flags=("--mlflow-tracking-uri", down))
    assert not errors and server.wait() == 0, server.output
    lines = [line for line in server.output.splitlines() if "tracking_unavailable" in line]
    assert len(lines) == 1 and f"uri={down} during=start" in lines[0]
    assert "the run goes on without MLflow" in lines[0]
    assert (out / FINAL_WEIGHTS).is_file()


def test_a_tracking_server_that_dies_mid_run_is_dropped_after_one_line(tmp_path, caplog):
    server = MlflowServer(tmp_path / "mlflow")
    tracker = RunTracker(server.uri, "dies", "kfp-run-dies")
    try:
        assert tracker.start({"rounds": 3})
        server.kill()
        record = type("Record", (), {"round": 1, "client_ids": [0], "num_examples": 5,
                                     "duration_s": 1.0, "metrics": {"loss": 1.0},
                                     "privacy": {}})()
        tracker.round_closed(record)
        tracker.finish({"rounds_completed": 1.0}, {}, {}, 1, None)
    finally:
        server.stop()
    warnings = [r.getMessage() for r in caplog.records if "tracking_unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "during=log" in warnings[0], warnings
    assert not tracker.active


def test_credentials_in_the_uri_never_reach_the_log():
    from server_component.tracking import shown_uri

    assert shown_uri("https://alice:s3cret@mlflow.example:5000/x") == "https://mlflow.example:5000/x"
    assert shown_uri("http://mlflow:5000") == "http://mlflow:5000"


def private_runs_api(uri):
    """A KFP API (loopback recorder) listing three runs: DP with a budget and tracked at
    ``uri``, DP uncapped and not tracked, no DP."""
    def run(run_id, **params):
        return {"run_id": run_id, "display_name": run_id, "state": "SUCCEEDED",
                "created_at": "2026-12-01T10:00:00Z", "finished_at": "2026-12-01T10:10:00Z",
                "runtime_config": {"parameters": {"num_clients": 5, **params}}}

    runs = [run("kfp-dp-tracked", dp="example", dp_target_epsilon=8,
                mlflow_tracking_uri=uri, mlflow_experiment="private"),
            run("kfp-dp-untracked", dp="client"), run("kfp-plain", dp="off")]

    def route(request):
        if request.path == "/apis/v2beta1/healthz":
            return 200, {"multi_user": False}
        if request.path == "/apis/v2beta1/runs":
            return 200, {"runs": runs, "total_size": len(runs)}
        return 404, {"error": f"unexpected {request.method} {request.path}"}
    return route


def test_submit_list_shows_the_epsilon_a_tracked_run_spent(mlflow_server, capsys):
    from pipelines import submit
    from tests.support.http_recorder import HttpRecorder

    # The aggregator's tracker records the run's final ε, as at the end of a DP run.
    tracker = RunTracker(mlflow_server.uri, "private", "kfp-dp-tracked")
    assert tracker.start({"dp": "example"})
    tracker.finish({"dp_epsilon": 7.6912, "rounds_completed": 6.0}, {}, {}, 6, None)
    with HttpRecorder(private_runs_api(mlflow_server.uri)) as api:
        assert submit.main(["--host", api.url, "list"]) == 0
    out = capsys.readouterr().out
    lines = out[out.index("run id"):].splitlines()  # after MLflow's own "View run" lines
    assert "ε spent (budget)" in lines[0]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "7.69 (≤ 8)" in rows["kfp-dp-tracked"]
    assert "? (uncapped)" in rows["kfp-dp-untracked"]
    assert "dp=off" in rows["kfp-plain"] and "(" not in rows["kfp-plain"]
    assert not any(line.startswith("note:") for line in lines)


def test_submit_list_says_in_one_line_when_mlflow_cannot_be_read(capsys):
    from pipelines import submit
    from tests.support.http_recorder import HttpRecorder

    down = f"http://127.0.0.1:{free_port()}"
    with HttpRecorder(private_runs_api(down)) as api:
        assert submit.main(["--host", api.url, "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "? (≤ 8)" in next(line for line in lines if line.startswith("kfp-dp-tracked"))
    [note] = [line for line in lines if line.startswith("note:")]
    assert note.startswith(f"note: MLflow at {down} could not be read")
    assert note.endswith("spent ε shown as ?")


def test_a_password_in_the_tracking_uri_is_not_logged_as_a_parameter():
    from server_component.run import tracked_parameters
    from server_component.settings import AggregatorConfig

    config = AggregatorConfig(2, 2, mlflow_tracking_uri="https://bob:pw@mlflow.example")
    assert tracked_parameters(config)["mlflow_tracking_uri"] == "https://mlflow.example"
