"""The compiled pipeline: fresh, hermetic, strictly valid IR, and shaped as designed."""

import re
import subprocess
import sys

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from components import aggregator, client, service
from components.embedding import embedded_files
from components.runtime import (
    CLIENT_PACKAGES,
    EXPORT_PACKAGES,
    PYTHON_IMAGE,
    SERVER_PACKAGES,
    SERVICE_PACKAGES,
    TENSORFLOW_IMAGE,
)
from pipelines.compile import compile_pipeline
from pipelines.fl_pipeline import CLIENT_POD_PARAMETERS
from pipelines.kfp_pod_patch import pod_patch
from tests.support.paths import REPO_ROOT

COMMITTED = REPO_ROOT / "compiled" / "fl_pipeline.yaml"


def load(path):
    ir, platform = yaml.safe_load_all(path.read_text())
    return ir, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def compiled():
    return load(COMMITTED)


def test_committed_yaml_equals_a_fresh_compile(tmp_path):
    fresh = tmp_path / "fresh.yaml"
    subprocess.run([sys.executable, "-m", "pipelines.compile", "--output", str(fresh),
                    "--num-clients", "5"], cwd=REPO_ROOT, check=True, capture_output=True)
    assert fresh.read_text() == COMMITTED.read_text(), (
        "compiled/fl_pipeline.yaml is stale: run `make compile` and commit it")


def test_ir_parses_strictly_as_a_pipeline_spec(compiled):
    ir, _ = compiled
    spec = json_format.ParseDict(ir, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    assert spec.pipeline_info.name == "fl-on-kubeflow"


def test_pipeline_parameters_and_runtime_num_clients(compiled):
    ir, _ = compiled
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {"num_clients", "rounds", "local_epochs", "batch_size",
                           "learning_rate", "dataset", "data_uri", "partition", "seed",
                           "aggregator_port", "strategy", "min_clients", "round_timeout",
                           "checkpoint_size", "data_pvc", "data_sha256", "label_column",
                           "labels", "uncertainty", "image_size", "model", "model_width",
                           "model_depth", "norm",
                           "fedprox_mu", "class_weights", "logit_adjustment", "optimizer",
                           "local_steps", "update_dtype",
                           # client and aggregator settings the UI lacked before "One contract"
                           "channels", "fresh_optimizer", "connect_timeout_s",
                           "max_update_mb", "shutdown_grace", "threads",
                           # secure aggregation (issue 16), one parameter feeding both sides
                           "secure_aggregation", "secagg_threshold", "secagg_neighbours",
                           "secagg_clip", "secagg_max_examples",
                           # differential privacy (issue 17), shared the same way
                           "dp", "dp_noise_multiplier", "dp_clip_norm", "dp_delta",
                           "dp_target_epsilon", "dp_clip_quantile",
                           # the client pods' image and resources (issue 18, GPU clients)
                           "client_image", "client_cpu_request", "client_memory_request",
                           "client_accelerator_type", "client_accelerator_count",
                           # experiment tracking (issue 18)
                           "mlflow_tracking_uri", "mlflow_experiment",
                           # client sampling (issue 18; seed now feeds the aggregator too)
                           "fraction_fit", "min_fit_clients",
                           # the exported round and every round's model (issue 18)
                           "select_model", "keep_round_models", "round_models_max_mb"}
    assert params["num_clients"]["defaultValue"] == 5
    # num_clients reaches the fan-out as a parameter: changing it needs no recompile.
    fan_out = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]["client-credentials"]
    assert fan_out["inputs"]["parameters"]["num_clients"] == {
        "componentInputParameter": "pipelinechannel--num_clients"}


def test_num_of_clients_sets_the_compile_time_default(tmp_path, monkeypatch):
    monkeypatch.setenv("NUM_OF_CLIENTS", "7")
    out = tmp_path / "p.yaml"
    subprocess.run([sys.executable, "-m", "pipelines.compile", "--output", str(out)],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    ir, _ = load(out)
    assert ir["root"]["inputDefinitions"]["parameters"]["num_clients"]["defaultValue"] == 7


def test_bad_num_of_clients_is_one_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.compile", "--output", str(tmp_path / "p.yaml"),
         "--num-clients", "0"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "--num-clients must be at least 1" in result.stderr


def test_exit_handler_wraps_the_run_and_tears_the_service_down(compiled):
    ir, _ = compiled
    root = ir["root"]["dag"]["tasks"]
    assert root["delete-service"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert root["delete-service"]["dependentTasks"] == ["exit-handler-1"]
    inner = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert {"create-service", "create-checkpoint-volume", "aggregator", "client-credentials",
            "for-loop-2"} <= set(inner)


def test_clients_fan_out_over_a_task_output_all_at_once(compiled):
    ir, _ = compiled
    loop = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]["for-loop-2"]
    assert loop["parameterIterator"]["items"] == {
        "inputParameter": "pipelinechannel--client-credentials-Output"}
    assert loop["inputs"]["parameters"]["pipelinechannel--client-credentials-Output"] == {
        "taskOutputParameter": {"outputParameterKey": "Output",
                                "producerTask": "client-credentials"}}
    assert "iteratorPolicy" not in loop  # parallelism=0: no cap
    for condition, task in (("comp-condition-4", "client"), ("comp-condition-5", "client-2")):
        client_task = ir["components"][condition]["dag"]["tasks"][task]
        assert client_task["retryPolicy"]["maxRetryCount"] == 2
        assert client_task["taskInfo"]["name"] == "client"
    # Aggregator and clients share no data edge: the backend starts them together.
    aggregator_task = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]["aggregator"]
    assert aggregator_task["dependentTasks"] == ["create-checkpoint-volume", "create-service"]
    assert "aggregator" not in loop.get("dependentTasks", [])


