"""A tiny safe expression language for ``condition`` components (and nothing else).

An expression is parsed with Python's :mod:`ast` and only a whitelist of nodes is allowed:
literals (numbers, strings, ``True``/``False``/``None``, lists, tuples, dicts), names (the
component's inputs), ``a.b`` (a key of a dict input), ``a[0]`` / ``a["k"]``, comparisons
(``== != < <= > >= in not in is is not``), ``and``/``or``/``not``, ``+ - * / // %`` and unary
minus, the conditional ``x if c else y``, and calls of a few pure functions (``len``, ``str``,
``int``, ``float``, ``bool``, ``abs``, ``min``, ``max``, ``lower``, ``upper``). No attribute of
a Python object is ever read (``a.b`` is a dict lookup), so there is no way out to the
interpreter. Sizes are bounded: the source length, the node count, and the length of strings
and lists produced by ``*`` and ``+``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

MAX_SOURCE = 2000
MAX_NODES = 200
MAX_VALUE_LEN = 100_000


class ExpressionError(ValueError):
    """The expression is not allowed (at save time) or could not be evaluated (at run time)."""


_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "abs": abs,
    "min": min,
    "max": max,
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
}
_ALLOWED = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Attribute,
    ast.Subscript,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.Compare,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.BinOp,
    ast.IfExp,
    ast.Call,
    *_COMPARE,
    *_BINARY,
)


def parse(source: str) -> ast.Expression:
    """Parse and check ``source``; raises ExpressionError naming the first forbidden part."""
    if len(source) > MAX_SOURCE:
        raise ExpressionError(f"the expression is longer than {MAX_SOURCE} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"invalid syntax: {exc.msg}") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ExpressionError(f"the expression has more than {MAX_NODES} parts")
    for node in nodes:
        if not isinstance(node, _ALLOWED):
            raise ExpressionError(f"{type(node).__name__} is not allowed in an expression")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                raise ExpressionError(
                    f"only these functions may be called: {', '.join(sorted(_FUNCTIONS))}"
                )
            if node.keywords:
                raise ExpressionError("keyword arguments are not allowed")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError("names starting with '_' are not allowed")
    return tree


def names(tree: ast.Expression) -> set[str]:
    """The input names an expression reads (function names excluded)."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called} - {
        "true",
        "false",
        "null",
    }


def evaluate(source: str, variables: dict[str, Any]) -> Any:
    """Evaluate ``source`` with ``variables``; raises ExpressionError on any failure."""
    tree = parse(source)
    try:
        return _eval(tree.body, variables)
    except ExpressionError:
        raise
    except Exception as exc:  # TypeError, ZeroDivisionError, KeyError...: the user's mistake
        raise ExpressionError(f"{type(exc).__name__}: {exc}") from None


def _checked(value: Any) -> Any:
    if isinstance(value, str | list | tuple | range) and len(value) > MAX_VALUE_LEN:
        raise ExpressionError(f"a value grew past {MAX_VALUE_LEN} items")
    return value


def _eval(node: ast.AST, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        constants = {"true": True, "false": False, "null": None}
        if node.id in env:
            return env[node.id]
        if node.id in constants:
            return constants[node.id]
        return None  # an input whose branch was not taken
    if isinstance(node, ast.Attribute):
        base = _eval(node.value, env)
        if not isinstance(base, dict):
            raise ExpressionError(f".{node.attr} needs an object")
        return base.get(node.attr)
    if isinstance(node, ast.Subscript):
        return _eval(node.value, env)[_eval(node.slice, env)]
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(e, env) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {
            _eval(k, env): _eval(v, env)
            for k, v in zip(node.keys, node.values, strict=True)
            if k is not None
        }
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            result: Any = True
            for value in node.values:
                result = _eval(value, env)
                if not result:
                    return result
            return result
        result = False
        for value in node.values:
            result = _eval(value, env)
            if result:
                return result
        return result
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, env)
        if isinstance(node.op, ast.Not):
            return not operand
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, env), _eval(node.right, env)
        if isinstance(node.op, ast.Mult):
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list) and isinstance(times, int):
                    _checked(range(len(seq) * max(times, 0)))  # before allocating it
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, env)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, env) else node.orelse, env)
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return _checked(_FUNCTIONS[node.func.id](*(_eval(a, env) for a in node.args)))
    raise ExpressionError(f"{type(node).__name__} is not allowed in an expression")
