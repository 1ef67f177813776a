"""EC2 events as they arrive (EventBridge state changes, CloudTrail RunInstances in EventBridge's
envelope, raw CloudTrail records, CloudTrail's {"Records": [...]}, or a list of those), checked
field by field: anything a sender could get wrong is an EventRejected with what is wrong, never
a KeyError or a TypeError (which answered 500 and looped on SQS)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from security.principals import Principal, principal_from_identity

STATE_CHANGE = "EC2 Instance State-change Notification"
CLOUDTRAIL_CALL = "AWS API Call via CloudTrail"
# i- and 8 or 17 hex digits, as EC2 names instances (moto too).
INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_STATES = {"pending", "running", "stopping", "stopped", "shutting-down", "terminated"}
MAX_EVENTS = 100  # per request or message: EventBridge sends one, CloudTrail files a few dozen
MAX_INSTANCES = 100  # per RunInstances record we act on


class EventRejected(ValueError):
    """Not an event this intake understands; the message says what is wrong."""


@dataclass
class Ec2Event:
    kind: str  # "state" | "launch"
    event_id: str
    region: str
    instance_ids: list[str]
    state: str = ""
    principal: Principal | None = None
    event_time: datetime | None = None

    @property
    def principal_label(self) -> str:
        return self.principal.label if self.principal else ""


def _text(value, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EventRejected(f"{what} must be a string, not {type(value).__name__}")
    return value


def _object(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventRejected(f"{what} must be an object, not {type(value).__name__}")
    return value


def _instance_id(value, what: str) -> str:
    if not isinstance(value, str) or not INSTANCE_ID.fullmatch(value):
        raise EventRejected(f"{what} {value!r} is not an EC2 instance id (i- and 8 or 17 hex digits)")
    return value


def _region(value, what: str) -> str:
    region = _text(value, what)
    enabled = settings.AWS_REGIONS
    if not region:
        if not enabled:
            raise EventRejected("the event names no region and AWS_REGIONS is empty")
        return enabled[0]
    if region not in enabled:
        raise EventRejected(
            f"region {region!r} is not enabled here (AWS_REGIONS: {', '.join(enabled) or 'none'})"
        )
    return region


def _time(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _cloudtrail(record, *, event_id: str = "", region: str = "") -> Ec2Event | None:
    record = _object(record, "a CloudTrail record")
    if (
        record.get("eventName") != "RunInstances"
        or record.get("eventSource", "ec2.amazonaws.com") != "ec2.amazonaws.com"
    ):
        return None
    if record.get("errorCode"):
        return None  # the call failed: nothing was launched
    response = _object(record.get("responseElements"), "responseElements")
    items = _object(response.get("instancesSet"), "responseElements.instancesSet").get("items")
    if not isinstance(items, list) or not items:
        raise EventRejected("RunInstances record without responseElements.instancesSet.items")
    if len(items) > MAX_INSTANCES:
        raise EventRejected(f"RunInstances record with {len(items)} instances (at most {MAX_INSTANCES})")
    ids = [
        _instance_id(_object(item, "an instancesSet item").get("instanceId"), "instanceId") for item in items
    ]
    return Ec2Event(
        kind="launch",
        event_id=_text(record.get("eventID"), "eventID") or event_id,
        region=_region(record.get("awsRegion") or region, "awsRegion"),
        instance_ids=list(dict.fromkeys(ids)),
        principal=principal_from_identity(_object(record.get("userIdentity"), "userIdentity")),
        event_time=_time(record.get("eventTime")),
    )


def _one(body) -> list[Ec2Event]:
    body = _object(body, "an event")
    if "Records" in body:
        records = body["Records"]
        if not isinstance(records, list) or len(records) > MAX_EVENTS:
            raise EventRejected(f"Records must be a list of at most {MAX_EVENTS} CloudTrail records")
        return [e for r in records if (e := _cloudtrail(r)) is not None]
    detail_type = body.get("detail-type")
    detail = _object(body.get("detail"), "detail")
    event_id = _text(body.get("id"), "id")
    if detail_type == STATE_CHANGE:
        state = _text(detail.get("state"), "detail.state")
        if state not in _STATES:
            raise EventRejected(f"detail.state {state!r} is not an EC2 state ({', '.join(sorted(_STATES))})")
        instance_id = _instance_id(detail.get("instance-id"), "detail.instance-id")
        region = _region(body.get("region"), "region")
        return [Ec2Event("state", event_id, region, [instance_id], state=state)]
    if detail_type == CLOUDTRAIL_CALL:
        found = _cloudtrail(detail, event_id=event_id, region=_text(body.get("region"), "region"))
        return [found] if found else []
    if "eventName" in body:
        found = _cloudtrail(body)
        return [found] if found else []
    raise EventRejected(f"unknown event (detail-type {detail_type!r})")


def ec2_events_parse(body) -> list[Ec2Event]:
    """Every EC2 event in a document, all checked before any is handled (a bad one refuses the
    whole document: nothing half-done to retry)."""
    if isinstance(body, list):
        if len(body) > MAX_EVENTS:
            raise EventRejected(f"at most {MAX_EVENTS} events per document")
        return [e for item in body for e in _one(item)]
    return _one(body)
