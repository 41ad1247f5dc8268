"""The KFP backend's value conversions and input checks, as kubeflow/pipelines 2.16-2.17 does
them (``metadata/converter.go``, ``driver/resolve.go``, ``driver/util.go``,
``component/launcher_v2.go``, ``apiserver/template/v2_template.go``)."""

import json

import pytest

from pipelines.kfp_driver import (
    DriverError,
    as_value,
    check_run_arguments,
    collect_output_parameters,
    executor_json,
    launcher_inputs,
    loop_items,
    resolve_iteration_inputs,
    resolve_string,
    resolve_task_inputs,
    root_inputs,
    text_to_value,
    value_to_text,
)


def component(**types):
    return {"inputDefinitions": {"parameters": {
        name: {"parameterType": kind} for name, kind in types.items()}}}


def task(**sources):
    return {"inputs": {"parameters": sources}}


def from_parent(name):
    return {"componentInputParameter": name}


@pytest.mark.parametrize("value, text", [
    (3.0, "3"), (0.01, "0.01"), (-2.5, "-2.5"), (1e21, "1000000000000000000000"),
    (1.5e-07, "0.00000015"), (True, "true"), (None, ""), ("x", "x"),
    ([0.0, 1.0], "[0,1]"), ({"a": 1.0}, '{"a":1}'),
])
def test_a_value_as_text_like_pb_value_to_text(value, text):
    assert value_to_text(value) == text


@pytest.mark.parametrize("text, kind, value", [
    ("5", "NUMBER_INTEGER", 5.0), (" 5\n", "NUMBER_INTEGER", 5.0), ("-7", "NUMBER_INTEGER", -7.0),
    ("0.5", "NUMBER_DOUBLE", 0.5), ("1e3", "NUMBER_DOUBLE", 1000.0),
    ("true", "BOOLEAN", True), ("F", "BOOLEAN", False), ("1", "BOOLEAN", True),
    ("[1, 2]", "LIST", [1.0, 2.0]), ('{"a": "b"}', "STRUCT", {"a": "b"}),
    (" keep spaces ", "STRING", " keep spaces "),
])
def test_an_output_file_parsed_like_text_to_pb_value(text, kind, value):
    assert text_to_value(text, kind) == value


@pytest.mark.parametrize("text, kind", [
    ("5.0", "NUMBER_INTEGER"), ("1_000", "NUMBER_INTEGER"), ("", "NUMBER_INTEGER"),
    ("yes", "BOOLEAN"), ("1.2.3", "NUMBER_DOUBLE"), ('{"a": 1}', "LIST"), ("[1]", "STRUCT"),
    ("[1,", "LIST"), ("x", "NO_SUCH_TYPE"),
])
def test_what_text_to_pb_value_refuses(text, kind):
    with pytest.raises(DriverError, match=r"TextToPbValue\(text=.*failed"):
        text_to_value(text, kind)


def test_executor_input_writes_integral_numbers_as_integers():
    assert json.loads(executor_json({"n": 3.0, "lr": 0.01, "ids": [0.0, 1.0]})) == \
        {"n": 3, "lr": 0.01, "ids": [0, 1]}
    assert type(json.loads(executor_json(3.0))) is int


def test_the_executor_output_file_wins_over_parameter_files():
    definitions = {"a": {"parameterType": "NUMBER_INTEGER"}, "b": {"parameterType": "LIST"}}
    outputs = collect_output_parameters({"a": 4}, {"a": "ignored", "b": "[0, 1]"}, definitions)
    assert outputs == {"a": 4.0, "b": [0.0, 1.0]}
    with pytest.raises(DriverError, match='failed to read output parameter name="b"'):
        collect_output_parameters({}, {"b": None, "a": "1"}, definitions)


@pytest.mark.parametrize("parameter_type, value, accepted", [
    ("NUMBER_INTEGER", 3.0, True), ("NUMBER_INTEGER", "3", False), ("NUMBER_DOUBLE", 3.0, True),
    ("BOOLEAN", True, True), ("BOOLEAN", "true", False), ("BOOLEAN", 1.0, False),
    ("LIST", [1.0], True), ("LIST", "[1]", False), ("STRUCT", {"a": 1.0}, True),
    ("STRUCT", [1.0], False),
])
def test_only_strings_are_converted_every_other_type_must_match(parameter_type, value, accepted):
    spec = component(x=parameter_type)
    if accepted:
        assert resolve_task_inputs(task(x=from_parent("v")), spec, {"v": value}, {}) == {"x": value}
    else:
        with pytest.raises(DriverError, match=r'failed to resolve inputs: input parameter "x" '
                                              f'type mismatch: expect {parameter_type}, got'):
            resolve_task_inputs(task(x=from_parent("v")), spec, {"v": value}, {})


