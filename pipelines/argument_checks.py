"""Pipeline arguments checked before anything starts (no task, no process, no output dir):
each bad value gets one message naming the parameter and what it accepts.

The checks are the settings' own (``contract.settings``): the ones each runtime applies to its
flags and its task inputs again at run time. Here they run so that a typo in the KFP UI or on
the command line fails in a second rather than after the Service, the volume and N pods were
created.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contract.settings import in_range, problems, settings_of
from pipelines.parameters import PIPELINE_SETTINGS, PipelineArgumentError

# Stricter in a pipeline than on a command line: a Service cannot target port 0.
PIPELINE_ONLY_CHECKS = {"aggregator_port": in_range(1, 65535)}


def check_arguments(values: Mapping[str, Any], *, local: bool = False) -> None:
    """Raise PipelineArgumentError listing every bad argument in ``values`` (the pipeline's
    parameters, defaults filled in). ``local``: a data path must exist on this machine."""
    found = [problem for cls in PIPELINE_SETTINGS for problem in _problems_of(cls, values)]
    found += [problem for name, check in PIPELINE_ONLY_CHECKS.items() if name in values
              if (problem := check(name, values[name]))]
    if local:
        found += filter(None, [_local_data_path(values)])
    if found:
        raise PipelineArgumentError("; ".join(dict.fromkeys(found)))  # num_clients: once


def _problems_of(cls: type, values: Mapping[str, Any]) -> list[str]:
    """``cls``'s checks on the parameters that feed its settings, named as parameters (a
    parameter with a stricter pipeline-only check gets that one instead)."""
    parameter_of = {s.name: s.parameter for s in settings_of(cls)
                    if not s.spec.wired and s.parameter not in PIPELINE_ONLY_CHECKS}
    mine = {name: values[parameter] for name, parameter in parameter_of.items()
            if parameter in values}
    return problems(cls, mine, parameter_of.__getitem__)


def _local_data_path(values: Mapping[str, Any]) -> str | None:
    """On this machine a data path must exist for every client (``{client_id}`` filled in);
    a path inside a data volume is remapped by the local runner and not checked here."""
    uri = str(values.get("data_uri") or "")
    if not uri or "://" in uri or values.get("data_pvc"):
        return None
    clients = range(max(int(values.get("num_clients") or 1), 1))
    missing = sorted({uri.replace("{client_id}", str(c)) for c in clients
                      if not Path(uri.replace("{client_id}", str(c))).exists()})
    if not missing:
        return None
    return f"data_uri: no such file or directory: {', '.join(missing[:3])}"
