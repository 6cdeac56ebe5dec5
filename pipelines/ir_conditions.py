"""Control flow of compiled KFP v2 IR as the Kubeflow driver handles it: ``triggerPolicy.condition``
expressions, the order of a DAG's tasks, and DAG outputs, ``dsl.OneOf`` included.

kfp compiles ``dsl.If`` / ``dsl.Elif`` / ``dsl.Else`` (and ``dsl.Condition``) into condition sub-DAG
tasks whose condition is a CEL expression over the task's ExecutorInput, such as
``!(inputs.parameter_values['p'] == 'vit_h') && int(inputs.parameter_values['k']) > 2``. The driver
evaluates it with cel-go; :func:`evaluate` implements the part of CEL that kfp emits, with CEL's
semantics: parameter numbers are doubles, ``==`` across types is false (across numbers it compares
values), ordering across types is an error, ``&&`` / ``||`` absorb an error on one side when the other
decides the result, and the result must be a bool. Anything else raises :class:`ConditionError`.
A ``dsl.OneOf`` output is the output of the one branch that ran; the driver fails when none did.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pipelines.ir_placeholders import Artifact, PipelineError, pb_text

_LEXEME = re.compile(
    r"""\s*(?:
    (?P<double>\d*\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
    |(?P<int>\d+)
    |(?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
    |(?P<ident>[A-Za-z_]\w*)
    |(?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\].-])
    )""",
    re.VERBOSE,
)
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "`": "`", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS = {"true": True, "false": False, "null": None}
_RELATIONS = ("==", "!=", "<", "<=", ">", ">=")
_NUMBERS = {"int", "double"}
_INT64 = (-(2**63), 2**63)
_SUBSET = "literals, inputs.parameter_values[...], == != < <= > >=, !, &&, ||, unary -, int(), double(), string()"


class ConditionError(ValueError):
    """An expression outside the supported subset of CEL, or one whose evaluation fails as it fails in CEL."""


@dataclass
class Outputs:
    """A task's outputs; ``missing`` names the outputs it cannot give and why (read lazily, as the driver does)."""

    parameters: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, list[Artifact]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def collect(self, iteration: Outputs, index: int) -> None:
        """Add a loop iteration's outputs: each output becomes the list over the iterations (``dsl.Collected``)."""
        for out, value in iteration.parameters.items():
            self.parameters.setdefault(out, []).append(value)
        for out, listed in iteration.artifacts.items():
            self.artifacts.setdefault(out, []).extend(listed)
        for out, reason in iteration.missing.items():
            self.missing.setdefault(out, f"iteration {index}: {reason}")

    def giving(self, key: str, consumer: str) -> Outputs:
        """These outputs, which must be able to give ``key`` to ``consumer`` (a dsl.OneOf no branch ran cannot)."""
        if key in self.missing:
            raise PipelineError(f"{consumer}: {self.missing[key]}")
        return self


def evaluate(expression: str, parameter_values: dict[str, Any]) -> bool:
    """Whether a task with these input parameter values triggers (the driver's ``expr.Condition``)."""
    try:
        tree = _Parser(expression).parse()
    except ConditionError as exc:
        raise ConditionError(f"not in the supported subset of CEL ({_SUBSET}): {exc}") from None
    try:
        result = _eval(tree, {k: _as_cel(v) for k, v in parameter_values.items()})
    except ConditionError as exc:
        raise ConditionError(f"evaluation error: {exc}") from None
    if not isinstance(result, bool):
        raise ConditionError(f"evaluation error: return type is not bool, got {result!r}")
    return result


