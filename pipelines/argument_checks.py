"""Pipeline arguments checked before anything starts (no task, no process, no output dir):
each bad value gets one message naming the parameter and what it accepts.

The components check their own flags again at run time; this is so that a typo in the KFP UI
or on the command line fails in a second rather than after the Service, the volume and N pods
were created.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from client_component.cli import UPDATE_DTYPES
from client_component.datasets import DATASETS
from client_component.model_config import LOGIT_ADJUSTMENTS, ModelConfig, ModelConfigError
from client_component.partition import PartitionError, parse_partition
from pipelines.parameters import PipelineArgumentError
from server_component.strategies import StrategyError, parse_strategy

DATASETS_NEEDING_DATA = ("npz", "image_folder", "csv")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def check_arguments(values: Mapping[str, Any], *, local: bool = False) -> None:
    """Raise PipelineArgumentError listing every bad argument in ``values`` (the pipeline's
    parameters, defaults filled in). ``local``: a data path must exist on this machine."""
    problems = [message for check in _CHECKS if (message := check(values))]
    if local:
        problems += filter(None, [_local_data_path(values)])
    if problems:
        raise PipelineArgumentError("; ".join(problems))


def _at_least(name: str, low: float, strict: bool = False) -> Callable[[Mapping], str | None]:
    def check(values: Mapping[str, Any]) -> str | None:
        value = values.get(name)
        if value is None or (value > low if strict else value >= low):
            return None
        bound = f"greater than {low:g}" if strict else f"at least {low:g}"
        return f"{name} must be {bound}, got {value!r}"
    return check


def _one_of(name: str, accepted: tuple[str, ...]) -> Callable[[Mapping], str | None]:
    def check(values: Mapping[str, Any]) -> str | None:
        value = values.get(name)
        if value is None or value in accepted:
            return None
        return f"{name} {value!r} is not accepted; accepted: {', '.join(accepted)}"
    return check


def _min_clients(values: Mapping[str, Any]) -> str | None:
    n, m = values.get("num_clients"), values.get("min_clients")
    if m is None or n is None or m == 0 or 1 <= m <= n:
        return None
    return f"min_clients must be 0 (all clients) or in 1..num_clients={n}, got {m}"


def _port(values: Mapping[str, Any]) -> str | None:
    port = values.get("aggregator_port")
    if port is None or 1 <= port <= 65535:
        return None
    return f"aggregator_port must be in 1..65535, got {port}"


def _parses(name: str, parse: Callable[[str], object], error: type[Exception],
            default: str) -> Callable[[Mapping], str | None]:
    """The parser the component uses accepts the value (its error names what it accepts)."""
    def check(values: Mapping[str, Any]) -> str | None:
        try:
            parse(values.get(name, default))
        except error as exc:
            return f"{name}: {exc}"
        return None
    return check


def _model(values: Mapping[str, Any]) -> str | None:
    config = ModelConfig(values.get("model", "auto"), values.get("model_width", 32),
                         values.get("model_depth", 2), values.get("norm", "group"),
                         values.get("optimizer", "auto"))
    try:
        config.validate()
    except ModelConfigError as exc:
        return f"model: {exc}"
    return None


def _data_uri(values: Mapping[str, Any]) -> str | None:
    dataset = values.get("dataset")
    if dataset in DATASETS_NEEDING_DATA and not values.get("data_uri"):
        return (f"data_uri is required for dataset {dataset} (a path, a path inside data_pvc, "
                "or an http(s) URL)")
    return None


def _checkpoint_size(values: Mapping[str, Any]) -> str | None:
    size = values.get("checkpoint_size")
    if size is None or _QUANTITY.match(str(size)):
        return None
    return f"checkpoint_size {size!r} is not a Kubernetes quantity (e.g. 1Gi, 500Mi)"


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


_CHECKS: tuple[Callable[[Mapping[str, Any]], str | None], ...] = (
    _at_least("num_clients", 1), _at_least("rounds", 1), _at_least("local_epochs", 1),
    _at_least("local_steps", 0),
    _at_least("batch_size", 1), _at_least("learning_rate", 0, strict=True),
    _at_least("image_size", 8), _at_least("model_width", 1), _at_least("model_depth", 1),
    _at_least("fedprox_mu", 0), _at_least("round_timeout", 0), _min_clients, _port,
    _one_of("dataset", DATASETS), _one_of("class_weights", ("none", "balanced")),
    _one_of("logit_adjustment", LOGIT_ADJUSTMENTS),
    _one_of("update_dtype", UPDATE_DTYPES),
    _parses("strategy", parse_strategy, StrategyError, "fedavg"),
    _parses("partition", parse_partition, PartitionError, "iid"), _model, _data_uri,
    _checkpoint_size,
)
