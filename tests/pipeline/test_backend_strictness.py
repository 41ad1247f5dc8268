"""Small pipelines a real KFP backend refuses are refused by the local runner, for the same
reason, and by the compile-time check; the fixed ones run. Messages are the backend's own
(``backend/src/v2/driver/resolve.go``, kubeflow/pipelines 2.16-2.17)."""

from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl

from client_component.settings import ClientConfig
from components.from_settings import settings_function
from pipelines.compile import CompiledPipelineError, check_compiled
from pipelines.input_types import parameter_type_problems
from pipelines.local_run import LocalRunner
from tests.support.paths import REPO_ROOT

IMAGE = "python:3.11-slim"
MISMATCH = 'failed to resolve inputs: input parameter "n" type mismatch: ' \
           'expect NUMBER_INTEGER, got string'


@dsl.component(base_image=IMAGE)
def ids_untyped(count: int) -> list:
    return list(range(count))


@dsl.component(base_image=IMAGE)
def ids_typed(count: int) -> list[int]:
    return list(range(count))


@dsl.component(base_image=IMAGE)
def text_three() -> str:
    return "3"


@dsl.component(base_image=IMAGE)
def echo(text: str) -> str:
    return text


@dsl.component(base_image=IMAGE)
def describe(n: int) -> str:
    """What the function really received: its Python type and value."""
    return f"{type(n).__name__}:{n}"


