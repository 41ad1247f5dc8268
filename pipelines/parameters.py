"""Pipeline parameters: derived from the settings classes (``PIPELINE_SETTINGS``) when the
pipeline is built, and read back from a compiled YAML (names, types, defaults) to check and
type a run's arguments."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from client_component.settings import ClientConfig
from contract.settings import Setting, flags_table, settings_of, shown_default
from pipelines.deployment import DeploymentConfig
from server_component.settings import AggregatorConfig

# Whose settings become pipeline parameters, in the order the parameters are listed.
PIPELINE_SETTINGS = (AggregatorConfig, ClientConfig, DeploymentConfig)


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One pipeline parameter and the settings it feeds (``num_clients`` feeds both
    runtimes'; ``aggregator_port`` is the aggregator's ``port``)."""

    name: str
    type: type
    default: Any
    help: str
    settings: tuple[tuple[type, Setting], ...]


def pipeline_parameters(num_clients_default: int,
                        compile_defaults: Mapping[str, Any] | None = None) -> list[Parameter]:
    """Every setting a user sets per run, once each: the runtimes' settings that the
    pipeline does not wire itself, with their defaults (``num_clients`` and those named in
    ``compile_defaults``: the compile-time ones)."""
    chosen = {"num_clients": num_clients_default, **(compile_defaults or {})}
    found: dict[str, Parameter] = {}
    for cls in PIPELINE_SETTINGS:
        for item in settings_of(cls):
            if item.spec.wired:
                continue
            default = chosen.get(item.parameter, item.parameter_default)
            known = found.get(item.parameter)
            if known is None:
                found[item.parameter] = Parameter(item.parameter, item.type, default,
                                                  item.spec.help, ((cls, item),))
                continue
            if (known.type, known.default) != (item.type, default):
                raise TypeError(f"pipeline parameter {item.parameter} means different things "
                                f"to {cls.__name__} and {known.settings[0][0].__name__}")
            found[item.parameter] = dataclasses.replace(
                known, settings=(*known.settings, (cls, item)))
    return list(found.values())


def parameters_table(num_clients_default: int) -> str:
    """The README's table of the pipeline parameters."""
    rows = []
    for p in pipeline_parameters(num_clients_default):
        default = shown_default(p.default)
        if p.name == "num_clients":
            default += " (`NUM_OF_CLIENTS` at compile time)"
        rows.append(f"| `{p.name}` | {default} | {p.help} |")
    return "\n".join(["| parameter | default | what it does |", "|---|---|---|", *rows])


def component_arguments(cls: type, parameters: Mapping[str, Any], **wired: Any
                        ) -> dict[str, Any]:
    """The inputs of a component generated from ``cls`` (``components.from_settings``):
    each setting from its pipeline parameter; the wired ones, and the component's own
    extra inputs, from ``wired`` (a wired setting left out is a TypeError)."""
    arguments = dict(wired)
    for item in settings_of(cls):
        if not item.spec.task_input:
            continue
        if not item.spec.wired:
            arguments[item.name] = parameters[item.parameter]
        elif item.name not in wired:
            raise TypeError(f"{cls.__name__}.{item.name} is wired: give it to the component")
    return arguments

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
    """The pipeline's parameter definitions (name -> type, default, ...) from its YAML."""
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


def readme_tables(num_clients_default: int) -> dict[str, str]:
    """Every settings table of the README, by name (``--markdown NAME`` prints one)."""
    return {"pipeline": parameters_table(num_clients_default),
            "aggregator": flags_table(AggregatorConfig), "client": flags_table(ClientConfig)}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipelines.parameters",
                                     description="Print a settings table of the README.")
    parser.add_argument("--markdown", choices=("pipeline", "aggregator", "client"),
                        required=True)
    print(readme_tables(5)[parser.parse_args().markdown])
