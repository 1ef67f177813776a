"""Reads for the console's pages and sockets, each shaped for its page: a bounded number of
queries whatever the number of jobs (joins and annotations, one aggregate for the counts,
one query for a whole page's unit counts), and keyset pages instead of OFFSET."""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import django_rq
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection, models
from django.db.models import Count, Exists, F, Func, Max, OuterRef, Q, QuerySet
from django.db.models.functions import Substr, TruncHour, TruncMinute
from django.shortcuts import get_object_or_404
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from redis import Redis
from rq import Queue, worker_registration
from rq.job import Job
from rq.utils import utcparse

from console.models import QueueSample
from console.pagination import Page, keyset_page
from core.models import Event
from pipeline.models import (
    JOB_FINAL_STATES,
    Asset,
    EncodeJob,
    JobState,
    Profile,
    Rendition,
    RenditionKind,
    Unit,
    UnitState,
)
from pipeline.selectors import job_seqs


class JobSort(models.TextChoices):
    NEWEST = "newest", "Newest first"
    OLDEST = "oldest", "Oldest first"
    PRIORITY = "priority", "Highest priority first"


ACTIVE = "active"  # a pseudo-state for the filter: every job not finished


@dataclass(frozen=True)
class JobFilters:
    q: str = ""
    state: str = ""
    publisher: str = ""
    profile: str = ""
    created_from: date | None = None
    created_to: date | None = None
    sort: str = JobSort.NEWEST


@dataclass(frozen=True)
class EventFilters:
    type: str = ""
    subject_type: str = ""
    subject_id: str = ""
    actor: str = ""
    created_from: date | None = None
    created_to: date | None = None


JOB_ORDERINGS = {
    JobSort.NEWEST: ("-created_at", "-id"),
    JobSort.OLDEST: ("created_at", "id"),
    JobSort.PRIORITY: ("-priority", "-created_at", "-id"),
}
EVENT_TYPES_CACHE_KEY = "console:event-types"


@functools.lru_cache(maxsize=4)
def _redis_for(url: str) -> Redis:
    # Keyed by the URL so that other settings (tests) get a client of their own.
    return django_rq.get_connection("default")


def redis_client() -> Redis:
    """One Redis client (and its connection pool) per process for the console's reads.
    django_rq.get_connection() builds a new client, so a new TCP connection and handshake,
    on every call: a measurable part of a page on a busy machine."""
    return _redis_for(settings.RQ_QUEUES["default"]["URL"])