def compile_to(tmp_path: Path, pipeline, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    compiler.Compiler().compile(pipeline, str(path))
    return path


def run(path: Path, tmp_path: Path, **arguments):
    runner = LocalRunner(path, runs_dir=tmp_path / "runs", echo_progress=False)
    return runner.run({k: str(v) for k, v in arguments.items()})


def loop_pipeline(ids_component):
    @dsl.pipeline(name="loop")
    def loop(count: int = 2):
        with dsl.ParallelFor(ids_component(count=count).output) as item:
            describe(n=item)
    return loop


@pytest.mark.reliability(scenario="a `-> list` loop feeds an `int` input (the old pipeline)",
                         expected="refused by the driver's rule and by compile")
def test_an_untyped_list_loop_feeding_an_int_is_refused_like_the_backend(tmp_path, observe):
    path = compile_to(tmp_path, loop_pipeline(ids_untyped))
    result = run(path, tmp_path)
    assert not result.succeeded
    assert MISMATCH in result.error
    assert "driver of task describe-0 failed" in result.error
    problems = parameter_type_problems(yaml.safe_load(path.read_text()))
    assert len(problems) == 1 and "got string" in problems[0]
    observe(result.error)


def test_a_typed_list_loop_hands_each_item_as_an_int(tmp_path):
    result = run(compile_to(tmp_path, loop_pipeline(ids_typed)), tmp_path, count=3)
    assert result.succeeded, result.error
    received = sorted(result.outputs[f"describe-{i}"]["parameters"]["Output"] for i in range(3))
    assert received == ["int:0", "int:1", "int:2"]  # 3, not 3.0 and not "3"


def test_a_loop_over_a_literal_list_hands_its_numbers_on(tmp_path):
    @dsl.pipeline(name="literal-loop")
    def literal_loop():
        with dsl.ParallelFor([4, 5]) as item:
            describe(n=item)

    result = run(compile_to(tmp_path, literal_loop), tmp_path)
    assert result.succeeded, result.error
    assert result.outputs["describe-1"]["parameters"]["Output"] == "int:5"


def test_a_string_output_feeding_an_int_is_refused(tmp_path):
    @dsl.pipeline(name="string-to-int")
    def string_to_int():
        echo(text=text_three().output)

    path = compile_to(tmp_path, string_to_int)
    docs = list(yaml.safe_load_all(path.read_text()))
    # The SDK's type check stops this at definition time; a component YAML edited after
    # compiling (or written by another tool) reaches the backend like this.
    docs[0]["components"]["comp-echo"]["inputDefinitions"]["parameters"]["text"] = {
        "parameterType": "NUMBER_INTEGER"}
    path.write_text(yaml.safe_dump_all(docs))
    result = run(path, tmp_path)
    assert not result.succeeded
    assert ('failed to resolve inputs: input parameter "text" type mismatch: expect '
            'NUMBER_INTEGER, got string') in result.error
    assert parameter_type_problems(docs[0])


def test_a_missing_input_is_refused(tmp_path):
    @dsl.pipeline(name="missing")
    def missing(count: int = 1):
        describe(n=count)

    path = compile_to(tmp_path, missing)
    docs = list(yaml.safe_load_all(path.read_text()))
    del docs[0]["root"]["dag"]["tasks"]["describe"]["inputs"]["parameters"]["n"]
    path.write_text(yaml.safe_dump_all(docs))  # as a hand-edited or stale YAML would be
    result = run(path, tmp_path)
    assert not result.succeeded
    assert ('failed to resolve inputs: neither value nor default value provided for '
            'non-optional parameter "n"') in result.error
    assert parameter_type_problems(docs[0])


def test_the_compiled_pipeline_resolves_every_input_under_the_drivers_rules():
    check_compiled(REPO_ROOT / "compiled" / "fl_pipeline.yaml")  # raises on any problem
    ir = next(yaml.safe_load_all((REPO_ROOT / "compiled" / "fl_pipeline.yaml").read_text()))
    loop = ir["components"]["comp-for-loop-2"]["inputDefinitions"]["parameters"]
    item = loop["pipelinechannel--client-credentials-Output-loop-item"]
    client = ir["components"]["comp-client"]["inputDefinitions"]["parameters"]
    # The loop hands each client its credential (the client id is part of it): a STRING
    # item into a STRING input, which no driver converts or refuses.
    assert item["parameterType"] == client["credential"]["parameterType"] == "STRING"
    assert "client_id" not in client


def _pipeline_with_int_ids_into(monkeypatch, tmp_path) -> Path:
    """The pipeline as it was before the fix of the backend issue: an untyped ``-> list`` of
    client ids feeding an int input of the client, rebuilt on today's graph."""
    import pipelines.fl_pipeline as fl_pipeline

    @dsl.component(base_image=IMAGE)
    def client_credentials(num_clients: int, run_token: str) -> list:
        return list(range(num_clients))

    int_client = dsl.component(settings_function(
        "client", ClientConfig, "json:dumps", doc="Never runs.", extra=("credential: int",)),
        base_image=IMAGE)
    monkeypatch.setattr(fl_pipeline, "client_credentials", client_credentials)
    monkeypatch.setattr(fl_pipeline, "client", int_client)
    return compile_to(tmp_path, fl_pipeline.build_pipeline(2), "old.yaml")


def test_an_untyped_id_list_into_an_int_input_is_still_refused(monkeypatch, tmp_path):
    path = _pipeline_with_int_ids_into(monkeypatch, tmp_path)
    with pytest.raises(CompiledPipelineError, match="credential.*got string"):
        check_compiled(path)
    result = run(path, tmp_path, num_clients=1, rounds=1)
    assert not result.succeeded
    assert 'input parameter "credential" type mismatch: expect NUMBER_INTEGER, got string' \
        in result.error


def test_dsl_if_on_an_int_parameter_runs_as_the_backend_evaluates_it(tmp_path):
    """The SDK writes ``int(inputs.parameter_values[...]) > 1``; the condition's DAG driver
    evaluates it on the resolved (double) value."""
    @dsl.pipeline(name="branch")
    def branch(count: int = 1):
        with dsl.If(count > 1):
            describe(n=count)
        with dsl.Else():
            echo(text="small")

    path = compile_to(tmp_path, branch)
    big, small = run(path, tmp_path, count=2), run(path, tmp_path, count=1)
    assert big.succeeded and small.succeeded, (big.error, small.error)
    assert big.outputs["describe"]["parameters"]["Output"] == "int:2" and "echo" not in big.outputs
    assert small.outputs["echo"]["parameters"]["Output"] == "small"
    assert "describe" not in small.outputs
