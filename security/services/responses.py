"""Automatic responses and their undo. Each response is recorded with what undoing it needs;
a response that failed is recorded too, with why, and never hides the alert."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import django_rq
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError
from rq.command import send_shutdown_command

from core.services import event_record
from security import aws
from security.models import (
    Instance,
    LoginBlock,
    ResourceKind,
    ResponseAction,
    ResponseKind,
    ResponseState,
    Violation,
)

logger = logging.getLogger(__name__)


class ResponseError(ValueError):
    """The response cannot be undone (or not any more); the message says why."""


def response_as_alert_action(response: ResponseAction) -> dict:
    """The entry core's Alert.actions keeps: what was done, when, and how to undo it."""
    return {
        "action": response.kind,
        "target": f"{response.target_type}:{response.target_id}",
        "at": response.taken_at.isoformat(),
        "state": response.state,
        "detail": response.detail,
        "undo": response.undo_hint,
        "response_id": response.pk,
    }


def response_record(
    *,
    kind: str,
    target_type: str,
    target_id: str,
    detail: str,
    undo: dict | None = None,
    undo_hint: str = "",
    state: str = ResponseState.DONE,
    error: str = "",
    policy: str = "",
    violation: Violation | None = None,
) -> ResponseAction:
    response = ResponseAction.objects.create(
        kind=kind,
        state=state,
        target_type=target_type,
        target_id=target_id,
        detail=detail,
        undo=undo or {},
        undo_hint=undo_hint,
        error=error,
        policy=policy,
        violation=violation,
    )
    event_record(
        type=f"security.response_{state}",
        subject=violation if violation is not None else response,
        actor_label="security",
        payload={
            "response": response.pk,
            "kind": kind,
            "target": f"{target_type}:{target_id}",
            "detail": detail,
            "error": error,
        },
    )
    return response


# --- EC2 -----------------------------------------------------------------------------------------


def _stop(instance: Instance, params: dict) -> tuple[str, dict, str]:
    aws.instance_stop(region=instance.region, instance_id=instance.external_id)
    return f"stopped {instance.external_id}", {"op": "start"}, "Start the instance again."


def _tag(instance: Instance, params: dict) -> tuple[str, dict, str]:
    current = {t.get("Key"): t.get("Value") for t in instance.config.get("Tags") or []}
    tags = params["tags"]
    aws.instance_tags_set(region=instance.region, instance_id=instance.external_id, tags=tags)
    previous = {k: current.get(k) for k in tags}
    shown = ", ".join(f"{k}={v}" for k, v in tags.items())
    return (
        f"tagged {instance.external_id} with {shown}",
        {"op": "tags", "previous": previous},
        f"Restore the tags ({', '.join(tags)}).",
    )


def _quarantine(instance: Instance, params: dict) -> tuple[str, dict, str]:
    vpc_id = instance.config.get("VpcId")
    if not vpc_id:
        raise aws.CloudError("the instance has no VPC, so no security group can isolate it")
    previous = [g["GroupId"] for g in instance.config.get("SecurityGroups") or []]
    isolation = params.get("isolation-group") or aws.isolation_group_ensure(
        region=instance.region, vpc_id=vpc_id
    )
    aws.instance_groups_set(region=instance.region, instance_id=instance.external_id, group_ids=[isolation])
    return (
        f"replaced the security groups of {instance.external_id} ({', '.join(previous) or 'none'}) with {isolation}",
        {"op": "groups", "group_ids": previous},
        f"Put back the security groups {', '.join(previous) or '(none)'}.",
    )


def _terminate(instance: Instance, params: dict) -> tuple[str, dict, str]:
    aws.instance_terminate(region=instance.region, instance_id=instance.external_id)
    return f"terminated {instance.external_id}", {}, "Termination cannot be undone."


def _shutdown_worker(instance: Instance, params: dict) -> tuple[str, dict, str]:
    send_shutdown_command(django_rq.get_connection("security"), instance.external_id)
    host = instance.config.get("Hostname", "?")
    return (
        f"sent the shutdown command to worker {instance.external_id} on {host}",
        {},
        f"Fix the worker's configuration on {host} and start it again: it registers and is checked at start.",
    )


def _custodian(instance: Instance, params: dict) -> tuple[str, dict, str]:
    from security.custodian import custodian_action_run

    action = params["action"]
    custodian_action_run(action=action, region=instance.region, document=instance.config)
    written = ", ".join(f"{k}={v}" for k, v in action.items() if k != "type")
    return (
        f"ran Custodian's {action['type']} on {instance.external_id}" + (f" ({written})" if written else ""),
        {},
        f"Custodian's {action['type']} is not undone automatically: reverse it in EC2 by hand.",
    )


_RUNNERS: dict[str, tuple[str, Callable]] = {
    "custodian": (ResponseKind.CUSTODIAN, _custodian),
    "stop": (ResponseKind.STOP, _stop),
    "tag": (ResponseKind.TAG, _tag),
    "quarantine": (ResponseKind.QUARANTINE, _quarantine),
    "terminate": (ResponseKind.TERMINATE, _terminate),
    "shutdown-worker": (ResponseKind.SHUTDOWN_WORKER, _shutdown_worker),
}


