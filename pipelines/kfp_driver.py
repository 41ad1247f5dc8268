"""Task inputs resolved by the KFP v2 backend's rules, for the local runner.

A real backend hands parameters between tasks as ``google.protobuf.Value``: a number is a
double, a string is a string, and nothing is converted on the way except where the backend
says so. This module reproduces what kubeflow/pipelines 2.16-2.17 does, read from its code:

- ``backend/src/apiserver/template/v2_template.go`` ``validatePipelineJobInputs``: run
  arguments must have the kind their type declares (``check_run_arguments``);
- ``backend/src/v2/component/launcher_v2.go`` ``collectOutputParameters`` and
  ``metadata/converter.go`` ``TextToPbValue``: a task's output parameter files are parsed by
  their declared type, values in the executor output file are taken as they are
  (``collect_output_parameters``);
- ``backend/src/v2/driver/resolve.go`` ``resolveInputs``: every DAG, iteration and container
  driver resolves the task's inputs, then checks them against the component's declared types;
  a STRING input turns any value into text (``PbValueToText``), every other type must already
  have its kind, or the task fails with ``input parameter "x" type mismatch: expect T, got K``
  (``resolve_task_inputs``, ``resolve_iteration_inputs``);
- ``backend/src/v2/driver/util.go`` ``getItems``: a loop iterates a list value or a JSON list
  string (``loop_items``).

Values here are plain Python values with protobuf ``Value`` semantics: None, bool, float,
str, list and dict; every number is a float, as on the backend. ``executor_json`` renders
them as the launcher's protojson does, so that a component receives ``3``, not ``3.0``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

# The messages a failing driver writes start with this, as the backend's do.
RESOLVE_PREFIX = "failed to resolve inputs: "
_NUMBER_TYPES = ("NUMBER_INTEGER", "NUMBER_DOUBLE")
_STRUCT_TYPES = ("STRUCT", "TASK_FINAL_STATUS", "TASK_CONFIG")
_GO_INT = re.compile(r"[+-]?[0-9]+")
_GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
             "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
# The runtime placeholders a driver replaces in a constant input (resolveInputParameter).
_RUN_PLACEHOLDERS = {"{{$.pipeline_job_uuid}}": "run_id", "{{$.pipeline_job_name}}": "run_name",
                     "{{$.pipeline_job_resource_name}}": "run_name",
                     "{{$.pipeline_task_name}}": "task_name"}


class DriverError(RuntimeError):
    """A task the KFP backend's driver (or launcher) would fail; the message is the backend's."""


# ---- values -----------------------------------------------------------------------------

def as_value(python: Any) -> Any:
    """A Python value as a protobuf ``Value`` holds it: every number a float."""
    if python is None or isinstance(python, bool | str):
        return python
    if isinstance(python, int | float):
        return float(python)
    if isinstance(python, list | tuple):
        return [as_value(item) for item in python]
    if isinstance(python, Mapping):
        return {str(key): as_value(item) for key, item in python.items()}
    raise DriverError(f"cannot convert {type(python).__name__} {python!r} to a protobuf Value")


def kind_of(value: Any) -> str:
    """The kind name the driver's messages use: string, number, bool, list, struct, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "struct"


