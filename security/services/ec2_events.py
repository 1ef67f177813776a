"""EC2 events in: EventBridge "EC2 Instance State-change Notification" and CloudTrail
RunInstances, from SQS or the webhook (parsed and checked by security.event_parsing). Each
instance is handled on its own: an id EC2 does not know is reported, never a reason to drop
the real instances beside it. A RunInstances event is checked against EC2 before anything is
stopped (the instance's LaunchTime near the event's time, its owner the caller's account, a
session really its issuer's); a mismatch raises an alert instead of acting."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings

from core.services import event_record
from security import aws
from security.event_parsing import Ec2Event, EventRejected, ec2_events_parse
from security.models import Instance, InstanceState, ResourceKind
from security.policy import Trigger, policy_set_current
from security.principals import principal_inconsistency
from security.services.detectors import launch_event_distrust, launch_principal_allowed, launch_respond
from security.services.evaluation import instance_evaluate
from security.services.inventory import ec2_instances_refresh
from security.services.violations import violations_close_for_instance

logger = logging.getLogger(__name__)

__all__ = ["EventRejected", "IntakeResult", "ec2_event_receive", "ec2_events_parse"]


@dataclass
class IntakeResult:
    instances: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # ids EC2 does not know
    distrusted: list[str] = field(default_factory=list)  # launch events EC2 contradicts: not acted on
    errors: dict[str, str] = field(default_factory=dict)  # instance id -> the cloud's error
    opened: int = 0
    duplicates: int = 0
    ignored: int = 0
    transient: bool = False  # an error a later retry could get past

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def launch_event_mismatch(*, event: Ec2Event, facts: aws.LaunchFacts) -> str:
    """Why EC2 contradicts this RunInstances event for one instance, or ""."""
    if event.event_time is None:
        return "the event has no valid eventTime to check the launch against"
    if facts.launch_time is None:
        return "EC2 reports no LaunchTime"
    skew = abs((facts.launch_time - event.event_time).total_seconds())
    if skew > settings.SECURITY_LAUNCH_EVENT_SKEW_SECONDS:
        return (
            f"EC2 says it was launched at {facts.launch_time.isoformat()}, {skew:.0f} s from the "
            f"event's time {event.event_time.isoformat()} "
            f"(SECURITY_LAUNCH_EVENT_SKEW_SECONDS={settings.SECURITY_LAUNCH_EVENT_SKEW_SECONDS})"
        )
    account = event.principal.account if event.principal else ""
    if account and facts.owner_id and account != facts.owner_id:
        return f"it belongs to account {facts.owner_id}, the caller to {account}"
    return ""


def _record(instance: Instance, event: Ec2Event, source: str) -> None:
    event_record(
        type="security.ec2_event",
        subject=instance,
        actor_label=event.principal_label or source,
        payload={"kind": event.kind, "state": event.state, "event_id": event.event_id, "source": source},
    )


def _evaluate(instance: Instance, event: Ec2Event, result: IntakeResult) -> None:
    """Run the policies whose mode listens for this event: `ec2-instance-state` with its states
    (a `stopped` event runs the policies that listen for stopped, and only those), `cloudtrail`
    on RunInstances, Reelflow's `on-start` on any start."""
    if instance.state == InstanceState.TERMINATED:
        violations_close_for_instance(instance=instance, reason="the instance was terminated")
        return
    name = "RunInstances" if event.kind == "launch" else event.state
    if not policy_set_current().applicable(instance.kind, Trigger.START, name):
        result.ignored += 1
        return
    report = instance_evaluate(instance_id=instance.pk, trigger=Trigger.START, event=name)
    result.opened += len(report.opened)


