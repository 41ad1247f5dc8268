"""Evaluating the trigger conditions ``dsl.If``/``dsl.Else`` compile to, for the local runner.

Supported: comparisons of a parameter with a literal or another parameter (``==``, ``!=``,
``<``, ``<=``, ``>``, ``>=``), optionally negated with ``!( ... )`` as ``dsl.Else`` writes
them. No ``eval``: anything else is refused with a clear error.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Mapping
from typing import Any

_OPERAND = r"(inputs\.parameter_values\['[^']+'\]|'(?:[^']|'')*'|-?\d+(?:\.\d+)?|true|false)"
_COMPARISON = re.compile(rf"^\s*{_OPERAND}\s*(==|!=|<=|>=|<|>)\s*{_OPERAND}\s*$")
_NEGATION = re.compile(r"^\s*!\((.*)\)\s*$", re.S)
_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
        ">": operator.gt, ">=": operator.ge}


def evaluate_condition(expression: str, inputs: Mapping[str, Any]) -> bool:
    negated = _NEGATION.match(expression)
    if negated:
        return not evaluate_condition(negated.group(1), inputs)
    match = _COMPARISON.match(expression)
    if not match:
        raise NotImplementedError(f"local runner: unsupported condition {expression!r}")
    left, op, right = match.groups()
    return _OPS[op](_value(left, inputs), _value(right, inputs))


def _value(token: str, inputs: Mapping[str, Any]) -> Any:
    if token.startswith("inputs.parameter_values["):
        return inputs[token[len("inputs.parameter_values['"):-2]]
    if token.startswith("'"):
        return token[1:-1].replace("''", "'")
    return json.loads(token)
