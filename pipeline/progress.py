"""Live progress: messages to a job's channel-layer group, at a bounded rate.

The database is written on state transitions only; per-frame progress travels through Redis
here. Every message carries a per-job sequence number (a Redis counter) so a page that takes a
snapshot and then listens can drop what the snapshot already contains.
"""

import logging
import threading
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


# --- Liveness of running units -------------------------------------------------------------
# A running unit refreshes a short-lived key from a background thread; the reconciler treats a
# RUNNING unit without its key as lost (its worker was killed or its machine vanished). RQ's
# own worker heartbeat is too coarse for this (tens of seconds to minutes).
UNIT_ALIVE_TTL_S = 15
UNIT_ALIVE_EVERY_S = 3


def _alive_key(unit_id: int) -> str:
    return f"reelflow:unit:{unit_id}:alive"


class UnitHeartbeat:
    """`with UnitHeartbeat(unit_id):` keeps the unit's liveness key fresh until the block ends."""

    def __init__(self, unit_id: int) -> None:
        self.unit_id = unit_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"unit-{unit_id}-heartbeat", daemon=True)

    def _beat(self) -> None:
        django_rq.get_connection("default").set(_alive_key(self.unit_id), "1", ex=UNIT_ALIVE_TTL_S)

    def _run(self) -> None:
        while not self._stop.wait(UNIT_ALIVE_EVERY_S):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 - a missed beat only risks a harmless re-run
                logger.warning("heartbeat of unit %s not sent", self.unit_id, exc_info=True)

    def __enter__(self) -> "UnitHeartbeat":
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        django_rq.get_connection("default").delete(_alive_key(self.unit_id))


def units_alive(unit_ids: list[int]) -> set[int]:
    if not unit_ids:
        return set()
    values = django_rq.get_connection("default").mget([_alive_key(u) for u in unit_ids])
    return {u for u, v in zip(unit_ids, values, strict=True) if v}
