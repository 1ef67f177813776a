"""The inventory: EC2 instances read through boto3, and our workers as they register."""

from __future__ import annotations

import hashlib
import json
import logging

import django_rq
from django.db import transaction
from django.utils import timezone
from rq import Worker

from core.services import event_record
from security import aws
from security.models import Instance, InstanceState, ResourceKind

logger = logging.getLogger(__name__)

_WORKER_VOLATILE = ("Pid", "StartedAt")


def config_digest(*, kind: str, config: dict) -> str:
    volatile = aws.VOLATILE_FIELDS if kind == ResourceKind.EC2 else _WORKER_VOLATILE
    stable = {k: v for k, v in config.items() if k not in volatile}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()


def _tag(config: dict, name: str) -> str:
    return next((t.get("Value", "") for t in config.get("Tags") or [] if t.get("Key") == name), "")


@transaction.atomic
def instance_upsert(
    *,
    kind: str,
    external_id: str,
    config: dict,
    state: str,
    region: str = "",
    name: str = "",
    launched_by: str | None = None,
    launch_event_id: str | None = None,
) -> Instance:
    now = timezone.now()
    values = {
        "config": config,
        "config_digest": config_digest(kind=kind, config=config),
        "state": state,
        "region": region,
        "name": name,
    }
    if launched_by is not None:
        values["launched_by"] = launched_by
    if launch_event_id is not None:
        values["launch_event_id"] = launch_event_id
    instance, created = Instance.objects.select_for_update().get_or_create(
        kind=kind, external_id=external_id, defaults={**values, "first_seen_at": now, "last_seen_at": now}
    )
    if created:
        event_record(
            type="security.instance_discovered", subject=instance, payload={"kind": kind, "region": region}
        )
        return instance
    changed = [field for field, value in values.items() if getattr(instance, field) != value]
    for field in changed:
        setattr(instance, field, values[field])
    instance.last_seen_at = now
    instance.save(update_fields=[*changed, "last_seen_at"])
    return instance


def ec2_instances_refresh(*, region: str, instance_ids: list[str] | None = None) -> list[Instance]:
    """Read instances from EC2 (all of the region's, or the ones named) into the inventory."""
    found = []
    for doc in aws.instances_describe(region=region, instance_ids=instance_ids):
        found.append(
            instance_upsert(
                kind=ResourceKind.EC2,
                external_id=doc["InstanceId"],
                config=doc,
                state=doc.get("State", {}).get("Name", InstanceState.RUNNING),
                region=region,
                name=_tag(doc, "Name"),
            )
        )
    return found


def ec2_inventory_sweep(*, region: str) -> list[Instance]:
    """Refresh a whole region; instances EC2 no longer lists are gone (terminated)."""
    from security.services.violations import violations_close_for_instance

    seen = ec2_instances_refresh(region=region)
    gone = (
        Instance.objects.filter(kind=ResourceKind.EC2, region=region)
        .exclude(state=InstanceState.TERMINATED)
        .exclude(pk__in=[i.pk for i in seen])
    )
    for instance in gone:
        instance.state = InstanceState.TERMINATED
        instance.save(update_fields=["state"])
        violations_close_for_instance(instance=instance, reason="the instance no longer exists")
    return seen


def worker_register(*, document: dict) -> Instance:
    """A worker's registration at start (the worker then evaluates it at once, see worker.py)."""
    with transaction.atomic():
        instance = instance_upsert(
            kind=ResourceKind.WORKER,
            external_id=document["WorkerName"],
            config=document,
            state=InstanceState.RUNNING,
            name=f"{document.get('Hostname', '')}:{document.get('Pid', '')}",
        )
        event_record(
            type="security.worker_registered",
            subject=instance,
            actor_label=f"worker:{document.get('Hostname', '')}:{document.get('Pid', '')}",
            payload={"queues": document.get("Queues", []), "version": document.get("Version")},
        )
    return instance


def worker_deregister(*, worker_name: str, reason: str = "the worker stopped") -> None:
    from security.services.violations import violations_close_for_instance

    instance = Instance.objects.filter(kind=ResourceKind.WORKER, external_id=worker_name).first()
    if instance is None or instance.state == InstanceState.STOPPED:
        return
    instance.state = InstanceState.STOPPED
    instance.save(update_fields=["state"])
    violations_close_for_instance(instance=instance, reason=reason)


def workers_reconcile() -> list[Instance]:
    """Workers registered as running that Redis no longer knows died without saying so."""
    live = {w.name for w in Worker.all(connection=django_rq.get_connection("security"))}
    running = list(Instance.objects.filter(kind=ResourceKind.WORKER, state=InstanceState.RUNNING))
    for instance in running:
        if instance.external_id not in live:
            worker_deregister(worker_name=instance.external_id, reason="the worker is gone from Redis")
    return [i for i in running if i.external_id in live]
