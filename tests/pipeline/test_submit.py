"""The submit CLI against a loopback recorder of the KFP v2beta1 REST API: a contract test
of the requests kfp.Client really sends (no KFP backend runs here)."""

import pytest

from pipelines import submit
from pipelines.kfp_driver import as_value, check_run_arguments
from tests.support.http_recorder import HttpRecorder
from tests.support.paths import REPO_ROOT

PACKAGE = str(REPO_ROOT / "compiled" / "fl_pipeline.yaml")


@pytest.fixture(autouse=True)
def _no_kfp_settings_from_the_environment(monkeypatch):
    for name in ("KFP_HOST", "KFP_TOKEN", "KFP_COOKIES", "KFP_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)


RUN = {"run_id": "r-1", "experiment_id": "e-1", "display_name": "fl 7 clients",
       "created_at": "2026-11-30T10:00:00Z", "finished_at": "2026-11-30T10:12:30Z",
       "runtime_config": {"parameters": {"num_clients": 7, "rounds": 3, "dataset": "npz"}}}


def kfp_api(existing_pipeline: bool, states=("SUCCEEDED",)):
    states = list(states)

    def route(request):
        path = request.path
        if path == "/apis/v2beta1/healthz":
            return 200, {"multi_user": False}
        if path == "/apis/v2beta1/pipelines" and request.method == "GET":
            found = [{"pipeline_id": "p-1", "display_name": "fl-on-kubeflow"}]
            return 200, {"pipelines": found if existing_pipeline else [],
                         "total_size": int(existing_pipeline)}
        if path == "/apis/v2beta1/pipelines/upload":
            return 200, {"pipeline_id": "p-new", "display_name": "fl-on-kubeflow"}
        if path == "/apis/v2beta1/pipelines/upload_version":
            return 200, {"pipeline_id": "p-1", "pipeline_version_id": "v-2"}
        if path == "/apis/v2beta1/experiments" and request.method == "GET":
            return 200, {"experiments": [], "total_size": 0}
        if path == "/apis/v2beta1/experiments":
            return 200, {"experiment_id": "e-1", "display_name": "fl-on-kubeflow"}
        if path == "/apis/v2beta1/runs" and request.method == "POST":
            return 200, {"run_id": "r-1", "experiment_id": "e-1"}
        if path == "/apis/v2beta1/runs" and request.method == "GET":
            pending = {**RUN, "run_id": "r-0", "state": "RUNNING",
                       "finished_at": "1970-01-01T00:00:00Z"}
            return 200, {"runs": [{**RUN, "state": "SUCCEEDED"}, pending], "total_size": 2}
        if path == "/apis/v2beta1/runs/r-1":
            return 200, {**RUN, "state": states.pop(0) if len(states) > 1 else states[0]}
        return 404, {"error": f"unexpected {request.method} {path}"}
    return route


def test_upload_creates_the_pipeline_when_absent(capsys):
    with HttpRecorder(kfp_api(existing_pipeline=False)) as api:
        assert submit.main(["--host", api.url, "upload", "--package", PACKAGE]) == 0
    upload = [r for r in api.requests if r.path.endswith("/pipelines/upload")]
    assert len(upload) == 1 and upload[0].method == "POST"
    assert upload[0].query["name"] == ["fl-on-kubeflow"]
    assert b"fl-on-kubeflow" in upload[0].body  # the multipart carries the YAML
    assert "uploaded pipeline fl-on-kubeflow (id p-new)" in capsys.readouterr().out


def test_upload_adds_a_version_when_the_pipeline_exists(capsys):
    with HttpRecorder(kfp_api(existing_pipeline=True)) as api:
        assert submit.main(["--host", api.url, "upload", "--package", PACKAGE,
                            "--version", "v2"]) == 0
    [version] = [r for r in api.requests if r.path.endswith("/upload_version")]
    assert version.query["name"] == ["v2"] and version.query["pipelineid"] == ["p-1"]
    assert "uploaded version v2" in capsys.readouterr().out


def test_run_sends_typed_arguments_and_no_caching(capsys):
    with HttpRecorder(kfp_api(existing_pipeline=False)) as api:
        code = submit.main(["--host", api.url, "run", "--package", PACKAGE,
                            "--arg", "num_clients=7", "--arg", "rounds=3",
                            "--experiment", "fl-on-kubeflow"])
    assert code == 0
    [create] = [r for r in api.requests if r.path == "/apis/v2beta1/runs"]
    body = create.json
    assert body["runtime_config"]["parameters"] == {"num_clients": 7, "rounds": 3}
    # ... with the kinds the API server's validatePipelineJobInputs demands (a number, not "7").
    definitions = body["pipeline_spec"]["pipeline_spec"]["root"]["inputDefinitions"]
    check_run_arguments(as_value(body["runtime_config"]["parameters"]),
                        definitions["parameters"])
    assert body["experiment_id"] == "e-1"
    # The IR and its Kubernetes platform spec (field-path env, pod labels) both travel.
    assert body["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "fl-on-kubeflow"
    platform = body["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]
    assert "exec-create-service" in platform["deploymentSpec"]["executors"]
    assert f"{api.url}/#/runs/details/r-1" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["run"], "no KFP host"),
    (["--host", "http://127.0.0.1:1", "upload", "--package", PACKAGE],
     "cannot reach Kubeflow Pipelines at http://127.0.0.1:1"),
    (["--host", "http://127.0.0.1:1", "run", "--package", "missing.yaml"], "not found"),
])
def test_errors_are_one_line_and_exit_2(monkeypatch, capsys, argv, message):
    monkeypatch.delenv("KFP_HOST", raising=False)
    assert submit.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unknown_argument_and_refused_credentials(capsys):
    with HttpRecorder(kfp_api(existing_pipeline=False)) as api:
        assert submit.main(["--host", api.url, "run", "--package", PACKAGE,
                            "--arg", "num_client=7"]) == 2
    assert "unknown pipeline parameter(s) ['num_client']" in capsys.readouterr().err
    with HttpRecorder(lambda r: (401, {"error": "no"})) as api:
        assert submit.main(["--host", api.url, "upload", "--package", PACKAGE]) == 2
    assert "refused the credentials (401)" in capsys.readouterr().err


