"""The CEL conditions the KFP SDK writes for dsl.If/Elif/Else, evaluated as the backend does."""

import pytest
from kfp import compiler, dsl

from pipelines.local_conditions import ConditionError, evaluate_condition

# Task inputs as a driver resolved them: protobuf values, every number a double.
INPUTS = {"pipelinechannel--data_pvc": "", "n": 3.0, "x": 0.5, "flag": True, "name": "b"}


@pytest.mark.parametrize("expression, expected", [
    ("inputs.parameter_values['pipelinechannel--data_pvc'] != ''", False),
    ("!(inputs.parameter_values['pipelinechannel--data_pvc'] != '')", True),
    ("int(inputs.parameter_values['n']) >= 3", True),
    ("int(inputs.parameter_values['n']) > 3", False),
    ("inputs.parameter_values['x'] < 2.5", True),
    ("inputs.parameter_values['x'] >= double(1)", False),
    ("inputs.parameter_values['flag'] == true", True),
    ("!(int(inputs.parameter_values['n']) == 3) && inputs.parameter_values['name'] == 'b'", False),
    ("!(int(inputs.parameter_values['n']) == 2) && inputs.parameter_values['name'] == 'b'", True),
    ("inputs.parameter_values['name'] == 1", False),  # different kinds: never equal
])
def test_conditions_as_dsl_if_elif_and_else_compile_them(expression, expected):
    assert evaluate_condition(expression, INPUTS) is expected


@pytest.mark.parametrize("expression, message", [
    ("inputs.parameter_values['name'] < 1", "no such overload"),
    ("int(inputs.parameter_values['name']) > 1", "cannot convert 'b' to int"),
    ("int(inputs.parameter_values['flag']) > 1", "no such overload"),
    ("inputs.parameter_values['missing'] == ''", "no such key: missing"),
])
def test_what_cel_refuses_is_refused(expression, message):
    with pytest.raises(ConditionError, match=message):
        evaluate_condition(expression, INPUTS)


def test_anything_else_is_refused_not_evaluated():
    with pytest.raises(ConditionError, match="unsupported condition"):
        evaluate_condition("__import__('os').system('true')", INPUTS)


@dsl.component(base_image="python:3.11-slim")
def _noop(n: int):
    pass


def test_every_condition_the_sdk_writes_parses(tmp_path):
    import yaml

    @dsl.pipeline(name="conditions")
    def conditions(n: int = 2, x: float = 0.5, s: str = "a", b: bool = True):
        with dsl.If(n > 1):
            _noop(n=n)
        with dsl.Elif(x >= 0.25):
            _noop(n=n)
        with dsl.Elif(s == "b"):
            _noop(n=n)
        with dsl.Else():
            _noop(n=n)
        with dsl.If(b == True):  # noqa: E712 (a pipeline channel, not a Python bool)
            _noop(n=n)
        with dsl.If(n < x):
            _noop(n=n)

    path = tmp_path / "conditions.yaml"
    compiler.Compiler().compile(conditions, str(path))
    ir = yaml.safe_load(path.read_text())
    found = {name: task["triggerPolicy"]["condition"]
             for component in [ir["root"], *ir["components"].values()]
             for name, task in component.get("dag", {}).get("tasks", {}).items()
             if task.get("triggerPolicy", {}).get("condition")}
    values = {"pipelinechannel--n": 2.0, "pipelinechannel--x": 0.5,
              "pipelinechannel--s": "a", "pipelinechannel--b": True}
    taken = {name: evaluate_condition(c, values) for name, c in found.items()}
    # If n > 1 is taken, so its Elifs and Else are not; b is true; 2 < 0.5 is not.
    assert taken == {"condition-2": True, "condition-3": False, "condition-4": False,
                     "condition-5": False, "condition-6": True, "condition-7": False}
