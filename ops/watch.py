"""Alerts for conditions no app raises itself: failed jobs, lanes with work and no live worker,
unhealthy dependencies. Checked once a minute (`ops-watch` in config/cron.py); each alert is
resolved by the same check once its condition is gone. Like every alert they reach people
through the notifications app's routes (sources `pipeline`, `workers`, `health`)."""

from datetime import UTC, timedelta

from django.db import transaction
from django.utils import timezone
from rq import Queue
from rq.utils import utcparse
from rq.worker_registration import get_keys

from core import metrics
from core.health import health_report
from core.models import Alert, AlertSeverity, AlertState
from core.services import alert_raise, alert_resolve
from ops.metrics import lane_of
from pipeline import queues as pipeline_queues
from pipeline.models import EncodeJob, JobState

LANES = {
    "media": list(pipeline_queues.MEDIA),
    "security": ["security"],
    "backup": ["backup"],
    "control": ["webhooks", "default"],
}
STALE_AFTER = timedelta(seconds=420)  # RQ's worker TTL


def _open(prefix: str) -> dict[str, Alert]:
    return {
        a.dedup_key: a
        for a in Alert.objects.filter(dedup_key__startswith=prefix).exclude(state=AlertState.RESOLVED)
    }


def _resolve_gone(open_alerts: dict[str, Alert], still: set[str]) -> None:
    for key, alert in open_alerts.items():
        if key not in still:
            alert_resolve(alert=alert)


@transaction.atomic
def failed_jobs_watch(*, now=None) -> None:
    now = now or timezone.now()
    recent = EncodeJob.objects.filter(state=JobState.FAILED, finished_at__gte=now - timedelta(hours=1))
    keys = {
        f"pipeline:job:{job_id}:failed": (job_id, reason)
        for job_id, reason in recent.values_list("pk", "failure_reason")
    }
    known = set(Alert.objects.filter(dedup_key__in=list(keys)).values_list("dedup_key", flat=True))
    for key, (job_id, reason) in keys.items():
        if key not in known:  # raised once per failure; a person or a restart ends it
            alert_raise(source="pipeline", severity=AlertSeverity.WARNING, title=f"Job #{job_id} failed",
                        detail=reason[:1000], subject=("pipeline.encodejob", job_id), dedup_key=key)  # fmt: skip
    open_alerts = _open("pipeline:job:")
    failed = set(
        EncodeJob.objects.filter(
            pk__in=[int(k.split(":")[2]) for k in open_alerts], state=JobState.FAILED
        ).values_list("pk", flat=True)
    )
    _resolve_gone(open_alerts, {f"pipeline:job:{pk}:failed" for pk in failed})


def _live_lanes(conn, now) -> set[str]:
    keys = sorted(get_keys(connection=conn))
    with conn.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key, "queues", "last_heartbeat")
        rows = pipe.execute()
    live = set()
    for queue_list, beat in rows:
        if not beat:
            continue
        when = utcparse(beat.decode())
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
        if now - when <= STALE_AFTER:
            live |= set(lane_of([q for q in (queue_list or b"").decode().split(",") if q]).split("+"))
    return live


@transaction.atomic
def workers_watch(*, conn=None, now=None) -> None:
    conn = conn or metrics.client()
    now = now or timezone.now()
    live = _live_lanes(conn, now)
    waiting = {}
    with conn.pipeline(transaction=False) as pipe:
        for names in LANES.values():
            for name in names:
                pipe.llen(Queue(name, connection=conn).key)
        depths = iter(pipe.execute())
    for lane, names in LANES.items():
        waiting[lane] = sum(next(depths) for _ in names)
    stuck = {f"workers:lane:{lane}:none" for lane, n in waiting.items() if n and lane not in live}
    for key in stuck:
        lane = key.split(":")[2]
        alert_raise(source="workers", severity=AlertSeverity.CRITICAL,
                    title=f"No live worker serves the {lane} lane; {waiting[lane]} job(s) wait",
                    detail=f"Queues {', '.join(LANES[lane])}. Start one (make worker, or the Procfile's process).",
                    dedup_key=key)  # fmt: skip
    _resolve_gone(_open("workers:lane:"), stuck)


@transaction.atomic
def health_watch() -> None:
    report = health_report()
    down = {
        f"health:{name}": check
        for name, check in report["checks"].items()
        if not check["ok"] and name != "workers"
    }
    for key, check in down.items():
        alert_raise(source="health", severity=AlertSeverity.CRITICAL, title=f"{key.split(':')[1]} is down",
                    detail=str(check.get("error", ""))[:1000], dedup_key=key)  # fmt: skip
    _resolve_gone(_open("health:"), set(down))


def watch() -> None:
    failed_jobs_watch()
    workers_watch()
    health_watch()