def test_aggregator_is_retried_and_checkpoints_on_the_runs_volume(compiled):
    ir, platform = compiled
    task = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]["aggregator"]
    assert task["retryPolicy"]["maxRetryCount"] == 2
    assert task["inputs"]["parameters"]["checkpoint_dir"] == {
        "runtimeValue": {"constant": "/fl/checkpoint"}}
    [mount] = platform["exec-aggregator"]["pvcMount"]
    assert mount["mountPath"] == "/fl/checkpoint"
    assert mount["pvcNameParameter"] == {"taskOutputParameter": {
        "outputParameterKey": "Output", "producerTask": "create-checkpoint-volume"}}


def test_the_data_volume_is_mounted_only_when_one_is_named(compiled):
    ir, platform = compiled
    branches = ir["components"]["comp-condition-branches-3"]["dag"]["tasks"]
    with_volume = branches["condition-4"]["triggerPolicy"]["condition"]
    assert with_volume == "inputs.parameter_values['pipelinechannel--data_pvc'] != ''"
    assert branches["condition-5"]["triggerPolicy"]["condition"] == f"!({with_volume})"
    [mount] = platform["exec-client"]["pvcMount"]
    assert mount["mountPath"] == "/fl/data"
    assert mount["pvcNameParameter"] == {"componentInputParameter": "pipelinechannel--data_pvc"}
    assert "pvcMount" not in platform["exec-client-2"]


def test_no_task_is_cached(compiled):
    ir, _ = compiled
    for dag in [ir["root"], *(c for c in ir["components"].values() if "dag" in c)]:
        for name, task in dag["dag"]["tasks"].items():
            if "executorLabel" in ir["components"][task["componentRef"]["name"]]:
                assert task["cachingOptions"] == {}, name  # enableCache absent = false


def test_run_identity_comes_from_the_pod_and_roles_from_static_labels(compiled):
    _, platform = compiled
    for executor in ("exec-create-service", "exec-create-checkpoint-volume",
                     "exec-delete-service", "exec-aggregator", "exec-client"):
        env = {e["name"]: e["fieldPath"] for e in platform[executor]["fieldPathAsEnv"]}
        assert env == {"KFP_RUN_ID": "metadata.labels['pipeline/runid']",
                       "KFP_NAMESPACE": "metadata.namespace"}
    assert platform["exec-aggregator"]["podMetadata"]["labels"] == {"fl-role": "aggregator"}
    assert platform["exec-client"]["podMetadata"]["labels"] == {"fl-role": "client"}


def test_hermetic_stock_images_and_runtime_installs(compiled):
    ir, _ = compiled
    executors = ir["deploymentSpec"]["executors"]
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert executors["exec-client"]["container"]["image"] == (
        "{{$.inputs.parameters['pipelinechannel--client_image']}}")
    assert params["client_image"]["defaultValue"] == TENSORFLOW_IMAGE
    for name in ("exec-aggregator", "exec-create-service", "exec-create-checkpoint-volume",
                 "exec-delete-service", "exec-client-credentials"):
        assert executors[name]["container"]["image"] == PYTHON_IMAGE
    pip_line = executors["exec-client"]["container"]["command"][2]
    assert all(f"'{p}'" in pip_line for p in CLIENT_PACKAGES)


def client_inputs(ir, **arguments):
    """The pod-spec inputs a client task's driver sees for a run with ``arguments``."""
    params = ir["root"]["inputDefinitions"]["parameters"]
    return {f"pipelinechannel--{name}": arguments.get(name, params[name]["defaultValue"])
            for name in CLIENT_POD_PARAMETERS}


