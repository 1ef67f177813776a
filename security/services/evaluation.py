"""Policies over the inventory: which rules fire on an instance, what opens, what closes.

The violations are written in one short transaction under the instance's row lock (two
evaluations of one instance never race); the automatic actions, which call AWS or Redis, run
after it commits so no remote call holds the database's write lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from security import fleet
from security.aws import CloudError
from security.models import (
    Instance,
    InstanceState,
    ResourceKind,
    ResponseAction,
    ResponseKind,
    ResponseState,
    Violation,
    ViolationState,
)
from security.policy import PolicySet, Trigger, policy_set_current
from security.policy.engine import resource_tags
from security.services.alerts import security_alert_raise
from security.services.notify import policy_notify
from security.services.violations import Transition, violation_close, violation_observe

logger = logging.getLogger(__name__)

# Evaluating an instance in these states would judge a machine that no longer runs.
_NOT_EVALUATED = (InstanceState.TERMINATED, InstanceState.SHUTTING_DOWN)
_CONFIG_CHANGING = (ResponseKind.TAG, ResponseKind.QUARANTINE)


@dataclass
class EvaluationReport:
    instance_id: int
    fired: list[str] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    responses: list[int] = field(default_factory=list)


def resource_document(instance: Instance) -> dict:
    """The document the policies see. Workers get the verdict on their token, taken against
    the fleet baseline in the database, never against any process's own settings."""
    if instance.kind != ResourceKind.WORKER:
        return instance.config
    doc = dict(instance.config)
    doc["RegistrationTokenValid"] = fleet.token_valid(str(doc.get("TokenSha256", "")))
    return doc


def violation_alert_raise(*, violation: Violation, responses: list[ResponseAction], reason: str = "") -> None:
    from security.services.responses import response_as_alert_action

    instance = violation.instance
    title = f"{violation.policy} on {instance.get_kind_display()} {instance.label}"
    if reason:
        title += f" ({reason})"
    alert = security_alert_raise(
        severity=violation.severity,
        title=title,
        detail=violation.description,
        subject=violation,
        dedup_key=f"security:violation:{violation.pk}",
        evidence={"violation": violation.pk, "resource": str(instance), **violation.evidence},
        actions=[response_as_alert_action(r) for r in responses],
    )
    violation.alert = alert
    violation.save(update_fields=["alert"])
    if responses:
        ResponseAction.objects.filter(pk__in=[r.pk for r in responses]).update(alert=alert)


def instance_evaluate(
    *,
    instance_id: int,
    trigger: str = Trigger.SWEEP,
    policies: PolicySet | None = None,
    act: bool = True,
    event: str = "",
) -> EvaluationReport:
    """Evaluate one instance against the policies `trigger` selects; open, refresh or close
    its violations; run the actions of the newly opened ones and raise their alerts."""
    from security.services.responses import responses_run

    policies = policies if policies is not None else policy_set_current()
    report = EvaluationReport(instance_id=instance_id)
    to_act: list[tuple] = []
    with transaction.atomic():
        instance = Instance.objects.select_for_update().get(pk=instance_id)
        now = timezone.now()
        existing = {v.policy: v for v in Violation.objects.select_for_update().filter(instance=instance)}
        if instance.state in _NOT_EVALUATED:
            for violation in existing.values():
                if violation.state != ViolationState.RESOLVED:
                    violation_close(violation=violation, reason=f"the instance is {instance.state}")
                    report.resolved.append(violation.pk)
            return report
        resource = resource_document(instance)
        tags = resource_tags(resource)
        for policy in policies.applicable(instance.kind, trigger, event):
            violation = existing.get(policy.name)
            if policy.test(resource, tags):
                report.fired.append(policy.name)
                violation, transition = violation_observe(
                    instance=instance,
                    policy=policy,
                    existing=violation,
                    evidence=policy.explain(resource),
                    now=now,
                )
                if transition in (Transition.OPENED, Transition.REOPENED):
                    report.opened.append(violation.pk)
                    to_act.append((policy, violation))
                elif transition == Transition.STILL_OPEN and trigger == Trigger.START:
                    # Started again while its violation is open and unacknowledged (someone
                    # bypassed the response): respond again, on the same alert.
                    to_act.append((policy, violation))
                elif violation.state == ViolationState.OPEN and violation.alert_id is None:
                    to_act.append((None, violation))  # opened before a crash that lost its alert
            elif violation is not None and violation.state != ViolationState.RESOLVED:
                violation_close(violation=violation, reason="compliant: the rule no longer fires")
                report.resolved.append(violation.pk)
        instance.evaluated_at = now
        instance.save(update_fields=["evaluated_at"])
    changed_config = False
    for policy, violation in to_act:
        responses = (
            responses_run(policy=policy, instance=instance, violation=violation) if act and policy else []
        )
        report.responses += [r.pk for r in responses]
        changed_config |= any(r.kind in _CONFIG_CHANGING and r.state == ResponseState.DONE for r in responses)
        with transaction.atomic():
            violation_alert_raise(violation=violation, responses=responses)
            if policy is not None:
                policy_notify(policy=policy, alert=violation.alert)
    if changed_config:
        # Our own tag/quarantine changed the instance: re-read it, so an acknowledgement covers
        # the configuration as it now is and is not reopened by our own change.
        from security.services.inventory import ec2_instances_refresh

        ec2_instances_refresh(region=instance.region, instance_ids=[instance.external_id])
    return report


