"""What operators do from the console. Every action on a job goes through pipeline.services
(which records the event with the actor); what is the console's own is here: applying one
action to a selection, requeueing from RQ's failed-job registry, sampling queue depths."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import django_rq
from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job

from console.models import QueueSample
from console.selectors import queues_now
from core.services import event_record
from pipeline import selectors as pipeline_selectors
from pipeline.models import EncodeJob, JobState, Rendition, Unit
from pipeline.services import actions as job_actions
from pipeline.services.common import JobActionRefused
from pipeline.services.jobs import job_cancel

logger = logging.getLogger(__name__)

QUEUE_SAMPLE_RETENTION = timedelta(days=7)


class JobAction(models.TextChoices):
    RETRY = "retry", "Retry failed units"
    RESTART = "restart", "Restart from the failed step"
    CANCEL = "cancel", "Cancel"
    PRIORITY = "priority", "Raise priority"


class ActionRefused(ValueError):
    """An operator's request that cannot be carried out; the message says why."""


def _retry(job_id: int, actor) -> str:
    units = job_actions.job_retry_failed_units(job_id=job_id, actor=actor)
    return f"Job {job_id}: {len(units)} failed unit{'s' if len(units) != 1 else ''} queued again."


def _restart(job_id: int, actor) -> str:
    step = job_actions.job_restart(job_id=job_id, actor=actor)
    return f"Job {job_id} restarted from its {step} step{pipeline_selectors.job_restart_note(job_id=job_id)}."


def _cancel(job_id: int, actor) -> str:
    before = EncodeJob.objects.values_list("state", flat=True).get(pk=job_id)
    job = job_cancel(job_id=job_id, actor=actor)
    if job.state != JobState.CANCELLED or before == JobState.CANCELLED:
        raise JobActionRefused(
            f"Job {job_id} is {job.get_state_display().lower()} already: there is nothing to cancel."
        )
    return f"Job {job_id} cancelled; its running encodes are being stopped."


def _priority(job_id: int, actor) -> str:
    job = job_actions.job_priority_raise(job_id=job_id, actor=actor)
    return f"Job {job_id} now has priority {job.priority}; its waiting work moved to the front of the queue."


_ACTIONS = {JobAction.RETRY: _retry, JobAction.RESTART: _restart, JobAction.CANCEL: _cancel, JobAction.PRIORITY: _priority}


def job_action_apply(*, job_id: int, action: JobAction | str, actor) -> str:
    """Carry out one action on one job; returns what happened, in words.

    Raises ActionRefused when the action does not apply to the job (or the job is gone).
    """
    try:
        return _ACTIONS[JobAction(action)](job_id, actor)
    except EncodeJob.DoesNotExist as exc:
        raise ActionRefused(f"Job {job_id} does not exist.") from exc
    except JobActionRefused as exc:
        raise ActionRefused(str(exc)) from exc


@dataclass
class BulkResult:
    action: JobAction
    done: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        n = len(self.done)
        text = f"{self.action.label}: done for {n} job{'s' if n != 1 else ''}"
        return f"{text}; {len(self.refused)} refused" if self.refused else text


def jobs_bulk_apply(*, job_ids: list[int], action: JobAction | str, actor) -> BulkResult:
    """The same action on each selected job, each in its own transaction: one refusal does not
    undo the others. Every job's action is recorded in the event log by the pipeline."""
    result = BulkResult(action=JobAction(action))
    for job_id in job_ids:
        try:
            job_action_apply(job_id=job_id, action=action, actor=actor)
        except ActionRefused as exc:
            result.refused.append((job_id, str(exc)))
        else:
            result.done.append(job_id)
    return result


# --- RQ's failed-job registry -----------------------------------------------------------------


def _encode_job_of(rq_job: Job) -> int | None:
    """The pipeline job an RQ job worked for, if it is one of the pipeline's entry points."""
    func = rq_job.func_name or ""
    if not func.startswith("pipeline.jobs.") or not rq_job.args:
        return None
    arg = rq_job.args[0]
    name = func.rsplit(".", 1)[1]
    if name in ("ingest", "package_job", "publish_job"):
        return int(arg)
    if name == "encode_unit":
        return Unit.objects.filter(pk=arg).values_list("job_id", flat=True).first()
    if name == "assemble_rendition":
        return Rendition.objects.filter(pk=arg).values_list("job_id", flat=True).first()
    return None


def failed_job_requeue(*, queue_name: str, rq_id: str, actor) -> str:
    """Run a failed RQ job again; returns what happened, in words.

    A pipeline step that failed for good also failed its encode job, and the pipeline's steps
    only act on jobs still in progress: running the RQ job again would do nothing. So such an
    entry restarts its encode job from the failed step (through the pipeline) instead, and
    leaves the registry. Anything else is requeued by RQ as it is.
    """
    if queue_name not in settings.RQ_QUEUE_NAMES:
        raise ActionRefused(f"There is no queue named {queue_name!r}.")
    queue = django_rq.get_queue(queue_name)
    registry = queue.failed_job_registry
    try:
        rq_job = Job.fetch(rq_id, connection=queue.connection)
    except NoSuchJobError as exc:
        registry.remove(rq_id)
        raise ActionRefused(f"RQ job {rq_id} no longer exists (it expired); it was taken off the list.") from exc
    if registry.connection.zscore(registry.key, rq_id) is None:
        raise ActionRefused(f"RQ job {rq_id} is not in the failed registry of {queue_name} any more.")
    encode_job_id = _encode_job_of(rq_job)
    payload = {"queue": queue_name, "func": rq_job.func_name}
    state = EncodeJob.objects.filter(pk=encode_job_id).values_list("state", flat=True).first() if encode_job_id else None
    if state in (JobState.FAILED, JobState.CANCELLED):
        step = job_actions.job_restart(job_id=encode_job_id, actor=actor)
        registry.remove(rq_id)
        with transaction.atomic():
            event_record(type="rq.job_requeued", subject=("rq.job", rq_id), actor=actor,
                         payload={**payload, "job": encode_job_id, "restarted_from": step})
        return f"Job {encode_job_id} restarted from its {step} step (the failed RQ job {rq_id} was one of its steps)."
    registry.requeue(rq_id)
    with transaction.atomic():
        event_record(type="rq.job_requeued", subject=("rq.job", rq_id), actor=actor, payload=payload)
    return f"RQ job {rq_id} is back on the {queue_name} queue."


# --- Samples for the charts ---------------------------------------------------------------


def queue_samples_record(*, now: datetime | None = None) -> int:
    """Store every queue's depth now, and forget samples past the retention; returns rows written."""
    now = now or timezone.now()
    rows = [
        QueueSample(at=now, queue=q["name"], queued=q["queued"], started=q["started"], failed=q["failed"])
        for q in queues_now()
    ]
    with transaction.atomic():
        QueueSample.objects.bulk_create(rows)
        QueueSample.objects.filter(at__lt=now - QUEUE_SAMPLE_RETENTION).delete()
    return len(rows)