def test_client_resources_are_run_parameters_the_driver_resolves(compiled):
    ir, _ = compiled
    params = ir["root"]["inputDefinitions"]["parameters"]
    # STRING, since the driver reads them with GetStringValue(): a NUMBER count reads as "".
    assert all(params[name]["parameterType"] == "STRING" for name in CLIENT_POD_PARAMETERS)
    executors = ir["deploymentSpec"]["executors"]
    containers = [executors[label]["container"] for label in ("exec-client", "exec-client-2")]
    assert containers[0] == containers[1]  # the branches with and without a data volume
    container = containers[0]
    assert container["resources"] == {
        "resourceCpuRequest": "{{$.inputs.parameters['pipelinechannel--client_cpu_request']}}",
        "resourceMemoryRequest":
            "{{$.inputs.parameters['pipelinechannel--client_memory_request']}}",
        "accelerator": {
            "resourceType": "{{$.inputs.parameters['pipelinechannel--client_accelerator_type']}}",
            "resourceCount":
                "{{$.inputs.parameters['pipelinechannel--client_accelerator_count']}}"}}
    default = pod_patch(container, client_inputs(ir))
    assert (default.image, default.requests, default.limits) == (
        TENSORFLOW_IMAGE, {"cpu": "1", "memory": "2Gi"}, {})
    gpu = pod_patch(container, client_inputs(
        ir, client_image=TENSORFLOW_IMAGE + "-gpu", client_cpu_request="4",
        client_memory_request="16Gi", client_accelerator_type="nvidia.com/gpu",
        client_accelerator_count="2"))
    assert (gpu.image, gpu.requests, gpu.limits) == (
        TENSORFLOW_IMAGE + "-gpu", {"cpu": "4", "memory": "16Gi"}, {"nvidia.com/gpu": "2"})


def test_every_client_task_carries_the_pod_inputs_its_driver_resolves(compiled):
    ir, _ = compiled
    branches = [task for component in ir["components"].values()
                for task in component.get("dag", {}).get("tasks", {}).values()
                if re.fullmatch(r"comp-client(-\d+)?", task["componentRef"]["name"])]
    assert len(branches) == 2  # with and without a data volume
    for task in branches:
        inputs = task["inputs"]["parameters"]
        assert all(inputs[f"pipelinechannel--{name}"] == {
            "componentInputParameter": f"pipelinechannel--{name}"}
            for name in CLIENT_POD_PARAMETERS)


def test_embedded_packages_are_exactly_the_code_the_tests_import():
    expected = {
        service.create_service: ["server_component"],
        service.create_checkpoint_volume: ["server_component"],
        service.delete_service: ["server_component"],
        aggregator.aggregator: ["server_component", "contract"],
        client.client: ["client_component", "contract"],
    }
    for component, packages in expected.items():
        files = embedded_files(component)
        on_disk = {
            f"./{p.relative_to(REPO_ROOT)}": p.read_bytes()
            for package in packages for p in (REPO_ROOT / package).rglob("*.py")
            if "__pycache__" not in p.parts
        }
        assert files == on_disk


def test_component_bodies_only_delegate_and_runtime_never_imports_kfp():
    for package in ("server_component", "client_component", "contract"):
        for path in (REPO_ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert "import kfp" not in text and "from kfp" not in text, path


def _imported_packages(package: str) -> dict[str, set[str]]:
    """Each module of ``package`` -> the top-level packages it imports (anywhere in it)."""
    import ast

    found = {}
    for path in (REPO_ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO_ROOT))] = names
    return found


def test_the_runtimes_share_only_the_contract():
    """The client runtime imports none of the aggregator's, nor the aggregator the client's;
    the contract imports neither (so the client component embeds no server code)."""
    for package, forbidden in (("client_component", {"server_component"}),
                               ("server_component", {"client_component"}),
                               ("contract", {"server_component", "client_component"})):
        for module, names in _imported_packages(package).items():
            assert not names & forbidden, f"{module} imports {sorted(names & forbidden)}"


def test_base_image_override(tmp_path):
    out = tmp_path / "p.yaml"
    subprocess.run([sys.executable, "-m", "pipelines.compile", "--output", str(out),
                    "--base-image", "registry.example/fl:1"], cwd=REPO_ROOT, check=True,
                   capture_output=True)
    ir, _ = load(out)
    images = {e["container"]["image"] for e in ir["deploymentSpec"]["executors"].values()}
    # The client's image is the run parameter client_image, whose default --base-image sets.
    assert images == {"registry.example/fl:1",
                      "{{$.inputs.parameters['pipelinechannel--client_image']}}"}
    client_image = ir["root"]["inputDefinitions"]["parameters"]["client_image"]
    assert client_image["defaultValue"] == "registry.example/fl:1"