def condition_values(given: dict[str, Any], definitions: dict[str, Any], dag: bool) -> dict[str, Any]:
    """A task's input parameter values as its condition sees them. A container's driver passes the inputs the task
    gives; a DAG's driver adds the optional ones left out (their default, else null). A non-string value of a STRING
    input becomes text (``PbValueToText``) before the condition is evaluated: ``3`` there compares as ``'3'``."""
    values = {k: v for k, v in given.items() if v is not None}
    if dag:
        values = {**{k: v.get("defaultValue") for k, v in definitions.items() if v.get("isOptional")}, **given}
    for name, value in values.items():
        declared = definitions.get(name, {}).get("parameterType")
        if declared == "STRING" and value is not None and not isinstance(value, str):
            values[name] = pb_text(value)
    return values


def dag_outputs(spec: dict[str, Any], done: dict[str, Outputs], dag: str) -> Outputs:
    """A DAG's outputs picked from the outputs of its tasks that ran (``done``). Several selectors on one output
    are a ``dsl.OneOf``: the output of the one branch that ran; none (or several) leaves it missing."""
    result = Outputs()
    for name, output in spec.get("parameters", {}).items():
        selectors = [output["valueFromParameter"]] if "valueFromParameter" in output else []
        selectors += output.get("valueFromOneof", {}).get("parameterSelectors", [])
        chosen = _one_of(name, selectors, done, dag, result) if len(selectors) > 1 else selectors
        for selector in chosen:
            _pick(done, selector["producerSubtask"], selector["outputParameterKey"], name, result)
    for name, output in spec.get("artifacts", {}).items():
        selectors = output.get("artifactSelectors", [])
        chosen = _one_of(name, selectors, done, dag, result) if len(selectors) > 1 else selectors
        result.artifacts[name] = []
        for selector in chosen:
            _pick(done, selector["producerSubtask"], selector["outputArtifactKey"], name, result)
    return result


def _one_of(name: str, selectors: list[dict[str, Any]], done: dict[str, Any], dag: str, result: Outputs) -> list[Any]:
    chosen = [s for s in selectors if s["producerSubtask"] in done]
    if len(chosen) != 1:
        branches = [s["producerSubtask"] for s in chosen or selectors]
        result.missing[name] = f"dsl.OneOf output {name!r} of {dag!r}: " + (
            f"branches {branches} all ran; exactly one must (the Kubeflow driver would take the first)"
            if chosen
            else f"none of {branches} ran (the Kubeflow driver: 'processing OneOf: No successful task found')"
        )
        return []
    return chosen


def _pick(done: dict[str, Outputs], producer: str, key: str, name: str, result: Outputs) -> None:
    if producer not in done:
        result.missing[name] = f"{name!r} comes from {producer!r}, which was skipped (a condition was false)"
    elif key in done[producer].missing:
        result.missing[name] = done[producer].missing[key]
    elif name in result.artifacts:
        result.artifacts[name].extend(done[producer].artifacts.get(key, []))
    elif key in done[producer].parameters:
        result.parameters[name] = done[producer].parameters[key]


def task_order(tasks: dict[str, Any]) -> list[tuple[str, set[str]]]:
    """Task keys, each after its dependencies (declared or implied by its inputs) and with them; ties in IR order."""
    needs = {}
    for key, task in tasks.items():
        inputs = task.get("inputs", {})
        sources = [s.get("taskOutputParameter", {}) for s in inputs.get("parameters", {}).values()]
        sources += [s.get("taskOutputArtifact", {}) for s in inputs.get("artifacts", {}).values()]
        producers = {s["producerTask"] for s in sources if "producerTask" in s}
        needs[key] = (set(task.get("dependentTasks", [])) | producers) & set(tasks)
    order: list[str] = []
    while len(order) < len(tasks):
        ready = [k for k in tasks if k not in order and needs[k] <= set(order)]
        if not ready:
            raise PipelineError(f"dependency cycle among {sorted(set(tasks) - set(order))}")
        order.append(ready[0])
    return [(key, needs[key]) for key in order]


