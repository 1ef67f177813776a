"""EC2 events in: EventBridge "EC2 Instance State-change Notification" and CloudTrail
RunInstances (inside EventBridge's "AWS API Call via CloudTrail", or as a raw CloudTrail
record), from SQS or the webhook. Each starts an evaluation of the instance at once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings

from core.services import event_record
from security import aws
from security.models import Instance, InstanceState, ResourceKind
from security.policy import Trigger
from security.services.detectors import launch_principal_allowed, launch_respond
from security.services.evaluation import instance_evaluate
from security.services.inventory import ec2_instances_refresh
from security.services.violations import violations_close_for_instance

logger = logging.getLogger(__name__)

STATE_CHANGE = "EC2 Instance State-change Notification"
CLOUDTRAIL_CALL = "AWS API Call via CloudTrail"
_STARTING = ("pending", "running")


class EventRejected(ValueError):
    """Not an event this intake understands; the message says what is wrong."""


@dataclass
class Ec2Event:
    kind: str  # "state" | "launch"
    event_id: str
    region: str
    instance_ids: list[str]
    state: str = ""
    principal: str = ""
    issuer: str = ""


@dataclass
class IntakeResult:
    instances: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    opened: int = 0
    duplicates: int = 0
    ignored: int = 0

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _cloudtrail(record: dict, *, event_id: str = "") -> Ec2Event | None:
    if (
        record.get("eventName") != "RunInstances"
        or record.get("eventSource", "ec2.amazonaws.com") != "ec2.amazonaws.com"
    ):
        return None
    if record.get("errorCode"):
        return None  # the call failed: nothing was launched
    identity = record.get("userIdentity") or {}
    issuer = ((identity.get("sessionContext") or {}).get("sessionIssuer") or {}).get("arn", "")
    items = ((record.get("responseElements") or {}).get("instancesSet") or {}).get("items") or []
    ids = [i["instanceId"] for i in items if isinstance(i, dict) and i.get("instanceId")]
    if not ids:
        raise EventRejected("RunInstances record without responseElements.instancesSet.items")
    return Ec2Event(
        kind="launch",
        event_id=str(record.get("eventID") or event_id),
        region=str(record.get("awsRegion") or ""),
        instance_ids=ids,
        principal=str(
            identity.get("arn") or identity.get("principalId") or identity.get("type") or "unknown"
        ),
        issuer=issuer,
    )


def ec2_events_parse(body) -> list[Ec2Event]:
    """Every EC2 event in a document: one event, a list of them, or CloudTrail's {"Records": [...]}."""
    if isinstance(body, list):
        return [e for item in body for e in ec2_events_parse(item)]
    if not isinstance(body, dict):
        raise EventRejected("an event is a JSON object")
    if "Records" in body and isinstance(body["Records"], list):
        return [e for r in body["Records"] if (e := _cloudtrail(r)) is not None]
    detail_type = body.get("detail-type")
    detail = body.get("detail") or {}
    if detail_type == STATE_CHANGE:
        if not detail.get("instance-id") or not detail.get("state"):
            raise EventRejected("state-change notification without detail.instance-id and detail.state")
        return [
            Ec2Event(
                "state",
                str(body.get("id", "")),
                str(body.get("region", "")),
                [detail["instance-id"]],
                state=detail["state"],
            )
        ]
    if detail_type == CLOUDTRAIL_CALL:
        found = _cloudtrail(detail, event_id=str(body.get("id", "")))
        if found is not None and not found.region:
            found.region = str(body.get("region", ""))
        return [found] if found else []
    if "eventName" in body:
        found = _cloudtrail(body)
        return [found] if found else []
    raise EventRejected(f"unknown event (detail-type {detail_type!r})")


def ec2_event_receive(*, body, source: str) -> IntakeResult:
    """Handle every event in `body`: read the instances, check launches, evaluate, respond."""
    result = IntakeResult()
    for event in ec2_events_parse(body):
        region = event.region or (settings.AWS_REGIONS[0] if settings.AWS_REGIONS else "")
        if not region:
            raise EventRejected("the event names no region and AWS_REGIONS is empty")
        if event.kind == "launch":
            already = set(
                Instance.objects.filter(kind=ResourceKind.EC2, launch_event_id=event.event_id).values_list("external_id", flat=True)
            ) if event.event_id else set()  # fmt: skip
            if already >= set(event.instance_ids):
                result.duplicates += 1  # SQS delivers at least once; the launch was handled
                continue
        unauthorized, stop_error = False, ""
        if event.kind == "launch":
            allowed = launch_principal_allowed(principal=event.principal, issuer=event.issuer)
            if allowed is None:
                logger.warning(
                    "SECURITY_LAUNCH_ALLOWLIST is empty: launch by %s not checked", event.principal
                )
            unauthorized = allowed is False
            if unauthorized:
                # Stop first, read later: every round trip before the stop is exposure.
                try:
                    aws.instances_stop(region=region, instance_ids=event.instance_ids)
                except aws.CloudError as exc:
                    stop_error = str(exc)
        instances = ec2_instances_refresh(region=region, instance_ids=event.instance_ids)
        for instance in instances:
            result.instances.append(instance.external_id)
            event_record(
                type="security.ec2_event",
                subject=instance,
                actor_label=event.principal or source,
                payload={
                    "kind": event.kind,
                    "state": event.state,
                    "event_id": event.event_id,
                    "source": source,
                },
            )
            if event.kind == "launch":
                Instance.objects.filter(pk=instance.pk).update(
                    launched_by=event.principal[:300], launch_event_id=event.event_id[:128]
                )
                if unauthorized:
                    launch_respond(
                        instance=instance,
                        principal=event.principal,
                        issuer=event.issuer,
                        event_id=event.event_id,
                        stop_error=stop_error,
                    )
                    if not stop_error:
                        result.stopped.append(instance.external_id)
            if instance.state == InstanceState.TERMINATED:
                violations_close_for_instance(instance=instance, reason="the instance was terminated")
            elif event.kind == "launch" or event.state in _STARTING:
                report = instance_evaluate(instance_id=instance.pk, trigger=Trigger.START)
                result.opened += len(report.opened)
            else:
                result.ignored += 1
    return result
