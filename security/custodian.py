"""The one wrapper around Cloud Custodian (c7n): its schema validates EC2 policies, its filters
select and its actions act, against the EC2 API Reelflow talks to (moto under `make run`, AWS
in production, through the same settings as security.aws).

Reelflow adds to a Custodian policy only what Custodian has no word for: `severity`, the
`on-start` mode, and the actions `alert` and `quarantine` (security.policy.loader). Those are
taken out before c7n sees a policy; everything else is c7n's to accept or refuse.
"""

from __future__ import annotations

import copy
import re
import tempfile
import threading
from datetime import datetime
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from security.aws import CloudError

REELFLOW_MODES = {"on-start"}
REELFLOW_POLICY_KEYS = {"severity"}
# Policy keys c7n has that select resources outside the filters: Reelflow evaluates its own
# inventory (and single instances on events), where they would silently mean nothing.
UNSUPPORTED_POLICY_KEYS = {
    "query": "Reelflow evaluates its inventory, not a describe query: use a filter (e.g. State.Name: stopped)",
    "conditions": "policy conditions are not evaluated here: put the condition in the filters",
    "source": "Reelflow reads EC2 itself: the `source` key is not supported",
    "max-resources": "max-resources is not supported (the violation lifecycle applies per instance)",
    "max-resources-percent": "max-resources-percent is not supported",
}

_load_lock = threading.Lock()
_loaded: list[bool] = []


def custodian_load() -> None:
    """Register c7n's EC2 resource (once per process; c7n's registries are global)."""
    if _loaded:
        return
    with _load_lock:
        if not _loaded:
            from c7n.resources import load_resources

            load_resources(("aws.ec2",))
            _reelflow_actions_register()
            _loaded.append(True)


def _reelflow_actions_register() -> None:
    """Reelflow's own EC2 actions as c7n plugin actions, so c7n's schema knows them (and a path
    in an error still counts the actions as written). Reelflow runs them itself; in c7n they
    do nothing."""
    from c7n.actions import Action
    from c7n.resources.ec2 import EC2
    from c7n.utils import type_schema

    class ReelflowAlert(Action):
        """Reelflow: raise the violation's alert (every violation alerts anyway)."""

        schema = type_schema("alert")
        permissions = ()

        def process(self, resources):
            return None

    class ReelflowQuarantine(Action):
        """Reelflow: replace the security groups with an isolation group (undoable)."""

        schema = type_schema("quarantine", **{"isolation-group": {"type": "string"}})
        permissions = ()

        def process(self, resources):
            return None

    for name, action in (("alert", ReelflowAlert), ("quarantine", ReelflowQuarantine)):
        if name not in EC2.action_registry:
            EC2.action_registry.register(name, action)


class _Session(boto3.session.Session):
    """A boto3 session whose clients reach the endpoints in the settings (c7n builds its own
    clients from a session and knows no endpoint)."""

    def client(self, service_name, *args, **kwargs):
        endpoint = {"ec2": settings.AWS_ENDPOINT_URL_EC2, "sqs": settings.AWS_ENDPOINT_URL_SQS}.get(
            service_name, settings.AWS_ENDPOINT_URL
        )
        if endpoint:
            kwargs.setdefault("endpoint_url", endpoint)
        return super().client(service_name, *args, **kwargs)


def session_factory(region: str):
    def make(*args, **kwargs):
        return _Session(
            region_name=region,
            aws_access_key_id=settings.AWS_ACCESS_KEY_ID or None,
            aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY or None,
        )

    return make