@pytest.mark.parametrize("value, text", [(3.0, "3"), (True, "true"), ([1.0, 2.0], "[1,2]")])
def test_a_string_input_takes_any_value_as_text(value, text):
    resolved = resolve_task_inputs(task(x=from_parent("v")), component(x="STRING"),
                                   {"v": value}, {})
    assert resolved == {"x": text}


def test_missing_and_null_inputs():
    with pytest.raises(DriverError, match='neither value nor default value provided for '
                                          'non-optional parameter "x"'):
        resolve_task_inputs(task(), component(x="STRING"), {}, {})
    with_default = {"inputDefinitions": {"parameters": {
        "x": {"parameterType": "NUMBER_INTEGER", "defaultValue": 2}}}}
    assert resolve_task_inputs(task(), with_default, {}, {}) == {}  # the launcher fills it in
    assert launcher_inputs({}, with_default) == {"x": 2.0}
    with pytest.raises(DriverError, match="parent DAG does not have input parameter v"):
        resolve_task_inputs(task(x=from_parent("v")), component(x="STRING"), {}, {})
    with pytest.raises(DriverError, match="the resolved input parameter is null"):
        resolve_task_inputs(task(x=from_parent("v")), component(x="STRING"), {"v": None}, {})


def test_task_outputs_and_constants():
    outputs = {"make": {"parameters": {"Output": [0.0, 1.0]}}}
    spec = component(items="LIST", port="NUMBER_INTEGER")
    resolved = resolve_task_inputs(
        task(items={"taskOutputParameter": {"producerTask": "make", "outputParameterKey":
                                            "Output"}},
             port={"runtimeValue": {"constant": 8080}}), spec, {}, outputs)
    assert resolved == {"items": [0.0, 1.0], "port": 8080.0}
    with pytest.raises(DriverError, match="producer task, gone, not in tasks"):
        resolve_task_inputs(task(items={"taskOutputParameter": {
            "producerTask": "gone", "outputParameterKey": "Output"}}), spec, {}, outputs)


def loop_task(items_input="items"):
    return {"parameterIterator": {"itemInput": "item", "items": {"inputParameter": items_input}},
            "inputs": {"parameters": {items_input: from_parent("ids")}}}


@pytest.mark.parametrize("item_type, item", [("STRING", "1"), ("NUMBER_INTEGER", 1.0)])
def test_an_iteration_gets_its_item_converted_by_the_loops_declared_type(item_type, item):
    loop = component(items="LIST", item=item_type)
    loop_inputs = resolve_task_inputs(loop_task(), loop, {"ids": [0.0, 1.0]}, {},
                                      dag_driver=True)
    assert loop_inputs == {"items": [0.0, 1.0]}  # the loop itself gets no item
    assert resolve_iteration_inputs(loop_task(), loop, loop_inputs, 1) == {"item": item}


def test_loop_items_come_from_a_list_or_a_json_list_string():
    assert loop_items([1.0, 2.0]) == [1.0, 2.0]
    assert loop_items("[1, 2]") == [1.0, 2.0]
    with pytest.raises(DriverError, match="cannot be iterated"):
        loop_items(3.0)


def test_a_pvc_name_must_be_a_non_empty_string():
    assert resolve_string(from_parent("pvc"), {"pvc": "data"}, {}) == "data"
    with pytest.raises(DriverError, match="Expected a non-empty string"):
        resolve_string(from_parent("pvc"), {"pvc": ""}, {})
    with pytest.raises(DriverError, match="Expected a string but got"):
        resolve_string(from_parent("pvc"), {"pvc": 3.0}, {})


def test_run_arguments_need_their_declared_kind():
    definitions = {"n": {"parameterType": "NUMBER_INTEGER", "defaultValue": 5},
                   "name": {"parameterType": "STRING"}}
    assert root_inputs({"name": "a"}, definitions) == {"name": "a", "n": 5.0}
    with pytest.raises(DriverError, match="requires type NUMBER_INTEGER, but the parameter "
                                          "value is not of number value type"):
        check_run_arguments({"n": "5", "name": "a"}, definitions)
    with pytest.raises(DriverError, match="parameter name is not optional"):
        check_run_arguments({}, definitions)
    assert as_value((1, {"k": 2})) == [1.0, {"k": 2.0}]


def test_a_literal_input_takes_only_its_values():
    spec = {"inputDefinitions": {"parameters": {
        "mode": {"parameterType": "STRING", "literals": ["off", "secagg"]}}}}
    assert resolve_task_inputs(task(mode=from_parent("m")), spec, {"m": "off"}, {}) == \
        {"mode": "off"}
    with pytest.raises(DriverError, match='validating parameter "mode": input parameter '
                                          '"mode" value .on. does not match any of the '
                                          'allowed literal values'):
        resolve_task_inputs(task(mode=from_parent("m")), spec, {"m": "on"}, {})
    with pytest.raises(DriverError, match="allowed literal values"):
        check_run_arguments({"mode": "on"}, spec["inputDefinitions"]["parameters"])
