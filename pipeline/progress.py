"""Live progress: messages to a job's channel-layer group, at a bounded rate.

The database is written on state transitions only; per-frame progress travels through Redis
here. Every message carries a per-job sequence number (a Redis counter) so a page that takes a
snapshot and then listens can drop what the snapshot already contains.
"""

import asyncio
import logging
import os
import threading
import time

import django_rq
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

JOBS_GROUP = "jobs"  # every job's state changes: the operations console listens here


def job_group(job_id: int) -> str:
    return f"job-{job_id}"


def _seq_key(job_id: int) -> str:
    return f"reelflow:job:{job_id}:seq"


_state = threading.local()


def redis_conn():
    """One Redis client per process (redis-py resets its pool in a forked child itself)."""
    pid = os.getpid()
    conn = getattr(_state, "redis", None)
    if conn is None or getattr(_state, "redis_pid", None) != pid:
        _state.redis, _state.redis_pid = django_rq.get_connection("default"), pid
    return _state.redis


class _LayerLoop:
    """A private event loop thread that keeps the channel layer's Redis connections open.

    `async_to_sync(layer.group_send)` from sync code builds a new loop per call and with it a
    new connection (about 60 ms a message measured here); sending through one long-lived loop
    costs a few ms. Threads do not survive fork, so each process (each RQ work horse) starts
    its own on first use.
    """

    _instance: "_LayerLoop | None" = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.layer = get_channel_layer()
        threading.Thread(target=self.loop.run_forever, name="channel-layer", daemon=True).start()

    @classmethod
    def get(cls) -> "_LayerLoop":
        with cls._lock:
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = cls()
            return cls._instance

    def group_send(self, groups: list[str], message: dict, timeout: float = 5.0) -> None:
        async def send() -> None:
            for group in groups:
                await self.layer.group_send(group, message)

        asyncio.run_coroutine_threadsafe(send(), self.loop).result(timeout=timeout)


def next_seq(job_id: int) -> int:
    return int(redis_conn().incr(_seq_key(job_id)))


def current_seq(job_id: int) -> int:
    return int(redis_conn().get(_seq_key(job_id)) or 0)


def publish_rollback_unsafe(job_id: int, payload: dict, *, also_jobs_group: bool = False) -> None:
    """Send now, whatever becomes of the caller's transaction (used for progress ticks)."""
    if get_channel_layer() is None:
        return
    message = {"type": "job.message", "seq": next_seq(job_id), "job": job_id, **payload}
    groups = [job_group(job_id), *([JOBS_GROUP] if also_jobs_group else [])]
    try:
        _LayerLoop.get().group_send(groups, message)
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
    redis_conn().set(cancel_key(job_id), "1", ex=7 * 24 * 3600)


def cancel_flag_clear(job_id: int) -> None:
    redis_conn().delete(cancel_key(job_id))


def cancel_flag_is_set(job_id: int) -> bool:
    return bool(redis_conn().exists(cancel_key(job_id)))


# --- Liveness of running units -------------------------------------------------------------
# A running unit refreshes a short-lived key from a background thread; the reconciler treats a
# RUNNING unit without its key as lost (its worker was killed or its machine vanished). RQ's
# own worker heartbeat is too coarse for this (tens of seconds to minutes).
UNIT_ALIVE_TTL_S = 15
UNIT_ALIVE_EVERY_S = 3


def _alive_key(unit_id: int) -> str:
    return f"reelflow:unit:{unit_id}:alive"


def _step_alive_key(rq_id: str) -> str:
    return f"reelflow:step:{rq_id}:alive"


class UnitHeartbeat:
    """`with UnitHeartbeat(unit_id):` keeps the unit's liveness key fresh until the block ends."""

    def __init__(self, unit_id: int, *, key: str | None = None) -> None:
        self.unit_id = unit_id
        self.key = key or _alive_key(unit_id)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{self.key}-heartbeat", daemon=True)

    def _beat(self) -> None:
        redis_conn().set(self.key, "1", ex=UNIT_ALIVE_TTL_S)

    def _run(self) -> None:
        while not self._stop.wait(UNIT_ALIVE_EVERY_S):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 - a missed beat only risks a harmless re-run
                logger.warning("heartbeat %s not sent", self.key, exc_info=True)

    def __enter__(self) -> "UnitHeartbeat":
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        redis_conn().delete(self.key)


def step_heartbeat(rq_id: str) -> UnitHeartbeat:
    """The same liveness key for a single step (ingest, assemble, package), by its RQ id.

    RQ refreshes a started job's heartbeat only from a forking worker's monitor loop; the
    in-process workers Reelflow runs set it once, at the start. Without this key a step running
    longer than the reconciler's patience looked lost and was queued again, and a step whose
    worker died was noticed only minutes later.
    """
    return UnitHeartbeat(0, key=_step_alive_key(rq_id))


def step_alive(rq_id: str) -> bool:
    return bool(redis_conn().exists(_step_alive_key(rq_id)))


def units_alive(unit_ids: list[int]) -> set[int]:
    if not unit_ids:
        return set()
    values = redis_conn().mget([_alive_key(u) for u in unit_ids])
    return {u for u, v in zip(unit_ids, values, strict=True) if v}