def _day_start(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# --- Jobs -------------------------------------------------------------------------------------


def _jobs_filtered(f: JobFilters, *, with_state: bool = True) -> QuerySet[EncodeJob]:
    qs = EncodeJob.objects.all()
    if with_state and f.state == ACTIVE:
        qs = qs.exclude(state__in=[*JOB_FINAL_STATES, JobState.HELD])
    elif with_state and f.state:
        qs = qs.filter(state=f.state)
    if f.publisher:
        qs = qs.filter(asset__publisher__username=f.publisher)
    if f.profile:
        qs = qs.filter(profile__slug=f.profile)
    if f.created_from:
        qs = qs.filter(created_at__gte=_day_start(f.created_from))
    if f.created_to:
        qs = qs.filter(created_at__lt=_day_start(f.created_to) + timedelta(days=1))
    if f.q:
        # Titles are matched in the asset table alone and a publisher's name is looked up
        # first: an OR across joined tables would join every job to its asset and user.
        text = Q(asset__in=Asset.objects.filter(title__icontains=f.q).values("pk"))
        publisher_id = get_user_model().objects.filter(username__iexact=f.q).values_list("pk", flat=True).first()
        if publisher_id is not None:
            text |= Q(asset__publisher_id=publisher_id)
        number = f.q.lstrip("#")
        if number.isdigit():
            text |= Q(pk=int(number)) | Q(asset_id=int(number))
        qs = qs.filter(text)
    return qs


def job_state_counts(f: JobFilters) -> dict:
    """Jobs per state under every filter but the state one (one aggregate query), with the
    total and the number still active."""
    rows = _jobs_filtered(f, with_state=False).order_by().values_list("state").annotate(n=Count("id"))
    counts = {state: 0 for state in JobState.values}
    counts.update(dict(rows))
    active = sum(n for state, n in counts.items() if state not in JOB_FINAL_STATES and state != JobState.HELD)
    return {"states": [(s, JobState(s).label, counts[s]) for s in JobState.values], "total": sum(counts.values()),
            "active": active}


def _job_rows(jobs: list[EncodeJob]) -> list[EncodeJob]:
    """Attach to each job its unit counts (one query for the whole page) and its progress
    sequence number (one Redis round trip)."""
    ids = [job.pk for job in jobs]
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for job_id, state, n in (
        Unit.objects.filter(job_id__in=ids).order_by().values_list("job_id", "state").annotate(n=Count("id"))
    ):
        counts[job_id][state] = n
    seqs = job_seqs(job_ids=ids, conn=redis_client())
    for job in jobs:
        c = counts.get(job.pk, {})
        job.units_total = sum(c.values())
        job.units_done = c.get(UnitState.DONE, 0)
        job.units_failed = c.get(UnitState.FAILED, 0)
        job.units_running = c.get(UnitState.RUNNING, 0)
        job.percent = int(100 * job.units_done / job.units_total) if job.units_total else 0
        job.seq = seqs.get(job.pk, 0)
    return jobs


def _jobs_for_rows(qs: QuerySet[EncodeJob]) -> QuerySet[EncodeJob]:
    return qs.select_related("asset__publisher", "profile").only(
        "id", "state", "priority", "failure_reason", "created_at", "started_at", "finished_at",
        "asset__id", "asset__title", "asset__duration_s", "asset__publisher__id", "asset__publisher__username",
        "profile__id", "profile__slug", "profile__name",
    )


def jobs_page(f: JobFilters, *, after: str | None, before: str | None, per_page: int) -> Page:
    qs = _jobs_for_rows(_jobs_filtered(f))
    page = keyset_page(qs, ordering=JOB_ORDERINGS[JobSort(f.sort)], per_page=per_page, after=after, before=before)
    _job_rows(page.items)
    return page


def job_rows_matching(f: JobFilters, *, job_ids: list[int]) -> list[EncodeJob]:
    """The jobs among `job_ids` that the filters select, shaped like a page's rows (the
    jobs socket re-renders rows from these)."""
    if not job_ids:
        return []
    jobs = list(_jobs_for_rows(_jobs_filtered(f).filter(pk__in=job_ids)).order_by(*JOB_ORDERINGS[JobSort(f.sort)]))
    return _job_rows(jobs)


def profiles_choices() -> list[tuple[str, str]]:
    return list(Profile.objects.order_by("slug").values_list("slug", "name"))


def publishers_with_assets(*, limit: int = 500) -> list[str]:
    users = get_user_model().objects.filter(Exists(Asset.objects.filter(publisher=OuterRef("pk"))))
    return list(users.order_by("username").values_list("username", flat=True)[:limit])


def jobs_recent_failures(*, limit: int = 8) -> list[EncodeJob]:
    qs = _jobs_for_rows(EncodeJob.objects.filter(state=JobState.FAILED)).order_by("-created_at", "-id")
    return list(qs[:limit])


# --- One job ------------------------------------------------------------------------------------


def job_detail(*, job_id: int) -> EncodeJob:
    return get_object_or_404(EncodeJob.objects.select_related("asset__publisher", "profile"), pk=job_id)


def _speed(unit: dict, chunk_s: float | None, duration_s: float | None) -> tuple[float | None, float | None]:
    """(frames per second, times real time) of a finished encode."""
    ffmpeg_s = unit["ffmpeg_s"]
    if not ffmpeg_s:
        return None, None
    fps = unit["frames"] / ffmpeg_s if unit["frames"] else None
    media_s = chunk_s if chunk_s is not None else duration_s
    return fps, (media_s / ffmpeg_s if media_s else None)


def job_units(*, job: EncodeJob, state: str = "") -> tuple[list[dict], list[dict], list[dict]]:
    """(renditions, chunks, units) of one job for its page, three queries. Each unit dict
    carries its rendition's name, its chunk's index and span, and its encode speed."""
    renditions = list(
        Rendition.objects.filter(job=job).order_by("kind", "-height", "name").values(
            "id", "name", "kind", "width", "height", "state", "units_total", "units_done", "bitrate_kbps",
            "duration_s", "frame_count", "codecs", "failure_reason",
        )
    )
    chunks = list(job.chunks.order_by("index").values("index", "start_s", "end_s", "frame_count"))
    names = {r["id"]: r for r in renditions}
    units_qs = Unit.objects.filter(job=job)
    if state:
        units_qs = units_qs.filter(state=state)
    units = list(
        units_qs.order_by("rendition__kind", "-rendition__height", "rendition__name", "chunk__index").values(
            "id", "rendition_id", "chunk__index", "chunk__start_s", "chunk__end_s", "state", "attempts", "worker",
            "started_at", "finished_at", "wall_s", "ffmpeg_s", "cpu_s", "frames", "command", "log_tail", "error",
            "rq_id",
        )
    )
    for u in units:
        chunk_s = None if u["chunk__index"] is None else u["chunk__end_s"] - u["chunk__start_s"]
        u["fps"], u["realtime"] = _speed(u, chunk_s, job.asset.duration_s)
        u["rendition"] = names[u["rendition_id"]]["name"]
        u["is_audio"] = names[u["rendition_id"]]["kind"] == RenditionKind.AUDIO
    return renditions, chunks, units


def unit_grid(*, renditions: list[dict], chunks: list[dict], units: list[dict]) -> list[dict]:
    """Rows of the unit grid (one per rendition, one cell per chunk; audio is one wide cell)."""
    by_rendition: dict[int, list[dict]] = defaultdict(list)
    for u in units:
        by_rendition[u["rendition_id"]].append(u)
    rows = []
    for r in renditions:
        cells = sorted(by_rendition.get(r["id"], []), key=lambda u: -1 if u["chunk__index"] is None else u["chunk__index"])
        rows.append({"rendition": r, "cells": cells})
    return rows


def job_actions(*, job: EncodeJob, unit_counts: dict[str, int]) -> list[dict]:
    """Which operator actions apply to the job now, and why not when one does not. The page
    offers these; the pipeline's services decide again under lock when one is posted."""
    from console.services import JobAction
    from pipeline.services.actions import RESTARTABLE_STATES

    failed = unit_counts.get(UnitState.FAILED, 0)
    finished = job.state in JOB_FINAL_STATES
    state = job.get_state_display().lower()
    rules = {
        JobAction.RETRY: (bool(failed) and job.state in (JobState.FAILED, JobState.ENCODING),
                          "no unit has failed" if not failed else f"the job is {state}"),
        JobAction.RESTART: (job.state in RESTARTABLE_STATES, "only failed, cancelled, held or rejected jobs restart"),
        JobAction.CANCEL: (not finished, f"the job is {state} already"),
        JobAction.PRIORITY: (not finished and job.state != JobState.HELD, "no work of this job is waiting"),
    }
    return [{"action": a.value, "label": a.label, "enabled": ok, "why": why} for a, (ok, why) in rules.items()]


def job_unit_state_counts(*, job_id: int) -> dict[str, int]:
    return dict(Unit.objects.filter(job_id=job_id).order_by().values_list("state").annotate(n=Count("id")))


def subject_events(*, subject_type: str, subject_id: str | int, limit: int = 30) -> list[Event]:
    return list(
        Event.objects.filter(subject_type=subject_type, subject_id=str(subject_id)).order_by("-id")[:limit]
    )


# --- Workers, queues, throughput ------------------------------------------------------------


def _pipeline_step_job(rq_id: str) -> tuple[str, int] | None:
    """("ingest"|"assemble"|"package"|"publish", id) for the pipeline's deterministic RQ ids."""
    prefix, _, number = rq_id.partition("-")
    if prefix in ("ingest", "assemble", "package", "publish") and number.isdigit():
        return prefix, int(number)
    return None


def _worker_registry(names: list[str]) -> dict[str, dict]:
    """What each worker told security when it registered (versions), if security keeps a
    worker inventory. Read only; absent app or model means RQ's own data is shown."""
    try:
        instance_model = apps.get_model("security", "Instance")
    except LookupError:
        return {}
    rows = instance_model.objects.filter(kind="reelflow.worker", external_id__in=names).values(
        "external_id", "config", "state"
    )
    return {row["external_id"]: row for row in rows}


def workers_overview(*, now: datetime | None = None, conn=None) -> list[dict]:
    """Every RQ worker registered in Redis (any machine): one pipelined read of their hashes,
    then one query for their current units, one for their unit counts, one for their
    registrations."""
    now = now or timezone.now()
    conn = conn or redis_client()
    keys = sorted(worker_registration.get_keys(connection=conn))
    with conn.pipeline() as pipe:
        for key in keys:
            pipe.hgetall(key)
        hashes = pipe.execute()
    workers = []
    for key, raw in zip(keys, hashes, strict=True):
        if not raw:
            continue  # the worker died and its key expired
        data = {k.decode(): v.decode() for k, v in raw.items()}
        beat = utcparse(data["last_heartbeat"]) if data.get("last_heartbeat") else None
        beat = beat.replace(tzinfo=UTC) if beat is not None and beat.tzinfo is None else beat
        workers.append({
            "name": key.split(":", 2)[-1] if isinstance(key, str) else key.decode().split(":", 2)[-1],
            "hostname": data.get("hostname", ""),
            "pid": data.get("pid", ""),
            "queues": [q for q in data.get("queues", "").split(",") if q],
            "state": data.get("state", "?"),
            "current_job": data.get("current_job", ""),
            "heartbeat_age": (now - beat).total_seconds() if beat else None,
            "rq_ok": int(data.get("successful_job_count") or 0),
            "rq_failed": int(data.get("failed_job_count") or 0),
            "rq_version": data.get("version", ""),
            "python_version": (data.get("python_version") or "").split(" ")[0],
        })
    names = [w["name"] for w in workers]
    current_ids = [w["current_job"] for w in workers if w["current_job"]]
    current_units = {
        u["rq_id"]: u
        for u in Unit.objects.filter(rq_id__in=current_ids).values(
            "id", "job_id", "rq_id", "state", "rendition__name", "chunk__index", "started_at"
        )
    } if current_ids else {}
    assemble_jobs = dict(
        Rendition.objects.filter(
            pk__in=[step[1] for rq_id in current_ids if (step := _pipeline_step_job(rq_id)) and step[0] == "assemble"]
        ).values_list("pk", "job_id")
    )
    done_failed: dict[str, dict[str, int]] = defaultdict(dict)
    for worker, state, n in (
        Unit.objects.filter(worker__in=names, state__in=[UnitState.DONE, UnitState.FAILED])
        .order_by().values_list("worker", "state").annotate(n=Count("id"))
    ):
        done_failed[worker][state] = n
    registry = _worker_registry(names)
    for w in workers:
        w["unit"] = current_units.get(w["current_job"])
        step = _pipeline_step_job(w["current_job"]) if w["current_job"] else None
        w["step"] = None
        if step is not None:
            kind, number = step
            job_id = assemble_jobs.get(number) if kind == "assemble" else number
            w["step"] = {"kind": kind, "job_id": job_id}
        w["units_done"] = done_failed[w["name"]].get(UnitState.DONE, 0)
        w["units_failed"] = done_failed[w["name"]].get(UnitState.FAILED, 0)
        reg = registry.get(w["name"])
        config = reg["config"] if reg else {}
        w["registered"] = reg is not None
        w["reelflow_version"] = config.get("Version", "")
        w["ffmpeg_version"] = config.get("FfmpegVersion", "")
    return workers


def failed_jobs(*, limit: int = 25, conn=None) -> dict:
    """The newest entries of every queue's failed-job registry, and each registry's size.
    Read only (RQ's registry cleanup is left to the workers); three Redis round trips plus one
    per entry shown for its error."""
    conn = conn or redis_client()
    names = settings.RQ_QUEUE_NAMES
    keys = [Queue(name, connection=conn).failed_job_registry.key for name in names]
    with conn.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zcard(key)
            pipe.zrange(key, 0, limit - 1, desc=True, withscores=True)
        values = pipe.execute()
    counts = dict(zip(names, values[0::2], strict=True))
    entries = sorted(
        ((score, name, rq_id.decode() if isinstance(rq_id, bytes) else rq_id)
         for name, listed in zip(names, values[1::2], strict=True) for rq_id, score in listed),
        reverse=True,
    )[:limit]
    jobs = Job.fetch_many([rq_id for _, _, rq_id in entries], connection=conn) if entries else []
    rows = []
    for (_, queue, rq_id), job in zip(entries, jobs, strict=True):
        if job is None:
            rows.append({"queue": queue, "id": rq_id, "missing": True})
            continue
        result = job.latest_result()
        exc = result.exc_string or "" if result is not None else ""
        ended = job.ended_at
        rows.append({
            "queue": queue, "id": rq_id, "missing": False, "func": job.func_name, "args": job.args,
            "ended_at": ended.replace(tzinfo=UTC) if ended and ended.tzinfo is None else ended,
            "exc": exc, "exc_last": exc.strip().splitlines()[-1] if exc.strip() else "",
        })
    return {"rows": rows, "counts": counts, "total": sum(counts.values())}


_SQLITE_PREFIX = {1: 16, 10: 15, 60: 13}  # "2026-01-31 14:05", "2026-01-31 14:0", "2026-01-31 14"


def _time_bucket(field: str, minutes: int):
    """An expression grouping `field` by 1, 10 or 60 minutes, cheap on every backend. SQLite
    keeps datetimes as UTC text, so a prefix of the text is the bucket (Trunc would call a
    Python function for every row); PostgreSQL truncates natively (date_bin for 10 minutes)."""
    if connection.vendor == "sqlite":
        return Substr(field, 1, _SQLITE_PREFIX[minutes])
    if minutes == 10:
        return Func(F(field), template="date_bin('10 minutes', %(expressions)s, TIMESTAMPTZ '2000-01-01 00:00+00')",
                    output_field=models.DateTimeField())
    return (TruncHour if minutes == 60 else TruncMinute)(field, tzinfo=UTC)


def _bucket_start(value: str | datetime, minutes: int) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value + "0" if minutes == 10 else value)
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.replace(minute=value.minute - value.minute % minutes) if minutes == 10 else value