def responses_run(*, policy, instance: Instance, violation: Violation) -> list[ResponseAction]:
    """Run a policy's actions on the instance it fired on; each one is recorded, done or failed."""
    done = []
    target_type = "ec2" if instance.kind == ResourceKind.EC2 else "worker"
    for action in policy.actions:
        if action.type == "alert":
            continue
        kind, run = _RUNNERS[action.type]
        if action.type == "terminate" and not settings.SECURITY_ALLOW_TERMINATE:
            done.append(
                response_record(
                    kind=kind, state=ResponseState.SKIPPED, target_type=target_type, target_id=instance.external_id,
                    detail="terminate is turned off (SECURITY_ALLOW_TERMINATE=false)", policy=policy.name,
                    violation=violation,
                )
            )  # fmt: skip
            continue
        try:
            detail, undo, hint = run(instance, action.params)
        except (aws.CloudError, RedisError) as exc:
            logger.warning("response %s on %s failed: %s", action.type, instance, exc)
            done.append(
                response_record(
                    kind=kind, state=ResponseState.FAILED, target_type=target_type, target_id=instance.external_id,
                    detail=f"{action.type} failed", error=str(exc)[:1000], policy=policy.name, violation=violation,
                )
            )  # fmt: skip
            continue
        done.append(
            response_record(
                kind=kind, target_type=target_type, target_id=instance.external_id, detail=detail, undo=undo,
                undo_hint=hint, policy=policy.name, violation=violation,
            )
        )  # fmt: skip
    return done


# --- undo ----------------------------------------------------------------------------------------


def _undo_instance(response: ResponseAction) -> None:
    instance = Instance.objects.get(kind=ResourceKind.EC2, external_id=response.target_id)
    op = response.undo["op"]
    if op == "start":
        aws.instance_start(region=instance.region, instance_id=instance.external_id)
    elif op == "groups":
        aws.instance_groups_set(
            region=instance.region, instance_id=instance.external_id, group_ids=response.undo["group_ids"]
        )
    elif op == "tags":
        previous = response.undo["previous"]
        restore = {k: v for k, v in previous.items() if v is not None}
        remove = [k for k, v in previous.items() if v is None]
        if restore:
            aws.instance_tags_set(region=instance.region, instance_id=instance.external_id, tags=restore)
        if remove:
            aws.instance_tags_delete(region=instance.region, instance_id=instance.external_id, keys=remove)
    else:
        raise ResponseError(f"unknown undo operation {op!r}")


def _undo_login_block(response: ResponseAction, actor) -> None:
    LoginBlock.objects.filter(pk=response.undo["block_id"], lifted_at__isnull=True).update(
        lifted_at=timezone.now(), lifted_by=actor
    )


def _undo_suspension(response: ResponseAction) -> None:
    user = get_user_model().objects.get(pk=response.undo["user_id"])
    user.is_active = True
    user.save(update_fields=["is_active"])


def response_undo(
    *, response: ResponseAction, actor, justification: str = "", expires_at: datetime | None = None
) -> ResponseAction:
    """Undo an automatic response (start the instance, restore its groups or tags, unlock the
    account, reactivate the user). The remote call comes first; the record follows it.

    Undoing a response to a violation also acknowledges the violation (justification and
    expiry required), or the next evaluation would simply respond again."""
    from security.services.violations import (
        ViolationError,
        acknowledgement_check,
        violation_accept_after_undo,
    )

    response = ResponseAction.objects.select_related("violation").get(pk=response.pk)
    if response.violation_id:
        try:
            justification = acknowledgement_check(justification=justification, expires_at=expires_at)
        except ViolationError as exc:
            raise ResponseError(f"Undoing accepts the violation for a while: {exc}") from exc
    if not response.undoable:
        raise ResponseError(
            "This response cannot be undone."
            if response.state == ResponseState.DONE
            else f"This response is {response.state}."
        )
    try:
        if response.kind in (ResponseKind.STOP, ResponseKind.QUARANTINE, ResponseKind.TAG):
            _undo_instance(response)
        elif response.kind in (ResponseKind.LOCK_ACCOUNT, ResponseKind.BLOCK_ADDRESS):
            _undo_login_block(response, actor)
        elif response.kind == ResponseKind.SUSPEND_USER:
            _undo_suspension(response)
        else:
            raise ResponseError(f"{response.get_kind_display()} cannot be undone.")
    except aws.CloudError as exc:
        raise ResponseError(f"Undo failed: {exc}") from exc
    with transaction.atomic():
        updated = ResponseAction.objects.filter(pk=response.pk, state=ResponseState.DONE).update(
            state=ResponseState.UNDONE, undone_at=timezone.now(), undone_by=actor
        )
        if updated:
            event_record(
                type="security.response_undone",
                subject=response.violation if response.violation_id else response,
                actor=actor,
                payload={
                    "response": response.pk,
                    "kind": response.kind,
                    "target": f"{response.target_type}:{response.target_id}",
                },
            )
    if response.violation_id and updated:
        if response.target_type == "ec2":
            from security.services.inventory import ec2_instances_refresh

            instance = response.violation.instance
            ec2_instances_refresh(region=instance.region, instance_ids=[instance.external_id])
        violation_accept_after_undo(
            violation=response.violation, reviewer=actor, justification=justification,
            expires_at=expires_at, undone=response.kind,
        )  # fmt: skip
    response.refresh_from_db()
    return response
