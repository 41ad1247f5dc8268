"""The compiled Kubernetes platform document checked against kfp-kubernetes' own protobuf.

The KFP API server keeps a second YAML document only if it parses as a ``PlatformSpec`` with
a ``kubernetes`` entry; anything else (``platforms`` written as a list, a misspelt key) is
dropped without a word, and the run goes ahead with no pod labels, no volume mounts and no
run-id variables: the Service selects nothing and the clients fail far from the cause. So
the document is parsed here the strict way, unknown fields refused: the envelope as
``ml_pipelines.PlatformSpec``, each executor as ``kfp_kubernetes.KubernetesExecutorConfig``
(the message the backend's Argo compiler and driver unmarshal), every executor it configures
must exist in the IR, and every requirement the pipeline states must be met.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

_INSTANCE_SUFFIX = re.compile(r"-\d+$")  # exec-client-2: the second use of comp-client


@dataclass(frozen=True)
class ExecutorNeeds:
    """What the pipeline needs from the platform config of every executor of one component."""

    component: str  # executor label without its instance suffix: "exec-client"
    env_from_field_paths: Mapping[str, str] = field(default_factory=dict)  # name -> fieldPath
    labels: Mapping[str, str] = field(default_factory=dict)
    mounts: Sequence[str] = ()  # paths every executor of the component mounts a PVC at
    mounted_by_some: Sequence[str] = ()  # paths at least one of them mounts (a dsl.If branch)


class PlatformSpecError(ValueError):
    """The compiled platform document would be ignored or misread by the KFP backend."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def platform_problems(ir: Mapping[str, Any], platform: Any,
                      needs: Sequence[ExecutorNeeds] = ()) -> list[str]:
    """Every reason the backend would drop or misread ``platform``; empty when it is sound."""
    envelope = _parse(platform, pipeline_spec_pb2.PlatformSpec(), "platform document")
    if isinstance(envelope, str):
        return [envelope]
    if "kubernetes" not in envelope.platforms:
        return ["platform document has no 'kubernetes' platform: the backend ignores it"]
    executors = platform["platforms"]["kubernetes"].get("deploymentSpec", {}).get("executors", {})
    known = ir.get("deploymentSpec", {}).get("executors", {})
    problems, parsed = [], {}
    for label, config in executors.items():
        message = _parse(config, kubernetes_executor_config_pb2.KubernetesExecutorConfig(),
                         f"executor {label}")
        if isinstance(message, str):
            problems.append(message)
        else:
            parsed[label] = message
        if label not in known:
            problems.append(f"executor {label} is configured but not in the pipeline's IR")
    for need in needs:
        problems += _unmet(need, parsed, set(executors), known)
    return problems


def check_platform(ir: Mapping[str, Any], platform: Any,
                   needs: Sequence[ExecutorNeeds] = ()) -> None:
    """Raise PlatformSpecError naming every problem ``platform_problems`` finds."""
    problems = platform_problems(ir, platform, needs)
    if problems:
        raise PlatformSpecError(problems)


def _parse(document: Any, message: Any, what: str) -> Any:
    if not isinstance(document, Mapping):
        return f"{what} must be a mapping, got {type(document).__name__}: the backend ignores it"
    try:
        return json_format.ParseDict(document, message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        return f"{what}: {exc}"


def _unmet(need: ExecutorNeeds, parsed: Mapping[str, Any], configured: set[str],
           known: Mapping[str, Any]) -> list[str]:
    """What ``need`` asks of its executors that their parsed configs lack (an executor whose
    config did not parse is already reported)."""
    labels = [label for label in known if _INSTANCE_SUFFIX.sub("", label) == need.component
              or label == need.component]
    if not labels:
        return [f"no executor {need.component} in the pipeline's IR"]
    empty = kubernetes_executor_config_pb2.KubernetesExecutorConfig()
    problems = []
    for label in labels:
        if label in configured and label not in parsed:
            continue
        config = parsed.get(label, empty)
        env = {item.name: item.field_path for item in config.field_path_as_env}
        problems += [f"executor {label} lacks env {name} from field path {path}"
                     for name, path in need.env_from_field_paths.items() if env.get(name) != path]
        problems += [f"executor {label} lacks pod label {key}={value}"
                     for key, value in need.labels.items()
                     if config.pod_metadata.labels.get(key) != value]
        problems += [f"executor {label} does not mount a volume at {path}"
                     for path in need.mounts if path not in _mount_paths(config)]
    for path in need.mounted_by_some:
        if not any(path in _mount_paths(parsed[label]) for label in labels if label in parsed):
            problems.append(f"no executor of {need.component} mounts a volume at {path}")
    return problems


def _mount_paths(config: Any) -> set[str]:
    return {mount.mount_path for mount in config.pvc_mount}
