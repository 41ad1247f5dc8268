"""Pipeline parameters as the compiled YAML declares them: names, types and defaults."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

_CASTS: dict[str, Callable[[Any], Any]] = {
    "NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "STRING": str,
    "BOOLEAN": lambda v: v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes"),
}


class PipelineArgumentError(ValueError):
    """An argument the pipeline does not declare, or a value of the wrong type."""


def cast_parameters(values: Mapping[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    """Cast values to the declared parameter types (the YAML stores integers as 5.0)."""
    out = {}
    for name, value in values.items():
        kind = definitions.get(name, {}).get("parameterType", "STRING")
        out[name] = _CASTS.get(kind, lambda v: v)(value)
    return out


def root_parameters(pipeline_yaml: Path) -> dict[str, Any]:
    ir = next(yaml.safe_load_all(Path(pipeline_yaml).read_text()))
    return ir["root"].get("inputDefinitions", {}).get("parameters", {})


def typed_arguments(definitions: Mapping[str, Any], raw: Mapping[str, str]) -> dict[str, Any]:
    """``raw`` NAME=VALUE strings checked against the pipeline and cast to their types."""
    unknown = sorted(set(raw) - set(definitions))
    if unknown:
        raise PipelineArgumentError(
            f"unknown pipeline parameter(s) {unknown}; accepted: {sorted(definitions)}")
    typed = {}
    for name, value in raw.items():
        try:
            typed[name] = cast_parameters({name: value}, definitions)[name]
        except ValueError:
            kind = definitions[name]["parameterType"]
            raise PipelineArgumentError(f"parameter {name}={value!r} is not a {kind}") from None
    return typed


def with_defaults(definitions: Mapping[str, Any], raw: Mapping[str, str]) -> dict[str, Any]:
    """Every pipeline parameter: its declared default, overridden by ``raw``, all typed."""
    defaults = {name: d.get("defaultValue") for name, d in definitions.items()}
    return cast_parameters({**defaults, **typed_arguments(definitions, raw)}, definitions)


def parse_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``."""
    arguments = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise PipelineArgumentError(f"--arg expects NAME=VALUE, got {pair!r}")
        arguments[name] = value
    return arguments