@dataclass
class DryRunFinding:
    policy: str
    severity: str
    resource: str
    kind: str
    actions: list[str]
    state: str


def policies_dry_run(
    *, policies: PolicySet | None = None, kinds: list[str] | None = None
) -> list[DryRunFinding]:
    """What would fire on the current inventory, changing nothing."""
    policies = policies if policies is not None else policy_set_current()
    findings = []
    instances = Instance.objects.exclude(state__in=_NOT_EVALUATED).order_by("kind", "external_id")
    if kinds:
        instances = instances.filter(kind__in=kinds)
    current = {(v.instance_id, v.policy): v.state for v in Violation.objects.filter(instance__in=instances)}
    for instance in instances.iterator():
        for policy in policies.matching(resource_document(instance), instance.kind, Trigger.MANUAL):
            findings.append(
                DryRunFinding(
                    policy=policy.name,
                    severity=policy.severity,
                    resource=instance.label,
                    kind=instance.kind,
                    actions=[a.type for a in policy.actions if a.type != "alert"],
                    state=current.get((instance.pk, policy.name), "new"),
                )
            )
    return findings


def inventory_evaluate(
    *, trigger: str = Trigger.SWEEP, policies: PolicySet | None = None
) -> list[EvaluationReport]:
    policies = policies if policies is not None else policy_set_current()
    ids = Instance.objects.exclude(state__in=_NOT_EVALUATED).values_list("pk", flat=True)
    return [instance_evaluate(instance_id=pk, trigger=trigger, policies=policies) for pk in list(ids)]


def security_sweep() -> dict:
    """The periodic sweep: refresh EC2, reconcile workers, evaluate everything, expire acks."""
    from security.services.inventory import ec2_inventory_sweep, workers_reconcile
    from security.services.violations import violations_expire

    policies = policy_set_current()
    failures = []
    for region in settings.AWS_REGIONS:
        try:
            ec2_inventory_sweep(region=region)
        except CloudError as exc:
            # One unreachable region must not stop the checks of the others and of the workers.
            logger.error("security sweep: cannot read EC2 in %s: %s", region, exc)
            failures.append(f"{region}: {exc}")
    workers_reconcile()
    reopened = violations_expire()
    reports = inventory_evaluate(trigger=Trigger.SWEEP, policies=policies)
    summary = {
        "evaluated": len(reports),
        "opened": sum(len(r.opened) for r in reports),
        "resolved": sum(len(r.resolved) for r in reports),
        "reopened_expired": len(reopened),
    }
    if failures:
        raise CloudError(f"sweep done without {len(failures)} region(s): {'; '.join(failures)} ({summary})")
    return summary
