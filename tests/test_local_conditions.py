import pytest

from pipelines.local_conditions import evaluate_condition

INPUTS = {"pipelinechannel--data_pvc": "", "n": 3, "name": "it's"}


@pytest.mark.parametrize("expression, expected", [
    ("inputs.parameter_values['pipelinechannel--data_pvc'] != ''", False),
    ("!(inputs.parameter_values['pipelinechannel--data_pvc'] != '')", True),
    ("inputs.parameter_values['n'] >= 3", True),
    ("inputs.parameter_values['n'] < 2.5", False),
    ("inputs.parameter_values['name'] == 'it''s'", True),
])
def test_conditions_as_dsl_if_and_else_compile_them(expression, expected):
    assert evaluate_condition(expression, INPUTS) is expected


def test_anything_else_is_refused_not_evaluated():
    with pytest.raises(NotImplementedError, match="unsupported condition"):
        evaluate_condition("__import__('os').system('true')", INPUTS)
