"""The compiled platform document, parsed strictly with kfp-kubernetes' protobuf: what the
KFP backend would silently drop is refused at compile time."""

import copy

import pytest
import yaml

import pipelines.fl_pipeline as fl_pipeline
from pipelines.compile import CompiledPipelineError, compile_pipeline
from pipelines.fl_pipeline import PLATFORM_NEEDS
from pipelines.platform_spec import PlatformSpecError, check_platform, platform_problems
from tests.support.paths import REPO_ROOT

PIPELINE = REPO_ROOT / "compiled" / "fl_pipeline.yaml"


@pytest.fixture(scope="module")
def documents():
    ir, platform = yaml.safe_load_all(PIPELINE.read_text())
    return ir, platform


def executors(platform):
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_the_compiled_platform_document_is_sound(documents):
    ir, platform = documents
    assert platform_problems(ir, platform, PLATFORM_NEEDS) == []
    # Every task that needs the run's identity or a role label has an entry.
    assert {"exec-aggregator", "exec-client", "exec-client-2", "exec-create-service",
            "exec-create-checkpoint-volume", "exec-delete-service",
            "exec-export-model"} <= set(executors(platform))


@pytest.mark.parametrize("mangle, message", [
    (lambda p: p.update(platforms=[p["platforms"]]), "must be a mapping|platforms"),
    (lambda p: p.update(platform=p.pop("platforms")), 'no field named "platform"'),
    (lambda p: p["platforms"].update(k8s=p["platforms"].pop("kubernetes")),
     "no 'kubernetes' platform"),
    (lambda p: executors(p)["exec-aggregator"].update(
        podMetadatas=executors(p)["exec-aggregator"].pop("podMetadata")),
     'executor exec-aggregator: .*no field named "podMetadatas"'),
    (lambda p: executors(p)["exec-client"]["pvcMount"][0].update(mountpath="/x"),
     'no field named "mountpath"'),
    (lambda p: executors(p)["exec-client"].update(fieldPathAsEnv={"name": "KFP_RUN_ID"}),
     "exec-client"),
    (lambda p: executors(p).update({"exec-clinet": executors(p)["exec-client"]}),
     "executor exec-clinet is configured but not in the pipeline's IR"),
    (lambda p: executors(p).pop("exec-delete-service"),
     "exec-delete-service lacks env KFP_RUN_ID"),
    (lambda p: executors(p)["exec-client-2"]["podMetadata"]["labels"].clear(),
     "exec-client-2 lacks pod label fl-role=client"),
    (lambda p: executors(p)["exec-aggregator"].pop("pvcMount"),
     "exec-aggregator does not mount a volume at /fl/checkpoint"),
    (lambda p: executors(p)["exec-client"].pop("pvcMount"),
     "no executor of exec-client mounts a volume at /fl/data"),
])
def test_what_the_backend_would_drop_or_misread_is_refused(documents, mangle, message):
    ir, platform = documents
    broken = copy.deepcopy(platform)
    mangle(broken)
    with pytest.raises(PlatformSpecError, match=message):
        check_platform(ir, broken, PLATFORM_NEEDS)


def test_a_platform_document_that_is_not_a_mapping_is_refused(documents):
    ir, _ = documents
    assert "must be a mapping" in platform_problems(ir, ["kubernetes"])[0]


def test_compile_refuses_a_pipeline_that_lost_its_run_identity(monkeypatch, tmp_path):
    """A task without the run-id env would build a Service for no run: compile stops."""
    monkeypatch.setattr(fl_pipeline, "_with_run_identity",
                        lambda task: task.set_caching_options(False))
    output = tmp_path / "fl_pipeline.yaml"
    output.write_text("kept\n")
    with pytest.raises(CompiledPipelineError, match="exec-aggregator lacks env KFP_RUN_ID"):
        compile_pipeline(output, 3)
    assert output.read_text() == "kept\n"  # the earlier file is left as it was
    assert list(tmp_path.iterdir()) == [output]  # and no draft is left behind