def test_runtime_installs_match_the_tested_versions():
    from importlib.metadata import version

    from packaging.requirements import Requirement

    for spec in SERVER_PACKAGES + SERVICE_PACKAGES + EXPORT_PACKAGES:
        requirement = Requirement(spec)
        assert requirement.specifier.contains(version(requirement.name)), spec


# What the component images already hold (python:3.11-slim: the standard library only;
# tensorflow/tensorflow: TensorFlow with Keras and numpy).
IMAGE_PROVIDES = {"aggregator": set(), "client": {"tensorflow", "keras", "numpy"},
                  "export-model": {"tensorflow", "keras", "numpy"}}
# Installed with a package a component names: flask brings werkzeug, requests brings urllib3.
TRANSITIVE = {"werkzeug": "flask", "urllib3": "requests"}
# Modules that only another task runs: the service tasks (SERVICE_PACKAGES) run
# server_component.k8s_objects, the export task (EXPORT_PACKAGES) client_component.export.
RUN_BY_ANOTHER_TASK = {"aggregator": {"k8s_objects.py"}, "client": {"export.py"},
                       "export-model": set()}


def _third_party_imports(packages: list[str], skipped: set[str]) -> set[str]:
    """Top-level modules outside the standard library that the packages' code imports."""
    import ast

    found = set()
    for package in packages:
        for path in (REPO_ROOT / package).rglob("*.py"):
            if path.name in skipped:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    local = {"contract", "server_component", "client_component"}
    return {m for m in found - local if m not in sys.stdlib_module_names}


@pytest.mark.parametrize(("component", "packages", "installed"), [
    ("aggregator", ["server_component", "contract"], SERVER_PACKAGES),
    ("client", ["client_component", "contract"], CLIENT_PACKAGES),
    ("export-model", ["client_component", "contract"], EXPORT_PACKAGES),
])
def test_every_import_of_a_pod_is_installed_in_it(component, packages, installed):
    """The local runner runs in this venv and would hide a module the pod lacks: every
    third-party import of the code a component ships is in its image or its pip line."""
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement

    def canonical(name: str) -> str:
        return name.lower().replace("_", "-")

    named = {canonical(Requirement(spec).name) for spec in installed}
    distributions = packages_distributions()
    missing = []
    for module in sorted(_third_party_imports(packages, RUN_BY_ANOTHER_TASK[component])):
        dists = {canonical(d) for d in distributions.get(module, [module])}
        carrier = TRANSITIVE.get(module)
        if module in IMAGE_PROVIDES[component] or (carrier and carrier in named):
            continue
        if not dists & named:
            missing.append(f"{module} ({', '.join(sorted(dists))})")
    assert not missing, f"{component} pod lacks {missing}"


def test_compile_in_process_is_deterministic(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    compile_pipeline(a, 5)
    compile_pipeline(b, 5)
    assert a.read_text() == b.read_text() == COMMITTED.read_text()


def test_the_aggregator_declares_each_output_with_its_artifact_type(compiled):
    ir, _ = compiled
    outputs = ir["components"]["comp-aggregator"]["outputDefinitions"]["artifacts"]
    assert {name: spec["artifactType"]["schemaTitle"] for name, spec in outputs.items()} == {
        "final_model": "system.Model",
        "metrics": "system.Metrics",
        "classification": "system.ClassificationMetrics",
        "report": "system.HTML",
        "round_metrics": "system.Dataset",
        "client_metrics": "system.Dataset",
    }
    export = ir["components"]["comp-export-model"]
    assert export["inputDefinitions"]["artifacts"]["final_model"]["artifactType"][
        "schemaTitle"] == "system.Model"
    assert export["outputDefinitions"]["artifacts"]["keras_model"]["artifactType"][
        "schemaTitle"] == "system.Model"


def test_every_pod_argument_fits_the_kernels_limit_per_argument():
    from pipelines.compile import MAX_ARGUMENT_BYTES, argument_length_problems

    # The limit is the kernel's: one byte less execs, the limit itself does not.
    subprocess.run(["true", "x" * (MAX_ARGUMENT_BYTES - 1)], check=True)
    with pytest.raises(OSError, match="Argument list too long"):
        subprocess.run(["true", "x" * MAX_ARGUMENT_BYTES])
    ir, _ = load(COMMITTED)
    assert argument_length_problems(ir) == []
    too_long = {"deploymentSpec": {"executors": {"exec-x": {"container": {
        "command": ["sh", "y" * MAX_ARGUMENT_BYTES]}}}}}
    [problem] = argument_length_problems(too_long)
    assert problem.startswith(f"executor exec-x: a command argument of {MAX_ARGUMENT_BYTES} "
                              "bytes exceeds Linux's")