def _refresh(event: Ec2Event, ids: list[str], result: IntakeResult) -> list[Instance]:
    try:
        instances = ec2_instances_refresh(region=event.region, instance_ids=ids) if ids else []
    except aws.CloudError as exc:
        result.errors |= dict.fromkeys(ids, str(exc)[:500])
        result.transient = result.transient or exc.transient
        return []
    known = {i.external_id for i in instances}
    result.unknown += [i for i in ids if i not in known and i not in result.unknown]
    result.instances += [i.external_id for i in instances]
    return instances


def _state_handle(event: Ec2Event, source: str, result: IntakeResult) -> None:
    for instance in _refresh(event, event.instance_ids, result):
        _record(instance, event, source)
        _evaluate(instance, event, result)


def _launch_distrusted(event: Ec2Event, result: IntakeResult) -> tuple[dict, set[str]]:
    """(EC2's facts of the instances, the ids whose launch EC2 contradicts)."""
    reasons: dict[str, str] = {}
    facts = aws.instances_launch_facts(region=event.region, instance_ids=event.instance_ids)
    for instance_id in event.instance_ids:
        if instance_id not in facts:
            reasons[instance_id] = "EC2 knows no such instance"
            result.unknown.append(instance_id)
            continue
        why = principal_inconsistency(event.principal) if event.principal else ""
        reasons[instance_id] = why or launch_event_mismatch(event=event, facts=facts[instance_id])
    reasons = {k: v for k, v in reasons.items() if v}
    if reasons:
        result.distrusted.append(event.event_id)
        launch_event_distrust(
            event_id=event.event_id, region=event.region, principal=event.principal_label, reasons=reasons
        )
    return facts, set(reasons)


def _launch_handle(event: Ec2Event, source: str, result: IntakeResult) -> None:
    if event.event_id:
        already = set(
            Instance.objects.filter(kind=ResourceKind.EC2, launch_event_id=event.event_id).values_list(
                "external_id", flat=True
            )
        )
        if already >= set(event.instance_ids):
            result.duplicates += 1  # SQS delivers at least once; the launch was handled
            return
    allowed = launch_principal_allowed(principal=event.principal)
    if allowed is None:
        logger.warning("SECURITY_LAUNCH_ALLOWLIST is empty: launch by %s not checked", event.principal_label)
    try:
        facts, distrusted = _launch_distrusted(event, result)
    except aws.CloudError as exc:
        result.errors |= dict.fromkeys(event.instance_ids, str(exc)[:500])
        result.transient = result.transient or exc.transient
        return
    trusted = [i for i in event.instance_ids if i in facts and i not in distrusted]
    stop_errors: dict[str, str] = {}
    if allowed is False:
        # Stop first (one instance at a time, so one that cannot stop keeps no other running),
        # then read: every round trip before the stop is exposure.
        for instance_id in trusted:
            try:
                aws.instance_stop(region=event.region, instance_id=instance_id)
            except aws.CloudError as exc:
                stop_errors[instance_id] = str(exc)
    for instance in _refresh(event, [i for i in event.instance_ids if i in facts], result):
        _record(instance, event, source)
        if instance.external_id in distrusted:
            continue  # not a launch we believe: the alert says why, the sweep evaluates it
        Instance.objects.filter(pk=instance.pk).update(
            launched_by=event.principal_label[:300], launch_event_id=event.event_id[:128]
        )
        if allowed is False:
            launch_respond(
                instance=instance,
                principal=event.principal_label,
                issuer=event.principal.issuer if event.principal else "",
                event_id=event.event_id,
                stop_error=stop_errors.get(instance.external_id, ""),
            )
            if instance.external_id not in stop_errors:
                result.stopped.append(instance.external_id)
        _evaluate(instance, event, result)


def ec2_event_receive(*, body, source: str) -> IntakeResult:
    """Handle every event in `body`: check launches against EC2, read the instances, evaluate,
    respond. Raises EventRejected (before anything is done) when the document is malformed."""
    result = IntakeResult()
    for event in ec2_events_parse(body):
        if event.kind == "launch":
            _launch_handle(event, source, result)
        else:
            _state_handle(event, source, result)
    return result