def throughput_series(*, hours: int, now: datetime | None = None) -> dict:
    """Units finished per minute over the last `hours` (hourly buckets, averaged per minute,
    beyond six hours), from the units' own finish times: one grouped query on the
    (state, finished_at) index. Hourly series are cached for a minute: a day of units is the
    costliest read of the console, and an hour's bar does not move in a minute."""
    if hours > 6 and now is None:
        key = f"console:throughput:{hours}:{timezone.now():%Y%m%d%H%M}"
        return cache.get_or_set(key, lambda: _throughput_series(hours=hours, now=timezone.now()), 60)
    return _throughput_series(hours=hours, now=now or timezone.now())


def _throughput_series(*, hours: int, now: datetime) -> dict:
    minutes = 1 if hours <= 6 else 60
    step = timedelta(minutes=minutes)
    end = now.replace(second=0, microsecond=0) + step if minutes == 1 else now.replace(minute=0, second=0, microsecond=0) + step
    start = end - timedelta(hours=hours)
    rows = (
        Unit.objects.filter(state__in=[UnitState.DONE, UnitState.FAILED], finished_at__gte=start)
        .annotate(b=_time_bucket("finished_at", minutes)).order_by().values_list("b", "state").annotate(n=Count("id"))
    )
    n_buckets = int((end - start) / step)
    done = [0.0] * n_buckets
    failed = [0.0] * n_buckets
    for bucket, state, n in rows:
        index = int((_bucket_start(bucket, minutes) - start) / step)
        if 0 <= index < n_buckets:
            (done if state == UnitState.DONE else failed)[index] += n / minutes
    return {"start": start, "step": step, "done": done, "failed": failed}


