"""Reads of core's models, shaped for the pages that show them."""

import django_rq
from django.conf import settings
from django.db.models import QuerySet
from rq import Worker

from core.models import Alert, AlertState


def alerts_open(*, source: str | None = None, limit: int = 50) -> QuerySet[Alert]:
    qs = Alert.objects.exclude(state=AlertState.RESOLVED).select_related("acknowledged_by")
    if source:
        qs = qs.filter(source=source)
    return qs.order_by("-last_seen_at")[:limit]


def queue_depths() -> list[dict]:
    rows = []
    for name in settings.RQ_QUEUE_NAMES:
        queue = django_rq.get_queue(name)
        rows.append(
            {
                "name": name,
                "queued": queue.count,
                "started": queue.started_job_registry.count,
                "failed": queue.failed_job_registry.count,
            }
        )
    return rows


def workers_list() -> list[dict]:
    workers = Worker.all(connection=django_rq.get_connection("default"))
    return [
        {
            "name": w.name,
            "hostname": w.hostname,
            "pid": w.pid,
            "queues": w.queue_names(),
            "state": w.get_state(),
            "last_heartbeat": w.last_heartbeat,
            "successful": w.successful_job_count,
            "failed": w.failed_job_count,
        }
        for w in sorted(workers, key=lambda w: w.name)
    ]
