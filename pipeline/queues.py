"""The pipeline's queues, in one leaf module: their names, each RQ entry's enqueue options, the
enqueue calls, and "is this RQ job still alive".

Jobs are enqueued by their import path (``"pipeline.jobs.encode_unit"``), never by importing
the job module: services sit below the jobs that call them, and RQ resolves the path in the
worker. Failure callbacks are named the same way.

Each queue runs one kind of step; a worker lists them in this order, so a job that is close
to done (publish, package, assemble) is taken before the next unit is encoded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import django_rq
from django.db import transaction
from rq import Callback, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job

INGEST = "ingest"
PUBLISH = "publish"
PACKAGE = "package"
ASSEMBLE = "assemble"
ENCODE = "encode"
QUALITY = "quality"
# What a media worker listens on, most urgent first.
MEDIA = (INGEST, PUBLISH, PACKAGE, ASSEMBLE, QUALITY, ENCODE)



class Entry:
    """The RQ entry points, by import path."""

    INGEST = "pipeline.jobs.ingest"
    ENCODE_UNIT = "pipeline.jobs.encode_unit"
    ASSEMBLE_RENDITION = "pipeline.jobs.assemble_rendition"
    PACKAGE_JOB = "pipeline.jobs.package_job"
    PUBLISH_JOB = "pipeline.jobs.publish_job"
    MEASURE_QUALITY = "pipeline.quality.jobs.measure_quality"
    # Delivery's MP4 downloads: a stream copy of a published rendition, a media lane's work.
    DOWNLOAD_PREPARE = "delivery.jobs.download_prepare"
    # The API's uploads from a URL: fetched into the ingest bucket on the ingest lane.
    URL_IMPORT = "api.jobs.url_import"


_BACKOFF = [5, 30, 120]
_HOUR = 3600


def _options(on_failure: str, timeout: int, **extra) -> dict:
    return {"retry": Retry(max=3, interval=_BACKOFF), "on_failure": Callback(on_failure), "job_timeout": timeout, **extra}


# Each RQ entry point: the queue it runs on and how it is enqueued (retries, the callback that
# records a final failure, its time limit).
ENTRIES: dict[str, tuple[str, dict]] = {
    Entry.INGEST: (INGEST, _options("pipeline.jobs.job_failed", 900)),
    Entry.ENCODE_UNIT: (ENCODE, _options("pipeline.jobs.unit_failed", 6 * _HOUR, result_ttl=_HOUR)),
    Entry.ASSEMBLE_RENDITION: (ASSEMBLE, _options("pipeline.jobs.assemble_failed", 6 * _HOUR)),
    Entry.PACKAGE_JOB: (PACKAGE, _options("pipeline.jobs.job_failed", 6 * _HOUR)),
    Entry.PUBLISH_JOB: (PUBLISH, _options("pipeline.jobs.job_failed", _HOUR)),
    Entry.DOWNLOAD_PREPARE: (PACKAGE, _options("delivery.jobs.download_failed", _HOUR)),
    Entry.URL_IMPORT: (INGEST, {"on_failure": Callback("api.jobs.url_import_failed"), "job_timeout": 6 * _HOUR}),
    Entry.MEASURE_QUALITY: (
        QUALITY, _options("pipeline.quality.jobs.measure_failed", 2 * _HOUR, result_ttl=_HOUR),
    ),
}  # fmt: skip


def queue_of(entry: str) -> str:
    return ENTRIES[entry][0]


def enqueue(entry: str, arg: int, *, rq_id: str, at_front: bool = False) -> Job:
    """Enqueue one call of ``entry`` (a key of ENTRIES) on its queue, under ``rq_id``. A failed
    earlier run under the same id leaves the failed registry first, so that it only lists what
    is still failed."""
    queue_name, options = ENTRIES[entry]
    queue = django_rq.get_queue(queue_name)
    queue.failed_job_registry.remove(rq_id)
    return queue.enqueue(entry, arg, job_id=rq_id, at_front=at_front, **options)


def enqueue_on_commit(entry: str, arg: int, *, rq_id: str, at_front: bool = False) -> None:
    """The same, once the current transaction commits (the rows it reads are then visible)."""
    transaction.on_commit(lambda: enqueue(entry, arg, rq_id=rq_id, at_front=at_front))


def enqueue_many(entry: str, calls: list[tuple[int, str]], *, at_front: bool = False) -> None:
    """Enqueue (arg, rq_id) calls of one entry in one round trip, in the order given (at the
    front: so that the first given runs first)."""
    if not calls:
        return
    queue_name, options = ENTRIES[entry]
    options = dict(options)
    options["timeout"] = options.pop("job_timeout")  # prepare_data's name for it
    queue = django_rq.get_queue(queue_name)
    queue.enqueue_many(
        [
            queue.prepare_data(entry, args=(arg,), job_id=rq_id, at_front=at_front, **options)
            for arg, rq_id in (reversed(calls) if at_front else calls)
        ]
    )


def remove(entry: str, rq_id: str) -> bool:
    """Take a waiting call off its queue; False when it was not waiting (started, or gone)."""
    return bool(django_rq.get_queue(queue_of(entry)).remove(rq_id))


def failed_forget(entry: str, rq_id_prefixes: tuple[str, ...]) -> None:
    """Drop exhausted attempts whose RQ id starts with one of the prefixes from the entry's
    failed registry (a re-run starts with a clean slate)."""
    registry = django_rq.get_queue(queue_of(entry)).failed_job_registry
    for rq_id in registry.get_job_ids(cleanup=False):
        if rq_id.startswith(rq_id_prefixes):
            registry.remove(rq_id)


def stale_attempt(recorded: str, reported: str | None) -> bool:
    """News from an RQ attempt (``reported``) about a work item whose current attempt is
    ``recorded``: stale when a newer enqueue (a re-queue by the reconciler, a retry by an
    operator) replaced it, so it must change nothing. No id on either side: not stale."""
    return bool(reported and recorded and reported != recorded)


WAITING = ("queued", "deferred", "scheduled")


def rq_job_alive(
    conn, rq_id: str, *, started_alive: Callable[[Job], bool] | None = None
) -> bool:
    """Whether the RQ job ``rq_id`` will still run or is running: waiting in a queue (or
    scheduled for a retry), or started. A started job counts as alive unless
    ``started_alive`` says otherwise (the caller's own liveness check, such as a heartbeat)."""
    if not rq_id:
        return False
    try:
        job = Job.fetch(rq_id, connection=conn)
        status = job.get_status(refresh=False)
    except NoSuchJobError:
        return False
    if status == "started":
        return started_alive(job) if started_alive is not None else True
    return status in WAITING


def heartbeat_fresh(job: Job, *, within: timedelta) -> bool:
    """RQ's own heartbeat (or start) of a started job is more recent than ``within``."""
    beat = job.last_heartbeat or job.started_at
    return beat is not None and datetime.now(UTC) - beat.replace(tzinfo=UTC) < within
