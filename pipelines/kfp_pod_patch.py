"""The image and resources of a task's pod, resolved as the KFP v2 driver resolves them.

Read from kubeflow/pipelines 2.16-2.17, ``backend/src/v2/driver/driver.go``
``initPodSpecPatch`` and ``getPodResource``, and ``resolve.go``
``resolvePodSpecInputRuntimeParameter``:

- a field holding ``{{$.inputs.parameters['name']}}`` takes the task's input ``name`` with
  ``GetStringValue()``: a number or a bool reads as "" (no conversion);
- CPU and memory requests/limits are parsed with Kubernetes' ``ParseQuantity``: "" or a
  malformed value fails the task (``failed to init podSpecPatch: ...``);
- an accelerator is added as a *limit* only when its resolved type and count are both
  non-empty, so an empty type asks for none and a count that read as "" silently drops it;
- the image placeholder is resolved the same way.

The local runner uses this to fail where the driver would and to log what a pod would ask for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.kfp_driver import DriverError

_CHANNEL = re.compile(r"\$.inputs.parameters\['(.+?)'\]")
# k8s.io/apimachinery resource.ParseQuantity: the format, then the suffixes it knows.
_QUANTITY_FORMAT = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_QUANTITY = re.compile(_QUANTITY_FORMAT)
_SUFFIXES = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E"}
_EXPONENT = re.compile(r"^[eE][-+]?[0-9]+$")
_PATCH_ERROR = "failed to init podSpecPatch: "
# (new placeholder field, old numeric field, old field's Go format, limit or request, name)
_CPU_MEMORY = (
    ("resourceMemoryLimit", "memoryLimit", "{}G", "limits", "memory"),
    ("resourceMemoryRequest", "memoryRequest", "{}G", "requests", "memory"),
    ("resourceCpuLimit", "cpuLimit", "{}", "limits", "cpu"),
    ("resourceCpuRequest", "cpuRequest", "{}", "requests", "cpu"),
)


@dataclass(frozen=True)
class PodPatch:
    """What the driver's pod spec patch sets on the task's ``main`` container."""

    image: str
    requests: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the task's log: ``image X; requests cpu=1 memory=2Gi; limits ...``."""
        def listed(values: Mapping[str, str]) -> str:
            return " ".join(f"{k}={v}" for k, v in sorted(values.items())) or "none"
        return f"image {self.image}; requests {listed(self.requests)}; limits {listed(self.limits)}"


def pod_patch(container: Mapping[str, Any], inputs: Mapping[str, Any]) -> PodPatch:
    """The resolved image and resources of ``container`` (a ``deploymentSpec`` executor's
    container) for a task whose resolved inputs are ``inputs``; DriverError where the
    driver would fail the task."""
    resources = container.get("resources", {})
    patch = PodPatch(resolve_placeholder(container.get("image", ""), inputs))
    for new, old, old_format, kind, name in _CPU_MEMORY:
        value = _resource_text(resources, new, old, old_format, inputs)
        if value is not None:
            getattr(patch, kind)[name] = parse_quantity(value)
    accelerator = resources.get("accelerator", {})
    kind = (resolve_placeholder(accelerator["resourceType"], inputs)
            if accelerator.get("resourceType") else accelerator.get("type", ""))
    count = (resolve_placeholder(accelerator["resourceCount"], inputs)
             if accelerator.get("resourceCount") else _old_count(accelerator))
    if kind and count:
        patch.limits[kind] = parse_quantity(count)
    return patch


def resolve_placeholder(text: str, inputs: Mapping[str, Any]) -> str:
    """``resolvePodSpecInputRuntimeParameter``: a placeholder's input as Go's
    ``GetStringValue()`` reads it; any other text as it is."""
    match = _CHANNEL.search(text)
    if match is None:
        return text
    name = match.group(1)
    if name not in inputs:
        raise DriverError(_PATCH_ERROR + "executorInput did not contain container Image "
                          "input parameter")
    value = inputs[name]
    return value if isinstance(value, str) else ""


def parse_quantity(text: str) -> str:
    """``text`` when Kubernetes' ``ParseQuantity`` accepts it, else DriverError with its
    message."""
    match = _QUANTITY.match(text)
    if match is None:
        raise DriverError(f"{_PATCH_ERROR}quantities must match the regular expression "
                          f"'{_QUANTITY_FORMAT}'")
    suffix = match.group(2)
    if suffix not in _SUFFIXES and not _EXPONENT.match(suffix):
        raise DriverError(f"{_PATCH_ERROR}unable to parse quantity's suffix")
    return text


def _resource_text(resources: Mapping[str, Any], new: str, old: str, old_format: str,
                   inputs: Mapping[str, Any]) -> str | None:
    if resources.get(new):
        return resolve_placeholder(resources[new], inputs)
    if resources.get(old):
        return old_format.format(_go_number(resources[old]))
    return None


def _old_count(accelerator: Mapping[str, Any]) -> str:
    count = int(accelerator.get("count", 0) or 0)
    return str(count) if count > 0 else ""


def _go_number(value: Any) -> str:
    """Go's ``%v`` of a float64: 2 for 2.0, 0.5 for 0.5."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)
