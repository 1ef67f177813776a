"""Changes operations staff make to publish rules and publisher verification. Each records
an event with the actor, so the event log answers "who loosened this rule, and when"."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from core.roles import VERIFIED_PUBLISHERS_GROUP
from core.services import event_record
from pipeline.models import Rule, RuleSet
from pipeline.rules import rule_label


def _rule_payload(rule: Rule) -> dict:
    return {"rule_set": rule.rule_set.name, "rule": rule_label(rule), "kind": rule.kind, "enabled": rule.enabled}


@transaction.atomic
def rule_set_save(*, form, actor) -> RuleSet:
    """Save a validated RuleSetForm (new or existing)."""
    created = form.instance.pk is None
    rule_set = form.save(commit=False)
    rule_set.updated_at = timezone.now()
    rule_set.save()
    form.save_m2m()
    event_record(
        type="rules.rule_set_created" if created else "rules.rule_set_changed", subject=rule_set, actor=actor,
        payload={"name": rule_set.name, "active": rule_set.is_active, "default": rule_set.is_default,
                 "profiles": sorted(rule_set.profiles.values_list("slug", flat=True)),
                 "publishers": sorted(rule_set.publishers.values_list("username", flat=True))},
    )
    return rule_set


@transaction.atomic
def rule_save(*, form, rule_set: RuleSet, actor) -> Rule:
    created = form.instance.pk is None
    rule = form.save(commit=False)
    rule.rule_set = rule_set
    rule.save()
    RuleSet.objects.filter(pk=rule_set.pk).update(updated_at=timezone.now())
    event_record(type="rules.rule_added" if created else "rules.rule_changed", subject=rule, actor=actor,
                 payload=_rule_payload(rule))
    return rule


@transaction.atomic
def rule_delete(*, rule: Rule, actor) -> None:
    payload = _rule_payload(rule)
    event_record(type="rules.rule_deleted", subject=rule, actor=actor, payload=payload)
    RuleSet.objects.filter(pk=rule.rule_set_id).update(updated_at=timezone.now())
    rule.delete()


@transaction.atomic
def publisher_verification_set(*, publisher, verified: bool, actor) -> None:
    group, _ = Group.objects.get_or_create(name=VERIFIED_PUBLISHERS_GROUP)
    if verified:
        publisher.groups.add(group)
    else:
        publisher.groups.remove(group)
    event_record(
        type="publisher.verified" if verified else "publisher.unverified", subject=publisher, actor=actor,
        owner=publisher, payload={"publisher": publisher.get_username()},
    )