def queue_depth_series(*, hours: int, now: datetime | None = None) -> dict:
    """The deepest each queue was in each minute (each ten minutes beyond six hours) over the
    last `hours`, from the samples the scheduler records: one grouped query."""
    now = now or timezone.now()
    minutes = 1 if hours <= 6 else 10
    start = now - timedelta(hours=hours)
    series: dict[str, dict[datetime, int]] = defaultdict(dict)
    rows = (
        QueueSample.objects.filter(at__gte=start).annotate(b=_time_bucket("at", minutes))
        .order_by().values_list("b", "queue").annotate(deepest=Max("queued"))
    )
    for bucket, queue, deepest in rows:
        at = _bucket_start(bucket, minutes)
        series[queue][at] = max(deepest, series[queue].get(at, 0))
    return {"start": start, "end": now, "series": {q: sorted(points.items()) for q, points in series.items()}}


def queues_now(*, conn=None) -> list[dict]:
    """Every queue's depth, started and failed counts in one Redis round trip."""
    conn = conn or redis_client()
    names = settings.RQ_QUEUE_NAMES
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            queue = Queue(name, connection=conn)
            pipe.llen(queue.key)
            pipe.zcard(queue.started_job_registry.key)
            pipe.zcard(queue.failed_job_registry.key)
        values = pipe.execute()
    return [
        {"name": name, "queued": values[3 * i], "started": values[3 * i + 1], "failed": values[3 * i + 2]}
        for i, name in enumerate(names)
    ]


