"""Evaluating the CEL trigger conditions ``dsl.If``/``dsl.Elif``/``dsl.Else`` compile to.

The KFP SDK (``pipeline_spec_builder._single_binary_operation_to_cel_condition``) writes a
small part of CEL: comparisons (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``) between task
inputs ``inputs.parameter_values['x']`` and literals, an input of type int wrapped in
``int(...)`` and a mixed int/float comparison in ``double(...)``, a negation ``!( ... )``,
and ``&&`` joining the branches of an ``Elif``. This module parses exactly that (plus
``||`` and parentheses) and evaluates it as the backend's CEL does on protobuf values: an
ordering between a string, a bool and a number is an error ("no such overload"), an
equality between different kinds is false. No ``eval``: anything else is refused.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(r"""\s*(?:
    (?P<param>inputs\.parameter_values\['[^']+'\])
  | (?P<string>'[^']*')
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<word>true|false|int|double)
  | (?P<op>==|!=|<=|>=|<|>|&&|\|\||!|\(|\))
)""", re.X)
_COMPARISONS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
                ">": operator.gt, ">=": operator.ge}


class ConditionError(ValueError):
    """A condition the local runner cannot parse, or that CEL would fail to evaluate."""


def evaluate_condition(expression: str, inputs: Mapping[str, Any]) -> bool:
    """The value of ``expression`` over a task's resolved inputs."""
    parser = _Parser(_tokens(expression), inputs, expression)
    result = parser.disjunction()
    if parser.tokens:
        raise ConditionError(f"local runner: unsupported condition {expression!r}")
    return result


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(expression.rstrip()):
        match = _TOKEN.match(expression, position)
        if not match:
            raise ConditionError(f"local runner: unsupported condition {expression!r}")
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over the SDK's grammar; evaluates as it parses."""

    def __init__(self, tokens: list[tuple[str, str]], inputs: Mapping[str, Any],
                 expression: str) -> None:
        self.tokens, self.inputs, self.expression = tokens, inputs, expression

    def disjunction(self) -> bool:
        value = self.conjunction()
        while self._take("||"):
            right = self.conjunction()  # parsed whatever the left side was
            value = value or right
        return value

    def conjunction(self) -> bool:
        value = self.unary()
        while self._take("&&"):
            right = self.unary()
            value = value and right
        return value

    def unary(self) -> bool:
        if self._take("!"):
            return not self.unary()
        if self._take("("):
            value = self.disjunction()
            self._expect(")")
            return value
        left = self.operand()
        if not self.tokens or self.tokens[0][1] not in _COMPARISONS:
            raise ConditionError(f"local runner: unsupported condition {self.expression!r}")
        op = self.tokens.pop(0)[1]
        return _compare(op, left, self.operand())

    def operand(self) -> Any:
        if not self.tokens:
            raise ConditionError(f"local runner: unsupported condition {self.expression!r}")
        kind, text = self.tokens.pop(0)
        if kind == "param":
            name = text[len("inputs.parameter_values['"):-2]
            if name not in self.inputs:
                raise ConditionError(f"evaluation error: no such key: {name}")
            return self.inputs[name]
        if kind == "string":
            return text[1:-1]
        if kind == "number":
            return json.loads(text) if re.fullmatch(r"-?\d+", text) else float(text)
        if text in ("true", "false"):
            return text == "true"
        if text in ("int", "double"):
            self._expect("(")
            value = self.operand()
            self._expect(")")
            return _to_int(value) if text == "int" else _to_double(value)
        raise ConditionError(f"local runner: unsupported condition {self.expression!r}")

    def _take(self, op: str) -> bool:
        if self.tokens and self.tokens[0] == ("op", op):
            self.tokens.pop(0)
            return True
        return False

    def _expect(self, op: str) -> None:
        if not self._take(op):
            raise ConditionError(f"local runner: unsupported condition {self.expression!r}")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__


def _compare(op: str, left: Any, right: Any) -> bool:
    if _kind(left) != _kind(right):
        if op in ("==", "!="):
            return op == "!="
        raise ConditionError(f"evaluation error: no such overload: {_kind(left)} {op} "
                             f"{_kind(right)}")
    return _COMPARISONS[op](left, right)


def _to_int(value: Any) -> int:
    """CEL ``int()``: a double truncated toward zero, a string parsed, nothing else."""
    if isinstance(value, bool):
        raise ConditionError("evaluation error: no such overload: int(bool)")
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) >= 2**63:
            raise ConditionError(f"evaluation error: int({value}) out of range")
        return int(value)
    if isinstance(value, str):
        if not re.fullmatch(r"[+-]?\d+", value):
            raise ConditionError(f"evaluation error: cannot convert {value!r} to int")
        return int(value)
    if isinstance(value, int):
        return value
    raise ConditionError(f"evaluation error: no such overload: int({_kind(value)})")


def _to_double(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConditionError(f"evaluation error: no such overload: double({_kind(value)})")
    try:
        return float(value)
    except ValueError:
        raise ConditionError(f"evaluation error: cannot convert {value!r} to double") from None
