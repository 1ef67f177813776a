"""Counters and histograms every process records into Redis; `/metrics` reads them back.

RQ workers are separate processes, often on other machines, and a work horse may exit right
after its job, so prometheus-client's in-process registry (or its multiprocess mode, which
needs a folder shared with the web process) cannot carry what a worker measured. Each
observation is instead pushed to Redis, the one thing every process already shares: one
HINCRBYFLOAT per bucket in a hash per family. The web process reads the hashes at scrape time
(ops/metrics.py) and renders them with prometheus-client. Gauges (queue depth, states) are
not recorded here; they are computed at scrape from the database and Redis.

Recording never fails the caller: a Redis error is logged and the observation is lost.
"""

import functools
import json
import logging
import math
import os
from collections.abc import Iterable

import redis
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

KEY_PREFIX = "reelflow:metrics:"

# Buckets per histogram (upper bounds; +Inf is implied). Seconds unless named otherwise.
HISTOGRAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    "reelflow_unit_duration_seconds": (
        "Wall time of an encode unit, by codec and height.",
        (1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 3600),
    ),
    "reelflow_unit_cpu_seconds": (
        "CPU time of an encode unit's ffmpeg, by codec and height.",
        (1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 3600, 7200),
    ),
    "reelflow_encode_speed_fps": (
        "Frames per second of ffmpeg's own time for an encode unit, by codec and height.",
        (5, 10, 25, 50, 100, 200, 400, 800, 1600),
    ),
    "reelflow_time_to_playable_seconds": (
        "From the asset's creation (its upload arriving) to its first playable rendition.",
        (5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
    ),
    "reelflow_time_to_published_seconds": (
        "From the asset's creation to the job's publication.",
        (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400),
    ),
    "reelflow_qc_duration_seconds": (
        "Wall time of a quality measurement step.",
        (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
    ),
    "reelflow_webhook_delivery_seconds": (
        "Duration of one outgoing webhook delivery attempt, connect included.",
        (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    ),
    "reelflow_notification_delivery_seconds": (
        "Duration of one notification delivery attempt, by channel kind.",
        (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    ),
}

COUNTERS: dict[str, str] = {
    "reelflow_s3_errors": "S3 calls that ended in an error (after boto3's retries), by operation and code.",
    "reelflow_webhook_delivery_failures": "Outgoing webhook delivery attempts that failed, by reason.",
    "reelflow_units_finished": "Encode units that ended, by codec, height and outcome.",
    "reelflow_notification_deliveries": "Notification delivery attempts, by channel kind and outcome.",
}


@functools.lru_cache(maxsize=4)
def _client_for(url: str, pid: int) -> redis.Redis:
    # One client per URL and process: a forked work horse must not share its parent's socket.
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def client() -> redis.Redis:
    return _client_for(settings.REDIS_URL, os.getpid())


def _labels_key(labels: dict[str, str]) -> str:
    return json.dumps({k: str(v) for k, v in sorted(labels.items())}, separators=(",", ":"))


def _apply(name: str, fields: Iterable[tuple[str, float]]) -> None:
    try:
        pipe = client().pipeline(transaction=False)
        for field, amount in fields:
            pipe.hincrbyfloat(KEY_PREFIX + name, field, amount)
        pipe.execute()
    except (redis.RedisError, OSError) as exc:
        logger.warning("metric %s not recorded: %s", name, exc)


def observe(name: str, value: float, **labels: str) -> None:
    """Add one observation to histogram `name` (recorded at once, not after commit)."""
    if name not in HISTOGRAMS:
        raise KeyError(f"unknown histogram {name}")
    if value is None or not math.isfinite(value):
        return
    key = _labels_key(labels)
    fields = [(f"{key}|{bound}", 1) for bound in HISTOGRAMS[name][1] if value <= bound]
    fields += [(f"{key}|+Inf", 1), (f"{key}|sum", value), (f"{key}|count", 1)]
    _apply(name, fields)


def inc(name: str, amount: float = 1, **labels: str) -> None:
    """Add `amount` to counter `name` (recorded at once, not after commit)."""
    if name not in COUNTERS:
        raise KeyError(f"unknown counter {name}")
    _apply(name, [(_labels_key(labels), amount)])


def observe_on_commit(name: str, value: float, **labels: str) -> None:
    transaction.on_commit(lambda: observe(name, value, **labels))


def inc_on_commit(name: str, amount: float = 1, **labels: str) -> None:
    transaction.on_commit(lambda: inc(name, amount, **labels))


def read_all() -> dict[str, dict[str, float]]:
    """Every recorded family's hash, in one round trip: {family: {field: value}}."""
    names = [*HISTOGRAMS, *COUNTERS]
    pipe = client().pipeline(transaction=False)
    for name in names:
        pipe.hgetall(KEY_PREFIX + name)
    out = {}
    for name, raw in zip(names, pipe.execute(), strict=True):
        out[name] = {k.decode(): float(v) for k, v in raw.items()}
    return out


def reset() -> None:
    """Forget every recorded value (tests)."""
    client().delete(*(KEY_PREFIX + n for n in [*HISTOGRAMS, *COUNTERS]))
