"""JMESPath compiled to Python closures.

jmespath's own `compile()` parses once but still walks the AST through a visitor for every
search, which costs most of a rule's evaluation. Here each AST node becomes one closure, with
the same semantics as jmespath's TreeInterpreter (tests compare the two on every shipped key).
Expressions using anything not handled here fall back to jmespath's interpreter whole.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from numbers import Number
from typing import Any

import jmespath
from jmespath import functions as jp_functions
from jmespath.parser import Parser

Getter = Callable[[Any], Any]

_FUNCTIONS = jp_functions.Functions()


class _Unsupported(Exception):
    """A node this compiler leaves to jmespath."""


def _is_false(value: Any) -> bool:
    return value == "" or value == [] or value == {} or value is None or value is False


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, Number)


def _equals(x: Any, y: Any) -> bool:
    # jmespath: 0/1 never equal False/True, unlike Python.
    if isinstance(x, bool) != isinstance(y, bool) and (_is_number(x) or _is_number(y)):
        return False
    return x == y


_ORDER = {"lt": operator.lt, "gt": operator.gt, "lte": operator.le, "gte": operator.ge}


def _compile(node: dict) -> Getter:
    """The node's closure, built by the builder of its type, as jmespath's visitor dispatches."""
    build = _BUILDERS.get(node["type"])
    if build is None:
        raise _Unsupported(node["type"])
    return build(node, node.get("children", []))


# --- Paths: fields, chains, literals, indexes, slices ----------------------------------------


def _field(node: dict, children: list) -> Getter:
    name = node["value"]

    def field(v, name=name):
        return v.get(name) if isinstance(v, dict) else None

    return field


def _chain(node: dict, children: list) -> Getter:
    parts = [_compile(c) for c in children]
    if len(parts) == 2:
        first, second = parts
        return lambda v: second(first(v))

    def chain(v):
        for part in parts:
            v = part(v)
        return v

    return chain


def _current(node: dict, children: list) -> Getter:
    return lambda v: v


def _literal(node: dict, children: list) -> Getter:
    literal = node["value"]
    return lambda v: literal


def _index(node: dict, children: list) -> Getter:
    index = node["value"]

    def at(v):
        if not isinstance(v, list):
            return None
        try:
            return v[index]
        except IndexError:
            return None

    return at


def _slice(node: dict, children: list) -> Getter:
    window = slice(*children)
    return lambda v: v[window] if isinstance(v, list) else None


# --- Projections -------------------------------------------------------------------------------


def _flatten(node: dict, children: list) -> Getter:
    base = _compile(children[0])

    def flatten(v):
        items = base(v)
        if not isinstance(items, list):
            return None
        merged = []
        for item in items:
            if isinstance(item, list):
                merged.extend(item)
            else:
                merged.append(item)
        return merged

    return flatten


def _projection(node: dict, children: list) -> Getter:
    base, each = _compile(children[0]), _compile(children[1])
    is_values = node["type"] == "value_projection"

    def project(v):
        items = base(v)
        if is_values:
            if not isinstance(items, dict):
                return None
            items = list(items.values())
        elif not isinstance(items, list):
            return None
        out = []
        for item in items:
            current = each(item)
            if current is not None:
                out.append(current)
        return out

    return project


def _filter_projection(node: dict, children: list) -> Getter:
    base, each, cond = (_compile(c) for c in children)

    def select(v):
        items = base(v)
        if not isinstance(items, list):
            return None
        out = []
        for item in items:
            if not _is_false(cond(item)):
                current = each(item)
                if current is not None:
                    out.append(current)
        return out

    return select


# --- Comparisons and logic ---------------------------------------------------------------------


def _comparator(node: dict, children: list) -> Getter:
    left, right = (_compile(c) for c in children)
    op = node["value"]
    if op == "eq":
        return lambda v: _equals(left(v), right(v))
    if op == "ne":
        return lambda v: not _equals(left(v), right(v))
    order = _ORDER[op]

    def compare(v):
        a, b = left(v), right(v)
        if not ((_is_number(a) or isinstance(a, str)) and (_is_number(b) or isinstance(b, str))):
            return None
        return order(a, b)

    return compare


def _or(node: dict, children: list) -> Getter:
    left, right = (_compile(c) for c in children)

    def either(v):
        found = left(v)
        return right(v) if _is_false(found) else found

    return either


def _and(node: dict, children: list) -> Getter:
    left, right = (_compile(c) for c in children)

    def both(v):
        found = left(v)
        return found if _is_false(found) else right(v)

    return both


def _not(node: dict, children: list) -> Getter:
    inner = _compile(children[0])

    def negate(v):
        found = inner(v)
        if _is_number(found) and found == 0:
            return False
        return not found

    return negate


# --- Functions and multi-selects ---------------------------------------------------------------


def _function(node: dict, children: list) -> Getter:
    if any(c["type"] == "expref" for c in children):
        raise _Unsupported("expref")
    args = [_compile(c) for c in children]
    name = node["value"]
    if name == "length" and len(args) == 1:
        (arg,) = args

        def length(v):
            found = arg(v)
            if type(found) in (str, list, dict):
                return len(found)
            return _FUNCTIONS.call_function("length", [found])  # raises jmespath's type error

        return length
    return lambda v: _FUNCTIONS.call_function(name, [a(v) for a in args])


def _multi_select_list(node: dict, children: list) -> Getter:
    parts = [_compile(c) for c in children]
    return lambda v: None if v is None else [p(v) for p in parts]


def _multi_select_dict(node: dict, children: list) -> Getter:
    parts = [(c["value"], _compile(c["children"][0])) for c in children]
    return lambda v: None if v is None else {k: p(v) for k, p in parts}


_BUILDERS: dict[str, Callable[[dict, list], Getter]] = {
    "field": _field,
    "subexpression": _chain,
    "index_expression": _chain,
    "pipe": _chain,
    "identity": _current,
    "current": _current,
    "literal": _literal,
    "index": _index,
    "slice": _slice,
    "flatten": _flatten,
    "projection": _projection,
    "value_projection": _projection,
    "filter_projection": _filter_projection,
    "comparator": _comparator,
    "or_expression": _or,
    "and_expression": _and,
    "not_expression": _not,
    "function_expression": _function,
    "multi_select_list": _multi_select_list,
    "multi_select_dict": _multi_select_dict,
}


def compile_expression(expression: str) -> Getter:
    """A function resource -> value, equal to jmespath.search(expression, resource)."""
    parsed = Parser().parse(expression)
    try:
        return _compile(parsed.parsed)
    except _Unsupported:
        return jmespath.compile(expression).search
