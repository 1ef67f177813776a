"""Operator actions (the operations console). An operator acts on a job that the pipeline gave
up on, or that must jump the queue. Each function locks the job, decides from the rows (never
from what a page showed), records who acted, and enqueues on commit. Nothing valid is redone:
DONE units and READY renditions stay.
"""

from django.db import transaction
from django.db.models import Count

from pipeline import progress, queues
from pipeline.models import AssetState, EncodeJob, JobState, Rendition, RenditionState, Unit, UnitState
from pipeline.quality import services as quality_services
from pipeline.services.common import JobActionRefused, asset_state_set, job_event, job_state_message
from pipeline.services.publishing import job_rules_check
from pipeline.services.replan import job_replan, stored_outputs_check
from pipeline.services.units import failed_unit_attempts_forget, units_enqueue


def _job_resume(job: EncodeJob, *, actor, event_type: str, first_unit_ids: list[int] | None = None, **payload) -> str:
    """Put a stopped job back to work from its first step whose output is missing or invalid.

    Returns that step: "ingest" (never planned), "encode" (units not done are re-queued, the
    ones in `first_unit_ids` first), "assemble" (every unit done, a rendition not joined) or
    "package" (every rendition ready). A unit still RUNNING is left to its worker; the
    reconciler re-queues it if that worker is gone.
    """
    job_id = job.pk
    # The flag a cancel left would stop every re-run unit at its first progress report.
    transaction.on_commit(lambda: progress.cancel_flag_clear(job_id))
    job.failure_reason = ""
    job.finished_at = None
    requeue: list[int] = []
    if not Unit.objects.filter(job=job).exists():
        step = "ingest"
        job.state = JobState.QUEUED
        queues.enqueue_on_commit(queues.Entry.INGEST, job_id, rq_id=f"ingest-{job_id}", at_front=job.priority > 0)
    else:
        requeue = list(
            Unit.objects.filter(job=job)
            .exclude(state__in=[UnitState.DONE, UnitState.RUNNING])
            .order_by("-cost", "pk")
            .values_list("pk", flat=True)
        )
        waiting = set(requeue)
        first = [uid for uid in (first_unit_ids or []) if uid in waiting]
        requeue = first + [uid for uid in requeue if uid not in set(first)]
        Unit.objects.filter(pk__in=requeue).update(state=UnitState.QUEUED, worker="")
        pending = False
        done_counts = dict(
            Unit.objects.filter(job=job, state=UnitState.DONE).values_list("rendition_id").annotate(n=Count("id"))
        )
        for rendition in Rendition.objects.select_for_update().filter(job=job).exclude(state=RenditionState.READY):
            pending = True
            # The counter is recomputed from the rows: it decides the fan-in below.
            rendition.units_done = done_counts.get(rendition.pk, 0)
            rendition.failure_reason = ""
            if rendition.units_done >= rendition.units_total:
                rendition.state = RenditionState.ASSEMBLING
                queues.enqueue_on_commit(queues.Entry.ASSEMBLE_RENDITION, rendition.pk, rq_id=f"assemble-{rendition.pk}")
            else:
                rendition.state = RenditionState.ENCODING
            rendition.save(update_fields=["units_done", "failure_reason", "state"])
        if pending:
            job.state = JobState.ENCODING
            step = "encode" if requeue else "assemble"
        else:
            job.state = JobState.PACKAGING
            step = "package"
            queues.enqueue_on_commit(queues.Entry.PACKAGE_JOB, job_id, rq_id=f"package-{job_id}")
    job.save(update_fields=["state", "failure_reason", "finished_at"])
    if job.asset.state in (AssetState.FAILED, AssetState.CANCELLED, AssetState.HELD, AssetState.REJECTED):
        asset_state_set(job.asset, AssetState.PROCESSING, job=job.pk)
    job_event(job, event_type, actor=actor, step=step, units=len(requeue), **payload)
    job_state_message(job)
    if requeue:
        at_front = job.priority > 0
        transaction.on_commit(lambda: failed_unit_attempts_forget(requeue))
        transaction.on_commit(lambda: units_enqueue(unit_ids=requeue, at_front=at_front))
    return step


RESTARTABLE_STATES = (JobState.FAILED, JobState.CANCELLED, JobState.HELD, JobState.REJECTED)


def _restartable_or_refuse(job: EncodeJob) -> None:
    if job.state not in RESTARTABLE_STATES:
        raise JobActionRefused(
            f"Job {job.pk} is {job.get_state_display().lower()}: only failed, cancelled, held or rejected jobs can be restarted."
        )


def job_restart(*, job_id: int, actor=None) -> str:
    """Restart a failed, cancelled, held or rejected job; returns the step it resumed at.

    Only what is invalid or missing runs again: renditions whose profile rung changed since
    the job was planned, units and renditions whose stored output is gone or wrong, and the
    steps after them. Everything valid is reused. A held job with nothing to redo is checked
    against its rules again (a publisher verified since, a rule edited)."""
    _restartable_or_refuse(EncodeJob.objects.get(pk=job_id))  # before any S3 request
    bad_units, bad_renditions = stored_outputs_check(job_id)
    return _job_restart_locked(job_id=job_id, actor=actor, bad_units=bad_units, bad_renditions=bad_renditions)


