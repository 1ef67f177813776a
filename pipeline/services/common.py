"""What every pipeline service shares: the events a state change records, the live message
that tells open pages, the lineage record of what a step wrote, and the refusal an operator
sees.
"""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.s3 import redact_presigned
from core.services import event_record
from pipeline import progress
from pipeline.models import Artifact, Asset, EncodeJob, Unit


class JobActionRefused(ValueError):
    """The action does not apply to the job in its current state; the message says why."""


def job_event(job: EncodeJob, type_: str, *, actor=None, actor_label: str = "system", **payload) -> None:
    event_record(
        type=type_,
        subject=job,
        actor=actor,
        actor_label=actor_label,
        owner=job.asset.publisher,
        payload={"asset": job.asset_id, **payload},
    )


def unit_event(unit: Unit, type_: str, **payload) -> None:
    """unit.* events: subject the unit, owner the asset's publisher (one indexed lookup)."""
    owner = Asset.objects.select_related("publisher").get(jobs=unit.job_id).publisher
    event_record(
        type=type_, subject=unit, owner=owner,
        payload={"job": unit.job_id, "rendition": unit.rendition.name,
                 "chunk": unit.chunk.index if unit.chunk_id else None, **payload},
    )


def asset_event(asset: Asset, type_: str, **payload) -> None:
    event_record(type=type_, subject=asset, owner=asset.publisher, payload={"state": asset.state, **payload})


def asset_state_set(asset: Asset, state: str, **payload) -> None:
    if asset.state == state:
        return
    asset.state = state
    asset.save(update_fields=["state"])
    asset_event(asset, f"asset.{state}", **payload)


def job_state_message(job: EncodeJob) -> None:
    progress.publish_on_commit(
        job.pk,
        {"kind": "job", "state": job.state, "reason": job.failure_reason},
        also_jobs_group=True,
    )


def artifact_record(
    *, job_id: int, kind: str, key: str, size: int | None, step: str, inputs: dict,
    parent_keys: list[str] | None = None, bucket: str | None = None,
) -> Artifact:
    """Record (or refresh, on a re-run that rewrote the same key) what a step wrote and from what."""
    bucket = bucket or settings.S3_BUCKET_MEDIA
    if isinstance(inputs.get("command"), str):
        inputs = {**inputs, "command": redact_presigned(inputs["command"])}
    with transaction.atomic():
        artifact, _ = Artifact.objects.update_or_create(
            bucket=bucket, key=key,
            defaults={"job_id": job_id, "kind": kind, "size": size, "step": step, "inputs": inputs,
                      "created_at": timezone.now()},
        )
        if parent_keys:
            artifact.parents.set(Artifact.objects.filter(bucket=bucket, key__in=parent_keys))
    return artifact


