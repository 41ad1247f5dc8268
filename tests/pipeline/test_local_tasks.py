"""One compiled container task run locally: executor input, outputs, cancellation."""

import sys

import pytest

from pipelines.local_tasks import TaskContext, TaskFailed, run_container_task, terminate_all

COMPONENT = {"outputDefinitions": {"parameters": {"Output": {"parameterType": "STRING"}}}}


def container(script: str) -> dict:
    # The executor-input placeholder is replaced by the JSON the KFP launcher would pass.
    return {"command": [sys.executable, "-c", script], "args": ["{{$}}"]}


WRITE_OUTPUT = (
    "import json, pathlib, sys; e = json.loads(sys.argv[1]); "
    "out = pathlib.Path(e['outputs']['outputFile']); "
    "out.parent.mkdir(parents=True, exist_ok=True); "
    "x = e['inputs']['parameterValues']['x']; "
    "out.write_text(json.dumps({'parameterValues': {'Output': x * 2}}))"
)


def test_a_task_gets_its_inputs_and_returns_its_outputs(tmp_path):
    ctx = TaskContext(run_id="r", namespace="local", run_dir=tmp_path)
    result = run_container_task("double", container(WRITE_OUTPUT), COMPONENT, {"x": 21}, {}, ctx)
    assert result["parameters"] == {"Output": 42}
    assert "# attempt 1" in (tmp_path / "logs" / "double.log").read_text()


def test_after_a_failure_only_the_exit_task_still_starts(tmp_path):
    ctx = TaskContext(run_id="r", namespace="local", run_dir=tmp_path)
    terminate_all(ctx)  # what a failed task does to the run
    with pytest.raises(TaskFailed, match="task regular failed"):
        run_container_task("regular", container(WRITE_OUTPUT), COMPONENT, {"x": 1}, {}, ctx)
    result = run_container_task("teardown", container(WRITE_OUTPUT), COMPONENT, {"x": 2}, {},
                                ctx, exit_task=True)
    assert result["parameters"] == {"Output": 4}
