"""Settings of the pipeline itself rather than of a runtime: the volumes a run creates or
mounts, and what the client pods ask of their nodes (image, CPU, memory, accelerators).
Defined like the runtimes' settings (``contract.settings``), so that they become pipeline
parameters, argument checks and README rows the same way.

The client's pod settings are STRING parameters on purpose: the KFP driver
(``backend/src/v2/driver/driver.go`` ``initPodSpecPatch``) reads a resource placeholder's
run-time value with ``GetStringValue()``, so a number would arrive as "" and its GPU limit
would silently vanish.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from components.runtime import TENSORFLOW_IMAGE
from contract.settings import setting

_QUANTITY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_CPU = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
_COUNT = re.compile(r"^\d+$")
# A Kubernetes extended resource: a domain-prefixed name (nvidia.com/gpu, amd.com/gpu).
_EXTENDED_RESOURCE = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+/"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_IMAGE = re.compile(r"^[^\s]+$")


def kubernetes_quantity(name: str, value: Any) -> str | None:
    """Refuse what Kubernetes would not take as a storage or memory size."""
    if _QUANTITY.match(str(value)):
        return None
    return f"{name} {value!r} is not a Kubernetes quantity (e.g. 1Gi, 500Mi)"


def cpu_quantity(name: str, value: Any) -> str | None:
    """Refuse what KFP and Kubernetes would not take as a CPU amount."""
    if _CPU.match(str(value)):
        return None
    return f"{name} {value!r} is not a CPU amount (e.g. 1, 0.5, 500m)"


def accelerator_type(name: str, value: Any) -> str | None:
    """Refuse an accelerator that is not a Kubernetes extended resource name; empty = none."""
    if value == "" or _EXTENDED_RESOURCE.match(str(value)):
        return None
    return (f"{name} {value!r} is not a Kubernetes extended resource name "
            "(e.g. nvidia.com/gpu, amd.com/gpu; empty for none)")


def accelerator_count(name: str, value: Any) -> str | None:
    """Refuse a count that is not a whole number written as text."""
    if _COUNT.match(str(value)):
        return None
    return f"{name} {value!r} must be a whole number of accelerators (e.g. 1)"


def container_image(name: str, value: Any) -> str | None:
    """Refuse an empty image reference or one with spaces."""
    if _IMAGE.match(str(value)):
        return None
    return f"{name} {value!r} is not an image reference (e.g. {TENSORFLOW_IMAGE}-gpu)"


@dataclass(frozen=True)
class DeploymentConfig:
    """The run's volumes and the client pods' image and resources."""

    data_pvc: str = setting("", "PersistentVolumeClaim holding the clients' data, mounted "
                            "at /fl/data in every client (data_uri then names a path inside "
                            "it); empty: no data volume")
    checkpoint_size: str = setting("1Gi", "size of the aggregator's checkpoint volume",
                                   check=kubernetes_quantity)
    client_image: str = setting(TENSORFLOW_IMAGE, "image of the client pods; on GPU nodes "
                                f"{TENSORFLOW_IMAGE}-gpu (the same TensorFlow with CUDA)",
                                check=container_image)
    client_cpu_request: str = setting("1", "CPU each client pod requests", check=cpu_quantity)
    client_memory_request: str = setting("2Gi", "memory each client pod requests",
                                         check=kubernetes_quantity)
    client_accelerator_type: str = setting(
        "", "accelerator each client pod asks for, as a Kubernetes extended resource "
        "(nvidia.com/gpu); empty: none", check=accelerator_type)
    client_accelerator_count: str = setting(
        "1", "how many of client_accelerator_type each client pod asks for (a limit; text, "
        "as the KFP driver reads it)", check=accelerator_count)
