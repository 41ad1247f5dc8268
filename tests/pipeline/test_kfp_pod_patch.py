"""A task's image and resources resolved by the KFP driver's rules (driver.go
initPodSpecPatch): what a pod asks for, and where the driver fails the task."""

import pytest

from pipelines.kfp_driver import DriverError
from pipelines.kfp_pod_patch import parse_quantity, pod_patch

CHANNEL = "{{$.inputs.parameters['pipelinechannel--%s']}}"
CONTAINER = {
    "image": CHANNEL % "image",
    "resources": {"resourceCpuRequest": CHANNEL % "cpu",
                  "resourceMemoryRequest": CHANNEL % "memory",
                  "accelerator": {"resourceType": CHANNEL % "gpu_type",
                                  "resourceCount": CHANNEL % "gpu_count"}},
}


def inputs(**values):
    base = {"image": "tf:gpu", "cpu": "2", "memory": "8Gi", "gpu_type": "nvidia.com/gpu",
            "gpu_count": "1"}
    return {f"pipelinechannel--{k}": v for k, v in {**base, **values}.items()}


def test_placeholders_resolve_to_the_run_values():
    patch = pod_patch(CONTAINER, inputs())
    assert (patch.image, patch.requests, patch.limits) == (
        "tf:gpu", {"cpu": "2", "memory": "8Gi"}, {"nvidia.com/gpu": "1"})
    assert patch.describe() == ("image tf:gpu; requests cpu=2 memory=8Gi; "
                                "limits nvidia.com/gpu=1")


def test_an_empty_accelerator_type_asks_for_no_accelerator():
    assert pod_patch(CONTAINER, inputs(gpu_type="")).limits == {}


def test_a_number_reads_as_empty_text_so_a_numeric_gpu_count_silently_asks_for_none():
    # Why the pipeline's resource parameters are STRING: GetStringValue() of 1.0 is "".
    assert pod_patch(CONTAINER, inputs(gpu_count=1.0)).limits == {}


def test_a_numeric_cpu_request_fails_the_task_as_the_driver_does():
    with pytest.raises(DriverError, match="failed to init podSpecPatch: quantities must match"):
        pod_patch(CONTAINER, inputs(cpu=1.0))


@pytest.mark.parametrize("text", ["1", "500m", "0.5", "2Gi", "1e3", "128974848"])
def test_kubernetes_quantities_parse(text):
    assert parse_quantity(text) == text


@pytest.mark.parametrize("text, reason", [("lots", "quantities must match"),
                                          ("2Gm", "unable to parse quantity's suffix"),
                                          ("", "quantities must match")])
def test_bad_quantities_fail_like_parse_quantity(text, reason):
    with pytest.raises(DriverError, match=reason):
        parse_quantity(text)


def test_constants_and_the_older_numeric_fields_are_used_as_the_driver_uses_them():
    container = {"image": "python:3.11-slim",
                 "resources": {"cpuLimit": 2.0, "memoryLimit": 0.5,
                               "accelerator": {"type": "nvidia.com/gpu", "count": "2"}}}
    patch = pod_patch(container, {})
    assert patch.image == "python:3.11-slim"
    assert patch.limits == {"cpu": "2", "memory": "0.5G", "nvidia.com/gpu": "2"}


def test_a_placeholder_without_its_input_fails():
    with pytest.raises(DriverError, match="did not contain"):
        pod_patch({"image": CHANNEL % "missing"}, {})