def value_to_text(value: Any) -> str:
    """``metadata.PbValueToText``: how a STRING input receives a value of another kind."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return _format_float(float(value))
    return executor_json(value)


def text_to_value(text: str, parameter_type: str) -> Any:
    """``metadata.TextToPbValue``: an output parameter file parsed by its declared type."""
    def failed(reason: str) -> DriverError:
        return DriverError(f"TextToPbValue(text={json.dumps(text)}, type=\"{parameter_type}\") "
                           f"failed: {reason}")

    stripped = text.strip()
    if parameter_type == "STRING":
        return text
    if parameter_type == "NUMBER_INTEGER":
        if not _GO_INT.fullmatch(stripped) or not -2**63 <= int(stripped) < 2**63:
            raise failed(f"strconv.ParseInt: parsing {json.dumps(stripped)}: invalid syntax")
        return float(int(stripped))
    if parameter_type == "NUMBER_DOUBLE":
        try:  # Python's float() reads Go's decimal float syntax (underscores included)
            return float(stripped)
        except ValueError:
            raise failed(f"strconv.ParseFloat: parsing {json.dumps(stripped)}: invalid syntax"
                         ) from None
    if parameter_type == "BOOLEAN":
        if stripped not in _GO_BOOLS:
            raise failed(f"strconv.ParseBool: parsing {json.dumps(stripped)}: invalid syntax")
        return _GO_BOOLS[stripped]
    if parameter_type in ("LIST", "STRUCT"):
        try:
            parsed = as_value(json.loads(text))
        except (ValueError, DriverError) as exc:
            raise failed(f"proto: syntax error: {exc}") from None
        if kind_of(parsed) != ("list" if parameter_type == "LIST" else "struct"):
            raise failed("unexpected type")
        return parsed
    raise failed("unknown type. Expected STRING, NUMBER_INTEGER, NUMBER_DOUBLE, BOOLEAN, "
                 "LIST or STRUCT")


def executor_json(value: Any) -> str:
    """``value`` as JSON the way protojson writes it (compactly): ``3`` for an integral
    double, ``1e-9`` below 1e-6, digits without an exponent up to 1e21."""
    if value is None or isinstance(value, bool | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return _protojson_number(float(value))
    if isinstance(value, list):
        return "[" + ",".join(executor_json(item) for item in value) + "]"
    return "{" + ",".join(f"{json.dumps(str(key), ensure_ascii=False)}:{executor_json(item)}"
                          for key, item in value.items()) + "}"


def executor_values(value: Any) -> Any:
    """``value`` as a component receives it after protojson: integral numbers as ints."""
    return json.loads(executor_json(value))


def _protojson_number(number: float) -> str:
    if not math.isfinite(number):
        return json.dumps("NaN" if math.isnan(number) else
                          ("Infinity" if number > 0 else "-Infinity"))
    if number == 0 or 1e-6 <= abs(number) < 1e21:
        return _format_float(number)
    return re.sub(r"e-0(\d)$", r"e-\1", repr(number))


def _format_float(number: float) -> str:
    """Go's ``strconv.FormatFloat(n, 'f', -1, 64)``: shortest digits, never an exponent."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return format(Decimal(repr(number)).normalize(), "f")


# ---- run arguments and task outputs -----------------------------------------------------

def check_run_arguments(arguments: Mapping[str, Any], definitions: Mapping[str, Any]) -> None:
    """``validatePipelineJobInputs``: each argument has the kind its type declares."""
    wanted = {"NUMBER_DOUBLE": "number", "NUMBER_INTEGER": "number", "STRING": "string",
              "BOOLEAN": "bool", "LIST": "list", "STRUCT": "struct"}
    for name, definition in definitions.items():
        if name not in arguments:
            if not definition.get("isOptional") and "defaultValue" not in definition:
                raise DriverError(f"parameter {name} is not optional, yet has neither default "
                                  "value nor user provided value")
            continue
        _check_literals(name, arguments[name], definition)
        kind = wanted.get(definition.get("parameterType", ""))
        if kind is None:
            raise DriverError(f"input parameter {name} requires type "
                              f"{definition.get('parameterType', 'unknown')}")
        if kind_of(arguments[name]) != kind:
            raise DriverError(f"input parameter {name} requires type "
                              f"{definition['parameterType']}, but the parameter value is not "
                              f"of {kind} value type")
    extra = sorted(set(arguments) - set(definitions))
    if extra:
        raise DriverError(f"parameter(s) provided are not required by pipeline: "
                          f"{', '.join(extra)}")