@pytest.mark.parametrize("states, code", [(["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"], 0),
                                          (["RUNNING", "FAILED"], 1)])
def test_wait_streams_each_state_and_exits_by_the_final_one(capsys, monkeypatch, states, code):
    monkeypatch.setattr(submit.time, "sleep", lambda s: None)  # the recorder answers at once
    with HttpRecorder(kfp_api(existing_pipeline=False, states=states)) as api:
        assert submit.main(["--host", api.url, "run", "--package", PACKAGE, "--wait",
                            "--poll", "1"]) == code
    out = capsys.readouterr().out
    shown = [line.split()[-1] for line in out.splitlines() if line.startswith("  ")]
    assert shown == list(dict.fromkeys(states))  # each state once, in order
    assert f"run r-1 finished: {states[-1]} {api.url}/#/runs/details/r-1" in out
    polls = [r for r in api.requests if r.path == "/apis/v2beta1/runs/r-1"]
    assert len(polls) == len(states) and all(r.method == "GET" for r in polls)


def test_wait_gives_up_after_the_timeout(capsys):
    with HttpRecorder(kfp_api(existing_pipeline=False, states=["RUNNING"])) as api:
        assert submit.main(["--host", api.url, "run", "--package", PACKAGE, "--wait",
                            "--poll", "0.2", "--timeout", "1"]) == 1
    assert "gave up waiting after 1 s (the run goes on)" in capsys.readouterr().out


def test_list_shows_recent_runs_newest_first_with_state_and_key_parameters(capsys):
    with HttpRecorder(kfp_api(existing_pipeline=False)) as api:
        assert submit.main(["--host", api.url, "list", "--limit", "5"]) == 0
    [listing] = [r for r in api.requests if r.path == "/apis/v2beta1/runs"]
    assert listing.query["page_size"] == ["5"]
    assert listing.query["sort_by"] == ["created_at desc"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["run", "id", "name"]
    assert lines[1].startswith("r-1") and "SUCCEEDED" in lines[1] and "750 s" in lines[1]
    assert "num_clients=7 rounds=3 dataset=npz" in lines[1]
    assert lines[2].startswith("r-0") and "RUNNING" in lines[2] and " - " in lines[2]


def header(request, name: str) -> str | None:
    return {k.lower(): v for k, v in request.headers.items()}.get(name)


def test_cookies_and_the_in_cluster_token_are_sent(tmp_path, monkeypatch):
    with HttpRecorder(kfp_api(existing_pipeline=False)) as api:
        assert submit.main(["--host", api.url, "--cookies", "authservice_session=abc",
                            "list"]) == 0
    assert all(header(r, "cookie") == "authservice_session=abc" for r in api.requests)
    token = tmp_path / "token"
    token.write_text("pod-token\n")
    monkeypatch.setattr(submit, "IN_CLUSTER_TOKEN", str(token))
    with HttpRecorder(kfp_api(existing_pipeline=False)) as api:
        assert submit.main(["--host", api.url, "--in-cluster", "list"]) == 0
    assert api.requests and all(header(r, "authorization") == "Bearer pod-token"
                                for r in api.requests)


def test_in_cluster_without_a_token_file_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(submit, "IN_CLUSTER_TOKEN", "/nonexistent/token")
    assert submit.main(["--host", "http://127.0.0.1:1", "--in-cluster", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --in-cluster: cannot read the KFP token at /nonexistent/token")
    assert len(err.splitlines()) == 1


def test_a_credential_flag_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KFP_TOKEN", "from-env")
    with HttpRecorder(kfp_api(existing_pipeline=False)) as api:
        assert submit.main(["--host", api.url, "--cookies", "s=1", "list"]) == 0
    assert all(header(r, "authorization") is None for r in api.requests)
    with HttpRecorder(kfp_api(existing_pipeline=False)) as api:
        assert submit.main(["--host", api.url, "list"]) == 0
    assert all(header(r, "authorization") == "Bearer from-env" for r in api.requests)


def test_wait_rides_out_a_failed_state_check(capsys, monkeypatch):
    monkeypatch.setattr(submit.time, "sleep", lambda s: None)
    calls = iter([RuntimeError("port-forward dropped"), "RUNNING", "SUCCEEDED"])

    class Flaky:
        def get_run(self, run_id):
            outcome = next(calls)
            if isinstance(outcome, Exception):
                raise outcome
            return type("Run", (), {"state": outcome})()

    assert submit.follow(Flaky(), "r-1", timeout=60, poll=1) == "SUCCEEDED"
    assert "state check failed (RuntimeError), trying again" in capsys.readouterr().out


def test_poll_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        submit.main(["--host", "http://x", "run", "--poll", "0"])
    assert "must be a number of seconds > 0" in capsys.readouterr().err