@transaction.atomic
def _job_restart_locked(*, job_id: int, actor, bad_units: set[int], bad_renditions: set[int]) -> str:
    job = EncodeJob.objects.select_for_update().select_related("asset__publisher", "profile").get(pk=job_id)
    _restartable_or_refuse(job)
    previous = job.state
    changes = job_replan(job) if Unit.objects.filter(job=job).exists() else {"changed": [], "added": [], "removed": []}
    invalid_units = list(Unit.objects.filter(pk__in=bad_units, state=UnitState.DONE).values_list("pk", flat=True))
    Unit.objects.filter(pk__in=invalid_units).update(state=UnitState.QUEUED, attempts=0, worker="")
    invalid_renditions = list(
        Rendition.objects.filter(pk__in=bad_renditions, state=RenditionState.READY).values_list("name", flat=True)
    )
    Rendition.objects.filter(pk__in=bad_renditions, state=RenditionState.READY).update(state=RenditionState.ASSEMBLING)
    redo = bool(invalid_units or invalid_renditions or any(changes.values()))
    # A measurement that failed for good is taken again; a held job waits for it.
    remeasured = quality_services.failed_remeasure(job)
    if remeasured:
        changes["remeasured"] = remeasured
    if previous in (JobState.HELD, JobState.REJECTED) and not redo:
        job.state = JobState.CHECKING
        job.failure_reason = ""
        job.finished_at = None
        job.save(update_fields=["state", "failure_reason", "finished_at"])
        asset_state_set(job.asset, AssetState.PROCESSING, job=job.pk)
        job_event(
            job, "job.restarted", actor=actor, step="check", previous=previous, units=0, remeasured=remeasured
        )
        job_state_message(job)
        job_rules_check(job, actor=actor)
        return "check"
    return _job_resume(
        job, actor=actor, event_type="job.restarted", previous=previous,
        invalid_units=invalid_units, invalid_renditions=invalid_renditions, **changes,
    )


@transaction.atomic
def job_retry_failed_units(*, job_id: int, actor=None) -> list[int]:
    """Re-run the job's failed units (first in the queue); returns their ids.

    A failed unit fails its job, which drops the units still queued: those go back on the
    queue too (after the failed ones), or the job could never finish.
    """
    job = EncodeJob.objects.select_for_update().select_related("asset").get(pk=job_id)
    failed = list(Unit.objects.filter(job=job, state=UnitState.FAILED).order_by("-cost", "pk").values_list("pk", flat=True))
    if not failed:
        hint = " Restart it from the failed step instead." if job.state in (JobState.FAILED, JobState.CANCELLED) else ""
        raise JobActionRefused(f"Job {job.pk} has no failed units.{hint}")
    if job.state == JobState.FAILED:
        _job_resume(job, actor=actor, event_type="job.units_retried", first_unit_ids=failed, failed_units=failed)
        return failed
    if job.state != JobState.ENCODING:
        raise JobActionRefused(f"Job {job.pk} is {job.get_state_display().lower()}: its units cannot be retried.")
    Unit.objects.filter(pk__in=failed).update(state=UnitState.QUEUED, worker="")
    Rendition.objects.filter(job=job, state=RenditionState.FAILED).update(state=RenditionState.ENCODING, failure_reason="")
    job_event(job, "job.units_retried", actor=actor, step="encode", units=len(failed), failed_units=failed)
    transaction.on_commit(lambda: failed_unit_attempts_forget(failed))
    transaction.on_commit(lambda: units_enqueue(unit_ids=failed, at_front=True))
    return failed


PRIORITY_MAX = 100


@transaction.atomic
def job_priority_raise(*, job_id: int, actor=None) -> EncodeJob:
    """Raise the job's priority by one and move its waiting work to the front of its queue.

    Queued units get fresh RQ jobs at the front of the encode queue (their old RQ jobs are
    removed, and would find themselves stale if a worker had already taken one); a queued
    ingest or package step is moved to the front of its queue. Later enqueues of this job's
    units (re-runs, reconcile) go to the front too, since its priority is above zero.
    """
    job = EncodeJob.objects.select_for_update().select_related("asset").get(pk=job_id)
    if job.is_final or job.state == JobState.HELD:
        raise JobActionRefused(f"Job {job.pk} is {job.get_state_display().lower()}: it has no work waiting.")
    job.priority = min(max(job.priority, 0) + 1, PRIORITY_MAX)
    job.save(update_fields=["priority"])
    units = list(
        Unit.objects.filter(job=job, state=UnitState.QUEUED).order_by("-cost", "pk").values_list("pk", "rq_id")
    )
    steps = {
        JobState.QUEUED: (queues.Entry.INGEST, f"ingest-{job.pk}"),
        JobState.PACKAGING: (queues.Entry.PACKAGE_JOB, f"package-{job.pk}"),
    }
    step = steps.get(job.state)
    job_event(job, "job.priority_raised", actor=actor, priority=job.priority, units=len(units))

    def move_to_front() -> None:
        for _, rq_id in units:
            if rq_id:
                queues.remove(queues.Entry.ENCODE_UNIT, rq_id)
        still_queued = set(Unit.objects.filter(pk__in=[u for u, _ in units], state=UnitState.QUEUED).values_list("pk", flat=True))
        units_enqueue(unit_ids=[u for u, _ in units if u in still_queued], at_front=True)
        if step is not None:
            entry, rq_id = step
            # Only a step still waiting moves; one a worker has started is left to finish.
            if queues.remove(entry, rq_id):
                queues.enqueue(entry, job.pk, rq_id=rq_id, at_front=True)

    transaction.on_commit(move_to_front)
    return job


