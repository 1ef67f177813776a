"""Live progress: messages to a job's channel-layer group, at a bounded rate.

The database is written on state transitions only; per-frame progress travels through Redis
here. Every message carries a per-job sequence number (a Redis counter) so a page that takes a
snapshot and then listens can drop what the snapshot already contains.
"""

import logging
import time

import django_rq
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

JOBS_GROUP = "jobs"  # every job's state changes: the operations console listens here


def job_group(job_id: int) -> str:
    return f"job-{job_id}"


def _seq_key(job_id: int) -> str:
    return f"reelflow:job:{job_id}:seq"


def next_seq(job_id: int) -> int:
    return int(django_rq.get_connection("default").incr(_seq_key(job_id)))


def current_seq(job_id: int) -> int:
    return int(django_rq.get_connection("default").get(_seq_key(job_id)) or 0)


def publish_rollback_unsafe(job_id: int, payload: dict, *, also_jobs_group: bool = False) -> None:
    """Send now, whatever becomes of the caller's transaction (used for progress ticks)."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "job.message", "seq": next_seq(job_id), "job": job_id, **payload}
    try:
        async_to_sync(layer.group_send)(job_group(job_id), message)
        if also_jobs_group:
            async_to_sync(layer.group_send)(JOBS_GROUP, message)
    except Exception:  # noqa: BLE001 - a lost progress tick must never fail an encode
        logger.warning("progress message for job %s not sent", job_id, exc_info=True)


def publish_on_commit(job_id: int, payload: dict, *, also_jobs_group: bool = False) -> None:
    """Send once the transaction that made `payload` true has committed."""
    transaction.on_commit(lambda: publish_rollback_unsafe(job_id, payload, also_jobs_group=also_jobs_group))


class Throttle:
    """Lets a call through at most once per `interval_s` (the first one always)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last = float("-inf")

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            return True
        return False


def cancel_key(job_id: int) -> str:
    return f"reelflow:job:{job_id}:cancelled"


def cancel_flag_set(job_id: int) -> None:
    django_rq.get_connection("default").set(cancel_key(job_id), "1", ex=7 * 24 * 3600)


def cancel_flag_is_set(job_id: int) -> bool:
    return bool(django_rq.get_connection("default").exists(cancel_key(job_id)))
