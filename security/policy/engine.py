"""Compiled policies: each filter tree becomes nested closures over fast key getters.

A policy is compiled once per load; evaluating it against a resource is then plain Python
calls, no YAML, no per-call parsing, no operator lookup by name. Tags (`tag:NAME` keys) are
turned into a dict once per resource and shared by every policy evaluated on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from c7n.filters.core import OPERATORS
from jmespath.exceptions import JMESPathError

from security.policy.jmes import compile_expression
from security.policy.loader import MODE_ON_START, PolicySpec

Test = Callable[[dict, dict], bool]
_SIMPLE_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_LENGTH_OF = re.compile(r"^\s*length\((.*)\)\s*$", re.DOTALL)


class Trigger:
    """Why an evaluation runs: a start event runs on-start policies, the sweep runs them all."""

    START = "start"
    SWEEP = "sweep"
    MANUAL = "manual"


def resource_tags(resource: dict) -> dict:
    tags = resource.get("Tags")
    if not tags:
        return {}
    # The first of duplicate keys wins, as in Custodian's tag lookup.
    return {t.get("Key"): t.get("Value") for t in reversed(tags) if isinstance(t, dict)}


def _getter(key: str) -> tuple[Callable[[dict, dict], Any], bool]:
    """(get(resource, tags), uses_tags) for a Custodian value-filter key."""
    if key.startswith("tag:"):
        name = key[4:]
        return (lambda r, t: t.get(name)), True
    if _SIMPLE_PATH.match(key):
        parts = key.split(".")
        if len(parts) == 1:
            (only,) = parts
            return (lambda r, t: r.get(only)), False
        if len(parts) == 2:
            first, second = parts

            def get2(r, t):
                v = r.get(first)
                return v.get(second) if isinstance(v, dict) else None

            return get2, False

        def get_path(r, t):
            v = r
            for part in parts:
                if not isinstance(v, dict):
                    return None
                v = v.get(part)
            return v

        return get_path, False
    search = compile_expression(key)

    def get_expr(r, t):
        try:
            return search(r)
        except (JMESPathError, TypeError, ValueError):
            # A function given the wrong type (e.g. length(null)) means "no value", as absent.
            return None

    return get_expr, False


def _coerce(value_type: str | None) -> Callable[[Any], Any] | None:
    """Custodian's value_type on the resource's side (ValueFilter.process_value_type): the
    expected value is never converted (`normalize` lower-cases only the resource's)."""
    if value_type == "normalize":
        return lambda v: v.strip().lower() if isinstance(v, str) else v
    if value_type in ("integer", "float"):
        cast, zero = (int, 0) if value_type == "integer" else (float, 0.0)

        def number(v):
            try:
                return cast(str(v).strip())
            except ValueError:
                return zero

        return number
    if value_type == "size":

        def size(v):
            try:
                return len(v)
            except TypeError:
                return 0

        return size
    return None


def _matcher(spec: dict, coerce: Callable[[Any], Any] | None) -> Callable[[Any], bool]:
    """Custodian's ValueFilter.match, compiled: the special values first, then the operator
    (c7n's own function; a TypeError, such as "10" > 5, is False), else equality."""
    value, c7n_op = spec["value"], spec["c7n_op"]
    compare = OPERATORS[c7n_op] if c7n_op else None
    empty_when_none = c7n_op in ("in", "not-in")
    special = value if isinstance(value, str) and value in ("absent", "present", "empty", "not-null") else ""

    def match(r):
        if empty_when_none and r is None:
            r = ()
        if coerce is not None:
            r = coerce(r)
        if special:
            if special == "absent" and r is None:
                return True
            if special == "present" and r is not None:
                return True
            if special == "not-null" and r:
                return True
            if special == "empty" and not r:
                return True
        if compare is not None:
            try:
                return bool(compare(r, value))
            except TypeError:
                return False
        return r == value

    return match


@dataclass(frozen=True)
class Leaf:
    key: str
    op: str
    value: Any
    value_type: str | None
    line: int
    get: Callable[[dict, dict], Any]
    check: Callable[[Any], bool]
    coerce: Callable[[Any], Any] | None

    def actual(self, resource: dict, tags: dict) -> Any:
        value = self.get(resource, tags)
        return self.coerce(value) if self.coerce is not None else value

    def test(self, resource: dict, tags: dict) -> bool:
        return self.check(self.get(resource, tags))


def _leaf(spec: dict) -> Leaf:
    get, _ = _getter(spec["key"])
    coerce = _coerce(spec["value_type"])
    return Leaf(
        spec["key"],
        spec["op"],
        spec["value"],
        spec["value_type"],
        spec["line"],
        get,
        _matcher(spec, coerce),
        coerce,
    )


def _all(tests: list[Test]) -> Test:
    if not tests:
        return lambda r, t: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return lambda r, t: a(r, t) and b(r, t)
    return lambda r, t: all(f(r, t) for f in tests)


def _any(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    return lambda r, t: any(f(r, t) for f in tests)


def _compile_node(node: tuple) -> tuple[Test, Any]:
    """(test, tree) where tree keeps the leaves for explaining a match."""
    kind, body = node
    if kind == "value":
        leaf = _leaf(body)
        get, check = leaf.get, leaf.check
        return (lambda r, t: check(get(r, t))), leaf
    compiled = [_compile_node(child) for child in body]
    tests = [c[0] for c in compiled]
    tree = (kind, [c[1] for c in compiled])
    if kind == "and":
        return _all(tests), tree
    if kind == "or":
        return _any(tests), tree
    inner = _all(tests)  # Custodian's `not` negates the and of its list
    return (lambda r, t: not inner(r, t)), tree


def _uses_tags(tree: Any) -> bool:
    if isinstance(tree, Leaf):
        return tree.key.startswith("tag:")
    return any(_uses_tags(child) for child in tree[1])


_NEGATION = {
    "eq": "must not equal", "ne": "must equal", "in": "must not be one of", "not-in": "must be one of",
    "contains": "must not contain", "regex": "must not match", "gt": "must be at most",
    "lt": "must be at least", "ge": "must be below", "le": "must be above",
    "absent": "must be set", "present": "must not be set", "empty": "must not be empty",
    "not-null": "must be empty",
}  # fmt: skip
_AFFIRMATION = {
    "eq": "must equal", "ne": "must not equal", "in": "must be one of", "not-in": "must not be one of",
    "contains": "must contain", "regex": "must match", "gt": "must be above", "lt": "must be below",
    "ge": "must be at least", "le": "must be at most", "absent": "must not be set",
    "present": "must be set", "empty": "must be empty", "not-null": "must not be empty",
}  # fmt: skip


def _json_safe(value: Any, limit: int = 2000) -> Any:
    text = json.dumps(value, default=str)
    return value if len(text) <= limit else text[:limit] + "…"


def _explain(tree: Any, resource: dict, tags: dict, negated: bool, out: list[dict]) -> None:
    if isinstance(tree, Leaf):
        held = tree.test(resource, tags)
        if tree.op in ("absent", "present", "empty", "not-null"):
            expected = ""
        else:
            expected = tree.value
        wording = (_AFFIRMATION if negated else _NEGATION).get(tree.op, f"must {'' if negated else 'not '}satisfy {tree.op}")
        counted = _LENGTH_OF.match(tree.key)
        items = None
        if counted:
            # `length(X) gt 0` rules: the offending configuration is X itself, not the count.
            try:
                items = _getter(counted.group(1))[0](resource, tags)
            except JMESPathError:
                items = None
        out.append(
            {
                "items": _json_safe(items),
                "key": tree.key,
                "op": tree.op,
                "value": _json_safe(expected),
                "actual": _json_safe(tree.actual(resource, tags)),
                "held": held,
                # A leaf counts toward the violation when it held (or, under `not`, failed).
                "offending": held != negated,
                "compliant": f"{tree.key} {wording}"
                + (f" {json.dumps(expected, default=str)}" if expected != "" else ""),
                "line": tree.line,
            }
        )
        return
    kind, children = tree
    for child in children:
        _explain(child, resource, tags, negated != (kind == "not"), out)


class Policy:
    """A compiled policy: `matches(resource)` is the hot path; `explain` is for evidence."""

    __slots__ = ("spec", "test", "tree", "uses_tags")
    engine = "reelflow"

    def __init__(self, spec: PolicySpec):
        self.spec = spec
        compiled = [_compile_node(f) for f in spec.filters]
        self.test = _all([c[0] for c in compiled])
        self.tree = ("and", [c[1] for c in compiled])
        self.uses_tags = _uses_tags(self.tree)

    name = property(lambda self: self.spec.name)
    resource = property(lambda self: self.spec.resource)
    severity = property(lambda self: self.spec.severity)
    mode = property(lambda self: self.spec.mode)
    actions = property(lambda self: self.spec.actions)
    description = property(lambda self: self.spec.description)

    def matches(self, resource: dict, tags: dict | None = None) -> bool:
        return self.test(resource, tags if tags is not None else resource_tags(resource))

    def explain(self, resource: dict) -> dict:
        checks: list[dict] = []
        _explain(self.tree, resource, resource_tags(resource), False, checks)
        return {
            "policy": self.name,
            "description": self.description,
            "source": f"{self.spec.source}:{self.spec.line}",
            "checks": checks,
            "compliant": self.spec.compliant_hint
            or "; ".join(c["compliant"] for c in checks if c["offending"]),
        }

    def __repr__(self) -> str:
        return f"<Policy {self.name} ({self.resource})>"


_STARTS = ("pending", "running")


def listens(spec: PolicySpec, event: str) -> bool:
    """Whether an on-start policy runs on `event`: a state from `ec2-instance-state`'s events, a
    launch ("RunInstances") for `cloudtrail` and for state modes that listen for a start, and
    any start ("" or pending/running) for Reelflow's `on-start`."""
    events = set(spec.events)
    if not events:  # Reelflow's on-start
        return event in ("", "RunInstances", *_STARTS)
    if event == "RunInstances":
        return "RunInstances" in events or bool(events & set(_STARTS))
    return event in events or (event == "" and bool(events & set(_STARTS)))


class PolicySet:
    def __init__(self, specs: Iterable[PolicySpec]):
        from security.policy.c7n_engine import CustodianPolicy

        self.policies = [CustodianPolicy(spec) if spec.engine == "c7n" else Policy(spec) for spec in specs]
        self._by_kind: dict[tuple[str, str], list[Policy]] = {}

    def __iter__(self):
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    def get(self, name: str) -> Policy | None:
        return next((p for p in self.policies if p.name == name), None)

    def applicable(self, kind: str, trigger: str, event: str = "") -> list[Policy]:
        """Start events run the on-start policies whose mode listens for this event (an EC2 state
        such as "stopped", or "RunInstances"); the sweep and manual runs run all of them."""
        cache_key = (kind, trigger, event)
        found = self._by_kind.get(cache_key)
        if found is None:
            found = [
                p for p in self.policies
                if p.resource == kind and (trigger != Trigger.START or (p.mode == MODE_ON_START and listens(p.spec, event)))
            ]  # fmt: skip
            self._by_kind[cache_key] = found
        return found

    def matching(self, resource: dict, kind: str, trigger: str = Trigger.SWEEP) -> list[Policy]:
        policies = self.applicable(kind, trigger)
        tags = resource_tags(resource)
        return [p for p in policies if p.test(resource, tags)]
