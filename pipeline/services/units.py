"""Units, the parallel work of a job: put on the encode queue, started by a worker, finished
or failed. A unit's finish is the fan-in point of its rendition: the last one enqueues the
rendition's assemble step, exactly once, under the rendition's row lock.
"""

import uuid

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.s3 import redact_presigned
from pipeline import progress, queues
from pipeline.models import Chunk, EncodeJob, Rendition, RenditionState, Unit, UnitState
from pipeline.quality import services as quality_services
from pipeline.services.common import job_event, unit_event
from pipeline.services.jobs import job_fail


def units_enqueue(*, unit_ids: list[int], at_front: bool = False) -> None:
    """Put units on the encode queue in the order given (costliest first: the queue is FIFO).

    Each enqueue gets a fresh RQ id, recorded on the unit: a callback or a reconcile about an
    older attempt (a dead worker's) can then tell that it is stale.
    """
    if not unit_ids:
        return
    rq_ids = {uid: f"unit-{uid}-{uuid.uuid4().hex[:8]}" for uid in unit_ids}
    for uid, rq_id in rq_ids.items():
        Unit.objects.filter(pk=uid).update(rq_id=rq_id)
    queues.enqueue_many(queues.Entry.ENCODE_UNIT, [(uid, rq_ids[uid]) for uid in unit_ids], at_front=at_front)


@transaction.atomic
def unit_start(*, unit_id: int, worker: str, rq_id: str = "") -> Unit | None:
    """QUEUED/RUNNING -> RUNNING for this worker; None if the unit must not run: done,
    cancelled, or this RQ job is a stale attempt that a newer one replaced."""
    # of=("self",): PostgreSQL refuses FOR UPDATE on the nullable side of the outer join to chunk.
    unit = Unit.objects.select_for_update(of=("self",)).select_related("job", "rendition", "chunk").get(pk=unit_id)
    if unit.state in (UnitState.DONE, UnitState.CANCELLED, UnitState.FAILED) or unit.job.is_final:
        return None
    if queues.stale_attempt(unit.rq_id, rq_id):
        return None
    unit.state = UnitState.RUNNING
    unit.attempts += 1
    unit.worker = worker
    unit.started_at = timezone.now()
    unit.error = ""
    unit.save(update_fields=["state", "attempts", "worker", "started_at", "error"])
    unit_event(unit, "unit.started", attempt=unit.attempts, worker=worker)
    progress.publish_on_commit(
        unit.job_id,
        {"kind": "unit", "unit": unit.pk, "rendition": unit.rendition.name, "rendition_id": unit.rendition_id,
         "chunk": unit.chunk.index if unit.chunk else None, "state": unit.state, "attempt": unit.attempts},
    )
    return unit


@transaction.atomic
def unit_finish(*, unit_id: int, result: dict) -> Unit:
    """RUNNING -> DONE; the last unit of a rendition moves it to ASSEMBLING exactly once."""
    unit = Unit.objects.select_for_update().get(pk=unit_id)
    # FAILED: its job failed while it ran (job_fail); a retry runs it again, and finds its
    # output already valid.
    if unit.state in (UnitState.DONE, UnitState.CANCELLED, UnitState.FAILED):
        return unit
    for field in ("wall_s", "ffmpeg_s", "cpu_s", "frames", "command", "log_tail"):
        setattr(unit, field, result.get(field))
    unit.log_tail = redact_presigned(unit.log_tail or "")
    unit.command = redact_presigned(unit.command or "")
    unit.state = UnitState.DONE
    unit.finished_at = timezone.now()
    unit.save(update_fields=["state", "finished_at", "wall_s", "ffmpeg_s", "cpu_s", "frames", "command", "log_tail"])
    unit_event(unit, "unit.done", frames=unit.frames, wall_s=unit.wall_s)
    # The rendition row lock is the fan-in point: two units finishing at once are serialized
    # here, and only the one that sees the counter reach the total enqueues the assemble.
    rendition = Rendition.objects.select_for_update().get(pk=unit.rendition_id)
    Rendition.objects.filter(pk=rendition.pk).update(units_done=F("units_done") + 1)
    rendition.refresh_from_db(fields=["units_done"])
    # The chunk's measurement is planned now and queued once its video units are all done, so
    # quality control overlaps the encode (lock order: pipeline/quality/services.py).
    quality_services.chunk_encoded(rendition=rendition, chunk_id=unit.chunk_id)
    progress.publish_on_commit(
        unit.job_id,
        {"kind": "unit", "unit": unit.pk, "rendition": rendition.name, "rendition_id": rendition.pk, "state": unit.state,
         "chunk": None if unit.chunk_id is None else Chunk.objects.values_list("index", flat=True).get(pk=unit.chunk_id),
         "wall_s": unit.wall_s, "frames": unit.frames},
    )
    if rendition.units_done >= rendition.units_total and rendition.state == RenditionState.ENCODING:
        rendition.state = RenditionState.ASSEMBLING
        rendition.save(update_fields=["state"])
        job_event(EncodeJob.objects.select_related("asset__publisher").get(pk=unit.job_id), "rendition.assembling",
                   rendition=rendition.name)
        queues.enqueue_on_commit(queues.Entry.ASSEMBLE_RENDITION, rendition.pk, rq_id=f"assemble-{rendition.pk}")
    return unit


@transaction.atomic
def unit_fail(
    *, unit_id: int, reason: str, log_tail: str = "", permanent: bool, rq_id: str | None = None,
    failure_class: str = "permanent",
) -> Unit:
    """Record a unit's failure. A permanent one (bad input, or a defect: ``failure_class``)
    fails the whole job at once.

    `rq_id` names the attempt that failed; news about an attempt that has since been
    replaced (re-queued by the reconciler) changes nothing.
    """
    unit = Unit.objects.select_for_update().select_related("rendition").get(pk=unit_id)
    if unit.state in (UnitState.DONE, UnitState.CANCELLED):
        return unit
    if queues.stale_attempt(unit.rq_id, rq_id):
        return unit
    unit.state = UnitState.FAILED if permanent else UnitState.QUEUED
    unit.error = reason
    unit.log_tail = log_tail[-4000:]
    unit.finished_at = timezone.now()
    unit.save(update_fields=["state", "error", "log_tail", "finished_at"])
    unit_event(unit, "unit.failed" if permanent else "unit.retrying", reason=reason, attempt=unit.attempts)
    progress.publish_on_commit(
        unit.job_id,
        {"kind": "unit", "unit": unit.pk, "rendition": unit.rendition.name, "rendition_id": unit.rendition_id,
         "state": unit.state, "error": reason},
    )
    if permanent:
        job_fail(job_id=unit.job_id, reason=f"{unit.rendition.name}: {reason}", failure_class=failure_class, detail=log_tail)
    return unit


def failed_unit_attempts_forget(unit_ids: list[int]) -> None:
    """Drop the given units' exhausted RQ attempts from the encode queue's failed registry."""
    if not unit_ids:
        return
    queues.failed_forget(queues.Entry.ENCODE_UNIT, tuple(f"unit-{uid}-" for uid in unit_ids))


