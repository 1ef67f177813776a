"""Read policy files in Cloud Custodian's syntax, with line numbers (docs/security.md).

EC2 policies are validated by c7n's own schema and validation (security.custodian), each error
on the line of its key; what they say runs on the compiled evaluator when it is made of value
filters, on c7n's filters otherwise. Worker policies are checked here, every error with its
line, so `manage.py policy validate` shows an author everything to fix at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from core.models import AlertSeverity
from security.models import ResourceKind
from security.policy.yaml_lines import PolicyError, PolicyValidationError, document_load
from security.policy.yaml_lines import line_of as _line

__all__ = ["PolicyError", "PolicySpec", "PolicyValidationError", "policies_parse", "policy_files"]

# --- the subset ---------------------------------------------------------------------------------

RESOURCES = {"ec2": ResourceKind.EC2, "aws.ec2": ResourceKind.EC2, "reelflow.worker": ResourceKind.WORKER}

# Custodian's operator names and aliases -> the name shown in evidence. Matching itself is
# Custodian's own (security.policy.engine uses c7n's operator functions).
OPS = {
    "eq": "eq", "equal": "eq",
    "ne": "ne", "not-equal": "ne",
    "in": "in",
    "not-in": "not-in", "ni": "not-in",
    "regex": "regex", "regex-case": "regex-case", "glob": "glob",
    "contains": "contains", "difference": "difference", "intersect": "intersect", "mod": "mod",
    "gt": "gt", "greater-than": "gt",
    "lt": "lt", "less-than": "lt",
    "ge": "ge", "gte": "ge",
    "le": "le", "lte": "le",
}  # fmt: skip
# Custodian spells these as values (`value: absent`), never as ops.
SPECIAL_VALUES = {"absent", "present", "empty", "not-null"}
# value_types the compiled evaluator runs itself (as Custodian does); others run on c7n.
VALUE_TYPES = {"normalize", "integer", "float", "size"}
FILTER_KEYS = {"type", "key", "op", "value", "value_type"}
_TIME_KEY = re.compile(r"(Time|Date)\b")

SEVERITIES = {
    "info": AlertSeverity.INFO, "low": AlertSeverity.INFO,
    "warning": AlertSeverity.WARNING, "medium": AlertSeverity.WARNING,
    "high": AlertSeverity.CRITICAL, "critical": AlertSeverity.CRITICAL,
}  # fmt: skip

MODE_PERIODIC, MODE_ON_START = "periodic", "on-start"
MODES = {
    "pull": MODE_PERIODIC, "periodic": MODE_PERIODIC,
    "ec2-instance-state": MODE_ON_START, "cloudtrail": MODE_ON_START, "on-start": MODE_ON_START,
}  # fmt: skip
# Keys of a Custodian mode that only concern deploying a Lambda; they change nothing here.
MODE_DEPLOY_KEYS = {
    "role", "schedule", "timeout", "memory", "runtime", "tags", "execution-options", "packages",
    "member-role", "function-prefix", "layers", "concurrency", "dead_letter_config", "environment",
    "kms_key_arn", "security_groups", "subnets", "timezone", "scheduler-role", "group-name",
}  # fmt: skip
POLICY_KEYS = {"name", "resource", "filters", "actions", "mode", "severity", "description", "comment",
               "comments", "metadata", "tags"}  # fmt: skip

WORKER_ACTIONS = {"alert", "notify", "shutdown-worker"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Values a policy may take from where it runs, as Custodian's {account_id} and {region} do.
_PLACEHOLDER = re.compile(r"\{(fleet_version|account_id|region)\}")


@dataclass(frozen=True)
class ActionSpec:
    type: str  # alert | tag | stop | quarantine | terminate | shutdown-worker
    params: dict = field(default_factory=dict)
    line: int = 0


@dataclass
class PolicySpec:
    """A validated policy, before compiling: what the file said, normalized."""

    name: str
    resource: str
    filters: list
    actions: list[ActionSpec]
    mode: str
    events: tuple[str, ...]
    severity: str
    description: str
    source: str
    line: int
    compliant_hint: str = ""
    # "reelflow": the compiled evaluator (value filters, proven equal to Custodian's by the
    # differential tests); "c7n": Custodian's own filters over the same documents.
    engine: str = "reelflow"
    raw: dict = field(default_factory=dict)  # the policy as written (plain), for c7n


class _Errors:
    def __init__(self, source: str):
        self.source, self.items = source, []

    def add(self, line: int, message: str) -> None:
        self.items.append(PolicyError(line, message, self.source))


def _interpolate(value: Any, context: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: context.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [_interpolate(v, context) for v in value]
    return value


def _check_filter(node: Any, line: int, errors: _Errors, context: dict[str, str]) -> Any:
    """Validate one filter and return its normalized form: ("value", spec) / ("and"|"or"|"not", [..])."""
    if not isinstance(node, dict) or not node:
        errors.add(line, "a filter must be a mapping (`type: value` or `and`/`or`/`not`)")
        return None
    line = _line(node, default=line)
    if len(node) == 1:
        (only_key,) = node
        if only_key in ("and", "or", "not"):
            children = node[only_key]
            if not isinstance(children, list) or not children:
                errors.add(_line(node, only_key), f"`{only_key}` takes a non-empty list of filters")
                return None
            parts = [
                _check_filter(c, _line(children, i, line), errors, context) for i, c in enumerate(children)
            ]
            return (only_key, parts)
        if only_key != "type":
            # Custodian's shorthand: `- "tag:owner": absent` or `- State.Name: running`.
            return _check_value_filter(
                {"key": only_key, "value": node[only_key]}, node, line, errors, context
            )
    kind = node.get("type")
    if kind != "value":
        if kind is None:
            errors.add(line, "a filter needs `type: value` (the only filter type this subset supports)")
        else:
            errors.add(_line(node, "type"), f"filter type {kind!r} is not supported; use `type: value`")
        return None
    return _check_value_filter(node, node, line, errors, context)


def _check_value_filter(spec: dict, node: Any, line: int, errors: _Errors, context: dict[str, str]) -> Any:
    for extra in sorted(set(spec) - FILTER_KEYS, key=str):
        errors.add(
            _line(node, extra, line),
            f"unknown filter key {extra!r} (allowed: {', '.join(sorted(FILTER_KEYS))})",
        )
    key = spec.get("key")
    if not isinstance(key, str) or not key:
        errors.add(line, "a value filter needs a `key` (a JMESPath expression or tag:NAME)")
        return None
    if not key.startswith("tag:"):
        try:
            jmespath.compile(key)
        except JMESPathError as exc:
            errors.add(
                _line(node, "key", line), f"key {key!r} is not valid JMESPath: {exc}".replace("\n", " ")
            )
            return None
    if _TIME_KEY.search(key):
        # boto3 gives c7n datetimes, the inventory keeps ISO strings: Custodian compares these.
        errors.add(_line(node, "key", line), f"key {key!r} is a time: it runs on Custodian's engine only")
        return None
    value = _interpolate(spec.get("value"), context)
    op_name = spec.get("op")
    if op_name is None:
        op = value if isinstance(value, str) and value in SPECIAL_VALUES else "eq"
    else:
        op = OPS.get(op_name) if isinstance(op_name, str) else None
        if op is None:
            hint = " (write `value: absent|present`)" if op_name in SPECIAL_VALUES else ""
            errors.add(
                _line(node, "op", line),
                f"op {op_name!r} is not one of Custodian's ({', '.join(sorted(OPS))}){hint}",
            )
            return None
    if op == "regex" or op == "regex-case":
        try:
            re.compile(value)
        except (re.error, TypeError) as exc:
            errors.add(_line(node, "value", line), f"invalid regular expression {value!r}: {exc}")
            return None
    value_type = spec.get("value_type")
    if value_type is not None and value_type not in VALUE_TYPES:
        errors.add(
            _line(node, "value_type", line),
            f"value_type {value_type!r} runs on Custodian's engine only (here: {', '.join(sorted(VALUE_TYPES))})",
        )
        return None
    return (
        "value",
        {"key": key, "op": op, "c7n_op": op_name, "value": value, "value_type": value_type, "line": line},
    )


def _check_action(raw: Any, line: int, resource: str, errors: _Errors) -> ActionSpec | None:
    """Reelflow runs an action itself (recorded with its undo) only when it honours every
    parameter written; any other EC2 action is Custodian's, run by c7n as written (its schema
    has already checked it). Nothing is accepted and silently dropped."""
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        errors.add(line, "an action is a name or a mapping with a `type`")
        return None
    line = _line(raw, default=line)
    kind = raw["type"]
    params = {k: v for k, v in raw.items() if k != "type"}
    if resource == ResourceKind.WORKER:
        if kind not in WORKER_ACTIONS:
            errors.add(
                _line(raw, "type", line),
                f"action {kind!r} is not available for {resource} (available: {', '.join(sorted(WORKER_ACTIONS))})",
            )
            return None
        if params:
            errors.add(line, f"action {kind!r} takes no parameters here ({', '.join(sorted(params))})")
            return None
        return ActionSpec("alert" if kind in ("alert", "notify") else kind, {}, line)
    native = _native_ec2_action(kind, params)
    return ActionSpec(*native, line) if native else ActionSpec("custodian", {"action": _plain(raw)}, line)


def _native_ec2_action(kind: str, params: dict) -> tuple[str, dict] | None:
    if kind == "alert" and not params:
        return "alert", {}
    if kind in ("stop", "terminate") and not params:
        return kind, {}
    if kind in ("tag", "mark") and params and set(params) <= {"key", "value", "tags"}:
        tags = dict(params.get("tags") or {})
        if "key" in params:
            tags[str(params["key"])] = str(params.get("value", ""))
        return "tag", {"tags": {str(k): str(v) for k, v in tags.items()}}
    if kind == "modify-security-groups" and set(params) == {"remove", "isolation-group"}:
        if params["remove"] == "all":  # Custodian's way to quarantine
            return "quarantine", {"isolation-group": str(params["isolation-group"])}
    if kind == "quarantine" and set(params) <= {"isolation-group"}:
        group = params.get("isolation-group")
        return "quarantine", {"isolation-group": str(group)} if group else {}
    return None


def policies_parse(
    text: str, *, source: str = "<policy>", context: dict[str, str] | None = None
) -> list[PolicySpec]:
    """Parse and validate a policy document; raise PolicyValidationError with every error found."""
    context = context or {}
    errors = _Errors(source)
    doc = document_load(text, source)
    for extra in sorted(set(doc) - {"policies", "vars"}, key=str):
        errors.add(_line(doc, extra), f"unknown top-level key {extra!r}")
    specs, seen = [], {}
    policies = doc["policies"]
    for index, raw in enumerate(policies):
        spec = _check_policy(
            raw, _line(policies, index), index=index, seen=seen, source=source, errors=errors, context=context
        )
        if spec is not None:
            specs.append(spec)
    if errors.items:
        raise PolicyValidationError(errors.items)
    return specs


def _check_policy(
    raw: Any,
    line: int,
    *,
    index: int,
    seen: dict[str, int],
    source: str,
    errors: _Errors,
    context: dict[str, str],
) -> PolicySpec | None:
    """One entry of `policies:`; None when it is too broken to describe (its errors are added)."""
    if not isinstance(raw, dict):
        errors.add(line, "a policy must be a mapping")
        return None
    line = _line(raw, default=line)
    name = _check_name(raw, index, seen, errors)
    resource = RESOURCES.get(raw.get("resource")) if isinstance(raw.get("resource"), str) else None
    if resource is None:
        errors.add(
            _line(raw, "resource"),
            f"resource {raw.get('resource')!r} is not supported ({', '.join(RESOURCES)})",
        )
        return None
    engine = "reelflow"
    if resource == ResourceKind.EC2:
        # Custodian's schema and validation decide what an EC2 policy may say.
        from security.custodian import custodian_errors

        problems = custodian_errors(raw)
        for path, problem in problems:
            errors.add(_path_line(raw, path, line), problem)
        if problems:
            return None
    else:
        for extra in sorted(set(raw) - POLICY_KEYS, key=str):
            errors.add(_line(raw, extra), f"unknown policy key {extra!r}")
    filters_raw = _check_list(raw, "filters", errors)
    # What the compiled evaluator cannot run, Custodian runs (EC2); for workers it is an error.
    subset = _Errors(source) if resource == ResourceKind.EC2 else errors
    filters = [
        _check_filter(f, _line(filters_raw, i, line), subset, context) for i, f in enumerate(filters_raw)
    ]
    if subset is not errors and subset.items:
        engine, filters = "c7n", []
    actions_raw = _check_list(raw, "actions", errors)
    actions = [
        _check_action(a, _line(actions_raw, i, line), resource, errors) for i, a in enumerate(actions_raw)
    ]
    mode, events = _check_mode(raw, resource, errors)
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    return PolicySpec(
        name=name,
        resource=resource,
        filters=filters,
        actions=[a for a in actions if a is not None],
        mode=mode,
        events=events,
        severity=_check_severity(raw, metadata, errors),
        description=str(raw.get("description") or raw.get("comment") or raw.get("comments") or ""),
        source=source,
        line=line,
        compliant_hint=str(metadata.get("compliant", "")),
        engine=engine,
        raw=_plain(raw),
    )


def _path_line(node: Any, path: tuple, default: int) -> int:
    """The line of the deepest element of `path` the file still has (Custodian names a path,
    the author needs a line)."""
    line = default
    for step in path:
        if isinstance(node, dict) and step in node:
            line = _line(node, step, line)
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            line = _line(node, step, line)
            node = node[step]
        else:
            break
    return line


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _check_name(raw: dict, index: int, seen: dict[str, int], errors: _Errors) -> str:
    """The policy's name, unique in the document (`seen`: name -> line); a placeholder if invalid."""
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        errors.add(_line(raw, "name"), "a policy needs a `name` of letters, digits, '-', '_' or '.'")
        return f"<policy {index + 1}>"
    if name in seen:
        errors.add(_line(raw, "name"), f"policy name {name!r} is already used on line {seen[name]}")
    else:
        seen[name] = _line(raw, "name")
    return name


