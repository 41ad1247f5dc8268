"""Every task input of a compiled pipeline checked, before any run, by the KFP driver's rules.

On a real backend a value's kind after a DAG's driver is fixed by that DAG's declared input
type: a STRING input has turned any value into text, every other type has been checked to
have its kind (``pipelines.kfp_driver``). So what each task input receives is known from the
IR alone: the declared type of the parent DAG's input, of the producer's output, or the kind
of a constant. A consumer declared STRING takes anything; any other type needs that kind.
This is how a ``-> list`` loop (items typed STRING) feeding an ``int`` input is caught at
compile time instead of as ``type mismatch: expect NUMBER_INTEGER, got string`` in a pod.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pipelines.kfp_driver import as_value, kind_of

_KIND_OF_TYPE = {"STRING": "string", "NUMBER_INTEGER": "number", "NUMBER_DOUBLE": "number",
                 "BOOLEAN": "bool", "LIST": "list", "STRUCT": "struct",
                 "TASK_FINAL_STATUS": "struct", "TASK_CONFIG": "struct"}


def parameter_type_problems(ir: Mapping[str, Any]) -> list[str]:
    """One line for each task input that the backend's drivers would refuse."""
    components = ir.get("components", {})
    problems = []
    for dag_name, dag in [("root", ir["root"])] + [
            (name, c) for name, c in components.items() if "dag" in c]:
        for task_name, task in dag["dag"].get("tasks", {}).items():
            consumer = components.get(task.get("componentRef", {}).get("name", ""), {})
            where = f"{dag_name} / task {task_name}"
            problems += [f"{where}: {line}" for line in _task_problems(task, consumer, dag,
                                                                       dag["dag"]["tasks"],
                                                                       components)]
    return problems


def _task_problems(task: Mapping[str, Any], consumer: Mapping[str, Any],
                   parent: Mapping[str, Any], siblings: Mapping[str, Any],
                   components: Mapping[str, Any]) -> Iterator[str]:
    declared = consumer.get("inputDefinitions", {}).get("parameters", {})
    given = task.get("inputs", {}).get("parameters", {})
    iterator = task.get("parameterIterator")
    item_input = iterator.get("itemInput") if iterator else None
    for name, definition in declared.items():
        if name == item_input:
            continue  # supplied by the iteration, checked against the loop's own type below
        if name not in given:
            if not definition.get("isOptional") and "defaultValue" not in definition:
                yield (f"input {name!r} has no value and no default (the driver: neither value "
                       f"nor default value provided for non-optional parameter \"{name}\")")
            continue
        kind, origin = _source_kind(given[name], parent, siblings, components)
        if kind is None:
            yield f"input {name!r}: {origin}"
        elif not _accepts(definition.get("parameterType", ""), kind):
            yield (f"input {name!r} is declared {definition['parameterType']} but receives a "
                   f"{kind} from {origin} (the driver: input parameter \"{name}\" type "
                   f"mismatch: expect {definition['parameterType']}, got {kind})")
    if iterator and "inputParameter" in iterator.get("items", {}):
        items = iterator["items"]["inputParameter"]
        kind = _KIND_OF_TYPE.get(declared.get(items, {}).get("parameterType", ""))
        if kind not in ("list", "string"):
            yield f"loop items {items!r} are a {kind}, which the driver cannot iterate"


def _source_kind(source: Mapping[str, Any], parent: Mapping[str, Any],
                 siblings: Mapping[str, Any], components: Mapping[str, Any]
                 ) -> tuple[str | None, str]:
    """The kind a value has when it reaches the task, and where it comes from."""
    if "componentInputParameter" in source:
        name = source["componentInputParameter"]
        definition = parent.get("inputDefinitions", {}).get("parameters", {}).get(name)
        if definition is None:
            return None, f"the parent DAG has no input {name!r}"
        return _KIND_OF_TYPE.get(definition["parameterType"]), (
            f"the parent DAG's input {name!r} ({definition['parameterType']})")
    if "taskOutputParameter" in source:
        ref = source["taskOutputParameter"]
        producer = siblings.get(ref.get("producerTask", ""))
        if producer is None:
            return None, f"producer task {ref.get('producerTask')!r} is not in this DAG"
        component = components.get(producer["componentRef"]["name"], {})
        output = component.get("outputDefinitions", {}).get("parameters", {}).get(
            ref.get("outputParameterKey", ""))
        if output is None:
            return None, (f"task {ref['producerTask']!r} has no output "
                          f"{ref.get('outputParameterKey')!r}")
        return _KIND_OF_TYPE.get(output["parameterType"]), (
            f"task {ref['producerTask']!r} output {ref['outputParameterKey']!r} "
            f"({output['parameterType']})")
    if "runtimeValue" in source:
        value = as_value(source["runtimeValue"].get("constant"))
        return kind_of(value), f"the constant {value!r}"
    return "struct", "a task final status" if "taskFinalStatus" in source else "an expression"


def _accepts(parameter_type: str, kind: str) -> bool:
    return parameter_type == "STRING" or _KIND_OF_TYPE.get(parameter_type) == kind