def plain(value: Any) -> Any:
    """Plain dicts and lists (the loader's line-numbered ones are subclasses)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def for_custodian(raw: dict) -> dict:
    """The policy as c7n sees it: Reelflow's own keys and modes taken out (its actions are
    registered with c7n, see _reelflow_actions_register)."""
    data = {k: plain(v) for k, v in raw.items() if k not in REELFLOW_POLICY_KEYS}
    mode = data.get("mode")
    if isinstance(mode, dict) and mode.get("type") in REELFLOW_MODES:
        data.pop("mode")
    if data.get("resource") == "ec2":
        data["resource"] = "aws.ec2"
    return data


@cache
def _schema() -> dict:
    from c7n.schema import JsonSchemaValidator, generate

    custodian_load()
    schema = generate(("aws.ec2",))
    JsonSchemaValidator.check_schema(schema)
    return schema


def _config(region: str, *, dryrun: bool):
    from c7n.config import Config

    return Config.empty(
        region=region,
        account_id=settings.SECURITY_AWS_ACCOUNT_ID,
        output_dir=tempfile.gettempdir(),
        dryrun=dryrun,
        cache="",
    )


def custodian_policy(data: dict, *, region: str, dryrun: bool = True):
    """A c7n Policy over `data` (already for_custodian), validated by c7n."""
    from c7n.policy import Policy

    custodian_load()
    policy = Policy(
        copy.deepcopy(data), _config(region, dryrun=dryrun), session_factory=session_factory(region)
    )
    policy.validate()
    policy.ctx.initialize()  # some filters (offhour) write parse errors where the run would log
    return policy


def custodian_errors(raw: dict) -> list[tuple[tuple, str]]:
    """What c7n's schema and its own validation say is wrong with a policy ([] if nothing):
    (path in the policy, message naming the key). Keys this intake refuses outright come first."""
    from c7n.exceptions import PolicyValidationError as CustodianInvalid
    from c7n.schema import JsonSchemaValidator, specific_error

    errors = [((key,), f"`{key}`: {why}") for key, why in UNSUPPORTED_POLICY_KEYS.items() if key in raw]
    data = for_custodian(raw)
    seen = set()
    for error in JsonSchemaValidator(_schema()).iter_errors({"policies": [data]}):
        try:
            error = specific_error(error)
        except Exception:  # noqa: BLE001, S110 - c7n's own narrowing failed: keep the general error
            pass
        error = _narrowed(error)
        path = tuple(error.absolute_path)[2:]  # past ("policies", 0)
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        message = f"Custodian's schema: {where + ': ' if where else ''}{error.message}".replace("\n", " ")
        if (path, message) not in seen:
            seen.add((path, message))
            errors.append((path, message[:500]))
    errors += _regex_values(data.get("filters"), ("filters",))
    if errors:
        return errors
    try:
        custodian_policy(data, region=(settings.AWS_REGIONS or ["us-east-1"])[0])
    except (CustodianInvalid, ValueError, TypeError, KeyError) as exc:
        errors.append(((), f"Custodian: {exc}".replace("\n", " ")[:500]))
    return errors


def _regex_values(filters: Any, path: tuple) -> list[tuple[tuple, str]]:
    """c7n compiles a regex value when it validates and fails on a list with a bare TypeError
    ("unhashable type"); say which key instead."""
    found = []
    for index, node in enumerate(filters if isinstance(filters, list) else []):
        if not isinstance(node, dict):
            continue
        for block in ("and", "or", "not"):
            if block in node:
                found += _regex_values(node[block], (*path, index, block))
        if node.get("op") in ("regex", "regex-case") and not isinstance(node.get("value"), str):
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in (*path, index, "value"))
            found.append(
                (
                    (*path, index, "value"),
                    f"Custodian: {where.lstrip('.')}: op {node['op']} needs one regular expression (a string), not {type(node.get('value')).__name__}",
                )
            )
    return found


def _narrowed(error):
    """An action or filter matching none of the schemas: the error of its own type's schema,
    which names the key (`Additional properties are not allowed ('days', 'op' were unexpected)`)."""
    from c7n.resources.ec2 import EC2
    from c7n.schema import JsonSchemaValidator

    instance, path = error.instance, tuple(error.absolute_path)
    if error.validator not in ("anyOf", "oneOf") or not isinstance(instance, dict) or len(path) < 4:
        return error
    registry = EC2.action_registry if path[2] == "actions" else EC2.filter_registry
    kind = registry.get(instance.get("type", ""))
    if kind is None:
        return error
    schema = {**kind.schema, "definitions": _schema().get("definitions", {})}
    found = next(iter(JsonSchemaValidator(schema).iter_errors(instance)), None)
    if found is None:
        return error
    found.path.extendleft(reversed(path))  # absolute_path follows .path on a root error
    return found


_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)$")


def revived(value: Any) -> Any:
    """A copy of an inventory document with its times as datetimes again, as boto3 gives them to
    c7n (the inventory keeps JSON: ISO strings)."""
    if isinstance(value, dict):
        return {k: revived(v) for k, v in value.items()}
    if isinstance(value, list):
        return [revived(v) for v in value]
    if isinstance(value, str) and _ISO_TIME.match(value):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


class CustodianSelector:
    """A policy's filters run by c7n over resource documents (the inventory's, or one instance's
    on an event). One c7n Policy per region, built on first use."""

    def __init__(self, raw: dict):
        self.data = for_custodian(raw)
        self.data.pop("actions", None)
        self._policies: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _policy(self, region: str):
        with self._lock:
            if region not in self._policies:
                self._policies[region] = custodian_policy(self.data, region=region)
            return self._policies[region]

    def select(self, documents: list[dict], *, region: str) -> list[dict]:
        """The documents c7n's filters keep (copies: c7n annotates what it filters)."""
        if not documents:
            return []
        manager = self._policy(region).resource_manager
        try:
            return manager.filter_resources([revived(d) for d in documents])
        except ClientError as exc:
            raise CloudError(
                f"Custodian's filters: {exc}", code=exc.response.get("Error", {}).get("Code", "")
            ) from exc
        except BotoCoreError as exc:
            raise CloudError(f"Custodian's filters: {exc}", transient=True) from exc


def custodian_action_run(*, action: dict, region: str, document: dict) -> None:
    """Run one of Custodian's actions (as written in the policy) on one instance."""
    data = {"name": "reelflow-action", "resource": "aws.ec2", "actions": [plain(action)]}
    policy = custodian_policy(data, region=region, dryrun=False)
    (runner,) = policy.resource_manager.actions
    try:
        with policy.ctx:
            runner.process([revived(document)])
    except ClientError as exc:
        raise CloudError(f"Custodian's {action.get('type')}: {exc}") from exc
    except BotoCoreError as exc:
        raise CloudError(f"Custodian's {action.get('type')}: {exc}", transient=True) from exc