# --- Events ----------------------------------------------------------------------------------


def events_page(f: EventFilters, *, after: str | None, before: str | None, per_page: int) -> Page:
    qs = Event.objects.select_related("owner").only(
        "id", "type", "subject_type", "subject_id", "actor_id", "actor_label", "payload", "created_at",
        "owner__id", "owner__username",
    )
    if f.type:
        prefix = f.type.rstrip("*")
        if f.type.endswith(("*", ".")) and prefix:
            # Not a range on the (type, id) index: a common prefix ("job.") matches most rows,
            # and walking the ids newest first finds a page of them at once, where the index
            # would have to sort them all.
            qs = qs.filter(type__startswith=prefix)
        else:
            qs = qs.filter(type=f.type)  # the (type, id) index serves it in id order
    if f.subject_type:
        qs = qs.filter(subject_type=f.subject_type, subject_id=f.subject_id)
    if f.actor:
        user_id = get_user_model().objects.filter(username=f.actor).values_list("pk", flat=True).first()
        qs = qs.filter(actor_id=user_id) if user_id is not None else qs.filter(actor_label=f.actor)
    if f.created_from:
        qs = qs.filter(created_at__gte=_day_start(f.created_from))
    if f.created_to:
        qs = qs.filter(created_at__lt=_day_start(f.created_to) + timedelta(days=1))
    return keyset_page(qs, ordering=("-id",), per_page=per_page, after=after, before=before)