def root_inputs(arguments: Mapping[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    """The root DAG's inputs: the run's arguments, then declared defaults (argo.go fills them
    in, and null for an optional input without one)."""
    values = {name: as_value(value) for name, value in arguments.items()}
    check_run_arguments(values, definitions)
    for name, definition in definitions.items():
        if name not in values and "defaultValue" in definition:
            values[name] = as_value(definition["defaultValue"])
        elif name not in values and definition.get("isOptional"):
            values[name] = None
    return values


def collect_output_parameters(written: Mapping[str, Any], files: Mapping[str, str | None],
                              definitions: Mapping[str, Any]) -> dict[str, Any]:
    """``collectOutputParameters``: values the executor wrote into its output file win as
    they are; every other declared output is read from its file and parsed by its type."""
    outputs = {name: as_value(value) for name, value in written.items()}
    for name, text in files.items():
        if name in outputs:
            continue
        definition = definitions.get(name)
        if definition is None:
            raise DriverError(f"failed to find output parameter name={json.dumps(name)} in "
                              "component spec")
        kind = definition.get("parameterType", "")
        if text is None:
            raise DriverError(f"failed to read output parameter name={json.dumps(name)} "
                              f"type=\"{kind}\": no such file or directory")
        outputs[name] = text_to_value(text, kind)
    return outputs


# ---- input resolution -------------------------------------------------------------------

def resolve_source(source: Mapping[str, Any], parent_inputs: Mapping[str, Any],
                   outputs: Mapping[str, Mapping[str, Any]],
                   run: Mapping[str, str] | None = None) -> Any:
    """The value one ``TaskInputsSpec.InputParameterSpec`` points at (``resolveInputParameter``)."""
    if "componentInputParameter" in source:
        name = source["componentInputParameter"]
        if not name:
            raise DriverError(_spec_error(source, "empty component input"))
        if name not in parent_inputs:
            raise DriverError(_spec_error(
                source, f"parent DAG does not have input parameter {name}"))
        return parent_inputs[name]
    if "taskOutputParameter" in source:
        ref = source["taskOutputParameter"]
        producer, key = ref.get("producerTask", ""), ref.get("outputParameterKey", "")
        if producer not in outputs:
            raise DriverError(_spec_error(source, f"producer task, {producer}, not in tasks"))
        produced = outputs[producer].get("parameters", {})
        if key not in produced:
            raise DriverError(_spec_error(
                source, f"producer task {producer} has no output parameter {key}"))
        return produced[key]
    if "runtimeValue" in source:
        constant = source["runtimeValue"].get("constant")
        if isinstance(constant, str) and constant in _RUN_PLACEHOLDERS and run is not None:
            return run.get(_RUN_PLACEHOLDERS[constant], "")
        return as_value(constant)
    raise DriverError(_spec_error(source, "parameter spec of this type is not implemented "
                                          "by the local runner"))


def resolve_string(source: Mapping[str, Any], parent_inputs: Mapping[str, Any],
                   outputs: Mapping[str, Mapping[str, Any]]) -> str:
    """``resolveInputParameterStr``: a platform parameter (a PVC name) must be a non-empty
    string."""
    value = resolve_source(source, parent_inputs, outputs)
    if not isinstance(value, str):
        raise DriverError(f"resolving input parameter with spec {_spec_text(source)}. Expected "
                          f"a string but got: {kind_of(value)}")
    if not value:
        raise DriverError(f"resolving input parameter with spec {_spec_text(source)}. Expected "
                          "a non-empty string")
    return value


def resolve_task_inputs(task: Mapping[str, Any], component: Mapping[str, Any],
                        parent_inputs: Mapping[str, Any],
                        outputs: Mapping[str, Mapping[str, Any]], *, dag_driver: bool = False,
                        run: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A DAG or container driver's ``resolveInputs`` for ``task`` (no iteration index)."""
    definitions = _definitions(component)
    inputs: dict[str, Any] = {}
    set_nil: set[str] = set()
    if dag_driver:  # a sub-DAG passes its optional inputs' defaults on (or null)
        for name, definition in definitions.items():
            if name not in task.get("inputs", {}).get("parameters", {}) and \
                    definition.get("isOptional"):
                inputs[name] = as_value(definition.get("defaultValue"))
                set_nil.update([name] if "defaultValue" not in definition else [])
    try:
        for name, source in task.get("inputs", {}).get("parameters", {}).items():
            if "parameterExpressionSelector" in source:
                raise DriverError(f"resolving parameter {json.dumps(name)}: parameter "
                                  "expression selectors are not supported by the local runner")
            value = resolve_source(source, parent_inputs, outputs, run)
            if value is None and "componentInputParameter" in source:
                if definitions.get(name, {}).get("isOptional"):
                    continue
                raise DriverError("the resolved input parameter is null: "
                                  f"{source['componentInputParameter']}")
            _check_literals(name, value, definitions.get(name, {}), f'validating parameter '
                                                                    f'"{name}": ')
            inputs[name] = value
        _validate_and_convert(inputs, definitions, task, iteration=False, set_nil=set_nil)
    except DriverError as exc:
        raise DriverError(RESOLVE_PREFIX + str(exc)) from None
    return inputs


def resolve_iteration_inputs(task: Mapping[str, Any], component: Mapping[str, Any],
                             loop_inputs: Mapping[str, Any], index: int) -> dict[str, Any]:
    """An iteration driver's ``resolveInputs``: the loop's inputs with the items replaced by
    item ``index``, checked against the loop component's declared types."""
    iterator = task["parameterIterator"]
    items_input = iterator["items"].get("inputParameter") or iterator["itemInput"]
    inputs = dict(loop_inputs)
    try:
        items = loop_items(inputs.pop(items_input, None))
        if index >= len(items):
            raise DriverError(f"bug: {len(items)} items found, but getting index {index}")
        inputs[iterator["itemInput"]] = items[index]
        _validate_and_convert(inputs, _definitions(component), task, iteration=True, set_nil=set())
    except DriverError as exc:
        raise DriverError(RESOLVE_PREFIX + str(exc)) from None
    return inputs


def loop_items(value: Any) -> list[Any]:
    """``getItems``: a list value, or a string holding a JSON list."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        try:
            parsed = as_value(json.loads(value))
        except ValueError as exc:
            raise DriverError(f"iterating on a string that is not JSON: {exc}") from None
        if not isinstance(parsed, list):
            raise DriverError("a JSON string that is not a list cannot be iterated")
        return parsed
    raise DriverError(f"value of type {_go_value_type(value)} cannot be iterated")


def _validate_and_convert(inputs: dict[str, Any], definitions: Mapping[str, Any],
                          task: Mapping[str, Any], *, iteration: bool, set_nil: set[str]) -> None:
    """``handleParamTypeValidationAndConversion``, in place."""
    iterator = task.get("parameterIterator")
    for name, definition in definitions.items():
        if iterator is not None:
            if not iteration and iterator.get("itemInput") == name:
                continue  # only iterations get the item
            if iteration and iterator.get("items", {}).get("inputParameter") == name:
                continue  # only the loop gets the items
        if name not in inputs:
            if definition.get("isOptional"):
                continue
            if "defaultValue" not in definition:
                raise DriverError("neither value nor default value provided for non-optional "
                                  f"parameter {json.dumps(name)}")
            continue  # the launcher fills the default in
        expected = definition.get("parameterType", "")
        value = inputs[name]
        if expected == "STRING":
            if not isinstance(value, str) and name not in set_nil:
                inputs[name] = value_to_text(value)
            continue
        kind = kind_of(value)
        if kind == "null":
            if name in set_nil:
                continue
            raise DriverError(f"got null for input parameter {json.dumps(name)}")
        accepted = {"string": expected == "STRING", "number": expected in _NUMBER_TYPES,
                    "bool": expected == "BOOLEAN", "list": expected == "LIST",
                    "struct": expected in _STRUCT_TYPES}
        if not accepted[kind]:
            raise DriverError(f"input parameter {json.dumps(name)} type mismatch: expect "
                              f"{expected}, got {kind}")


def _check_literals(name: str, value: Any, definition: Mapping[str, Any],
                    prefix: str = "") -> None:
    """``util.ValidateLiteralParameter``: a ``Literal[...]`` input takes one of its values."""
    literals = [as_value(v) for v in definition.get("literals", [])]
    if literals and (kind_of(value), value) not in [(kind_of(v), v) for v in literals]:
        raise DriverError(f"{prefix}input parameter {json.dumps(name)} value {value!r} does not "
                          f"match any of the allowed literal values: {literals}")


def launcher_inputs(inputs: Mapping[str, Any], component: Mapping[str, Any]) -> dict[str, Any]:
    """``addDefaultParams``: the launcher adds each declared default the driver left out."""
    completed = dict(inputs)
    for name, definition in _definitions(component).items():
        if name not in completed and "defaultValue" in definition:
            completed[name] = as_value(definition["defaultValue"])
    return completed


def _definitions(component: Mapping[str, Any]) -> Mapping[str, Any]:
    return component.get("inputDefinitions", {}).get("parameters", {})


def _spec_text(source: Mapping[str, Any]) -> str:
    """An input spec written like Go's proto text (``component_input_parameter:"x"``)."""
    if "componentInputParameter" in source:
        return f'component_input_parameter:"{source["componentInputParameter"]}"'
    if "taskOutputParameter" in source:
        ref = source["taskOutputParameter"]
        return (f'task_output_parameter:{{producer_task:"{ref.get("producerTask", "")}" '
                f'output_parameter_key:"{ref.get("outputParameterKey", "")}"}}')
    return json.dumps(source, sort_keys=True)


def _spec_error(source: Mapping[str, Any], reason: str) -> str:
    return f"resolving input parameter with spec {_spec_text(source)}: {reason}"


def _go_value_type(value: Any) -> str:
    names = {"null": "NullValue", "number": "NumberValue", "bool": "BoolValue",
             "struct": "StructValue", "list": "ListValue", "string": "StringValue"}
    return f"*structpb.Value_{names[kind_of(value)]}"