def _check_list(raw: dict, key: str, errors: _Errors) -> list:
    value = raw.get(key, [])
    if not isinstance(value, list):
        errors.add(_line(raw, key), f"`{key}` must be a list")
        return []
    return value


def _check_severity(raw: dict, metadata: dict, errors: _Errors) -> str:
    severity_raw = raw.get("severity", metadata.get("severity", "warning"))
    severity = SEVERITIES.get(str(severity_raw).lower())
    if severity is None:
        errors.add(_line(raw, "severity"), f"severity {severity_raw!r} is not one of {', '.join(SEVERITIES)}")
        return AlertSeverity.WARNING
    return severity


def _check_mode(raw: dict, resource: str, errors: _Errors) -> tuple[str, tuple[str, ...]]:
    mode_raw = raw.get("mode")
    if mode_raw is None:
        return MODE_PERIODIC, ()
    if not isinstance(mode_raw, dict) or mode_raw.get("type") not in MODES:
        errors.add(_line(raw, "mode"), f"mode needs a `type` of {', '.join(MODES)}")
        return MODE_PERIODIC, ()
    kind = mode_raw["type"]
    for extra in sorted(set(mode_raw) - MODE_DEPLOY_KEYS - {"type", "events"}, key=str):
        errors.add(_line(mode_raw, extra), f"unknown mode key {extra!r}")
    events = mode_raw.get("events") or []
    if kind == "ec2-instance-state":
        if resource != ResourceKind.EC2:
            errors.add(_line(mode_raw, "type"), "mode ec2-instance-state is for resource ec2")
        bad = [
            e
            for e in events
            if e not in ("pending", "running", "stopping", "stopped", "shutting-down", "terminated")
        ]
        if not events or bad:
            errors.add(
                _line(mode_raw, "events"),
                "ec2-instance-state needs `events` from the EC2 states (e.g. [running])",
            )
    if kind == "cloudtrail":
        names = [e.get("event") if isinstance(e, dict) else e for e in events]
        if names != ["RunInstances"] and (not names or any(n != "RunInstances" for n in names)):
            errors.add(_line(mode_raw, "events"), "cloudtrail mode is supported for RunInstances only")
    return MODES[kind], tuple(str(e) if not isinstance(e, dict) else str(e.get("event")) for e in events)


def policy_files(paths: list[str]) -> list[Path]:
    """The YAML files under each path (a file, or a folder searched one level deep)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
        elif path.exists():
            found.append(path)
        else:
            raise PolicyValidationError([PolicyError(0, "no such file or folder", str(path))])
    return found