def event_types() -> list[str]:
    """Every event type seen so far (for the filter's suggestions); cached for a minute."""
    return cache.get_or_set(
        EVENT_TYPES_CACHE_KEY,
        lambda: list(Event.objects.order_by("type").values_list("type", flat=True).distinct()),
        60,
    )


# subject type -> (url name, its one argument, the permission its page needs)
SUBJECT_PAGES = {
    "pipeline.encodejob": ("console:job", "job_id", "access_operations"),
    "pipeline.asset": ("studio:asset", "asset_id", "access_operations"),
    "backups.backuprun": ("backups:run_detail", "pk", "access_operations"),
    "backups.restore": ("backups:restore_detail", "pk", "access_operations"),
    "core.alert": ("security:alert", "pk", "access_security"),
    "security.violation": ("security:violation", "pk", "access_security"),
    "rq.job": ("console:workers", None, "access_operations"),
}


def subject_url(*, subject_type: str, subject_id: str, user) -> str | None:
    """The page that shows an event's subject, if there is one this user may open."""
    page = SUBJECT_PAGES.get(subject_type)
    if page is None or not user.has_perm(f"core.{page[2]}"):
        return None
    url_name, arg, _ = page
    try:
        if arg is None:
            return reverse(url_name)
        if not subject_id.isdigit():
            return None
        return reverse(url_name, kwargs={arg: int(subject_id)})
    except NoReverseMatch:
        return None