class _Parser:
    """Recursive descent over CEL's grammar, restricted to what kfp emits; builds a tuple tree."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while text[position:].strip():
            match = _LEXEME.match(text, position)
            if match is None:
                stripped = text[position:].lstrip()
                raise ConditionError(f"unsupported syntax at {stripped[:20]!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.index = 0

    def parse(self) -> tuple[Any, ...]:
        tree = self._or()
        if self.index < len(self.tokens):
            raise ConditionError(f"unexpected {self.tokens[self.index][1]!r}")
        return tree

    def _peek(self) -> str | None:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def _next(self, expected: str | None = None) -> tuple[str, str]:
        if self.index >= len(self.tokens):
            raise ConditionError("unexpected end of expression")
        token = self.tokens[self.index]
        if expected is not None and token[1] != expected:
            raise ConditionError(f"expected {expected!r}, found {token[1]!r}")
        self.index += 1
        return token

    def _or(self) -> tuple[Any, ...]:
        return self._logical("||", lambda: self._logical("&&", self._relation))

    def _logical(self, operator: str, operand: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
        tree = operand()
        while self._peek() == operator:
            self._next()
            tree = (operator, tree, operand())
        return tree

    def _relation(self) -> tuple[Any, ...]:
        tree = self._unary()
        while self._peek() in _RELATIONS:
            tree = ("rel", self._next()[1], tree, self._unary())
        return tree

    def _unary(self) -> tuple[Any, ...]:
        if self._peek() in ("!", "-"):
            return (self._next()[1], self._unary())
        tree = self._primary()
        if self._peek() in (".", "["):
            raise ConditionError(f"unsupported member access or index {self._peek()!r}")
        return tree

    def _primary(self) -> tuple[Any, ...]:
        kind, text = self._next()
        if text == "(" and kind == "op":
            tree = self._or()
            self._next(")")
            return tree
        if kind == "int":
            return ("literal", int(text))
        if kind == "double":
            return ("literal", float(text))
        if kind == "string":
            return ("literal", _unquote(text))
        if kind == "ident" and text in _LITERALS:
            return ("literal", _LITERALS[text])
        if kind == "ident" and text == "inputs":
            if [self._next()[1] for _ in range(3)] != [".", "parameter_values", "["]:
                raise ConditionError("of the inputs, only inputs.parameter_values[NAME] is supported")
            tree = ("parameter", self._or())
            self._next("]")
            return tree
        if kind == "ident" and self._peek() == "(":
            if text not in _CONVERSIONS:
                raise ConditionError(f"unsupported function {text}()")
            self._next("(")
            argument = self._or()
            self._next(")")
            return ("call", text, argument)
        raise ConditionError(f"unsupported {'identifier' if kind == 'ident' else 'token'} {text!r}")


def _unquote(literal: str) -> str:
    def escape(match: re.Match[str]) -> str:
        if match.group(1) not in _ESCAPES:
            raise ConditionError(f"unsupported escape \\{match.group(1)} in {literal}")
        return _ESCAPES[match.group(1)]

    return re.sub(r"\\(.)", escape, literal[1:-1])


def _as_cel(value: Any) -> Any:
    """A parameter value as CEL sees a protobuf Value: numbers are doubles."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list):
        return [_as_cel(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_cel(item) for key, item in value.items()}
    return value


def _kind(value: Any) -> str:
    if value is None or isinstance(value, bool | str | list | dict):
        return {type(None): "null", bool: "bool", str: "string", list: "list", dict: "map"}[type(value)]
    return "int" if isinstance(value, int) else "double"


def _eval(tree: tuple[Any, ...], parameters: dict[str, Any]) -> Any:
    operator = tree[0]
    if operator == "literal":
        return tree[1]
    if operator == "parameter":
        name = _eval(tree[1], parameters)
        if not isinstance(name, str):
            raise ConditionError(f"no such overload: map[{_kind(name)}]")
        if name not in parameters:
            raise ConditionError(f"no such key: {name}")
        return parameters[name]
    if operator == "call":
        return _CONVERSIONS[tree[1]](_eval(tree[2], parameters))
    if operator in ("&&", "||"):
        return _logic(operator, tree[1], tree[2], parameters)
    if operator == "rel":
        return _relation(tree[1], _eval(tree[2], parameters), _eval(tree[3], parameters))
    value = _eval(tree[1], parameters)
    if operator == "!" and isinstance(value, bool):
        return not value
    if operator == "-" and _kind(value) in _NUMBERS:
        return -value
    raise ConditionError(f"no such overload: {operator}{_kind(value)}")


def _logic(operator: str, left: tuple[Any, ...], right: tuple[Any, ...], parameters: dict[str, Any]) -> bool:
    """CEL's commutative ``&&`` / ``||``: the deciding value on either side wins over an error on the other."""
    deciding = operator == "||"
    sides: list[Any] = []
    for tree in (left, right):
        try:
            value = _eval(tree, parameters)
            if not isinstance(value, bool):
                raise ConditionError(f"no such overload: {_kind(value)} {operator} ...")
        except ConditionError as exc:
            value = exc
        if value is deciding:
            return deciding
        sides.append(value)
    for value in sides:
        if isinstance(value, ConditionError):
            raise value
    return not deciding


def _relation(operator: str, left: Any, right: Any) -> bool:
    if operator in ("==", "!="):
        return _equal(left, right) == (operator == "==")
    kinds = _kind(left), _kind(right)
    if not (set(kinds) <= _NUMBERS or (kinds[0] == kinds[1] and kinds[0] in ("string", "bool"))):
        raise ConditionError(f"no such overload: {kinds[0]} {operator} {kinds[1]}")
    if any(isinstance(v, float) and math.isnan(v) for v in (left, right)):
        raise ConditionError("NaN values cannot be ordered")
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[operator]


def _equal(left: Any, right: Any) -> bool:
    """CEL's heterogeneous equality: values of different types are unequal, numbers compare by value."""
    kinds = _kind(left), _kind(right)
    if set(kinds) <= _NUMBERS:
        return left == right
    if kinds[0] != kinds[1]:
        return False
    if kinds[0] == "list":
        return len(left) == len(right) and all(_equal(a, b) for a, b in zip(left, right, strict=True))
    if kinds[0] == "map":
        return left.keys() == right.keys() and all(_equal(left[k], right[k]) for k in left)
    return bool(left == right)


def _to_int(value: Any) -> int:
    kind = _kind(value)
    if kind == "int" or (kind == "double" and math.isfinite(value) and _INT64[0] <= value < _INT64[1]):
        return int(value)  # a double truncated toward zero
    if kind == "string" and re.fullmatch(r"[+-]?\d+", value) and _INT64[0] <= int(value) < _INT64[1]:
        return int(value)
    raise ConditionError(f"cannot convert {value!r} to int")


def _to_double(value: Any) -> float:
    kind = _kind(value)
    if kind in _NUMBERS:
        return float(value)
    number = r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)"
    if kind == "string" and re.fullmatch(number, value, re.IGNORECASE):
        return float(value)
    raise ConditionError(f"cannot convert {value!r} to double")


def _to_string(value: Any) -> str:
    kind = _kind(value)
    if kind in ("string", "int", "bool"):
        return pb_text(value) if kind == "bool" else str(value)
    if kind == "double":
        return _go_g(value)
    raise ConditionError(f"cannot convert {kind} to string")


def _go_g(number: float) -> str:
    """Go's ``%g`` (shortest digits; exponent form below 1e-4 and from 1e6), as cel-go's ``string(double)``."""
    if not math.isfinite(number):
        return {math.inf: "+Inf", -math.inf: "-Inf"}.get(number, "NaN")
    if number == 0:
        return "-0" if math.copysign(1, number) < 0 else "0"
    decimal = Decimal(repr(number)).normalize()
    sign, digits, exponent = decimal.as_tuple()
    power = len(digits) + int(exponent) - 1
    if -4 <= power < 6:
        return format(decimal, "f")
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"


_CONVERSIONS = {"int": _to_int, "double": _to_double, "string": _to_string}
