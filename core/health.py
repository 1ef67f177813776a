"""What /healthz reports: every service the platform needs, each with its own state."""

import functools
import subprocess
import time

import django_rq
from django.conf import settings
from django.db import connection
from rq import Worker

from core import s3


def _check(fn) -> dict:
    started = time.monotonic()
    try:
        detail = fn() or {}
        result = {"ok": True, **detail}
    except Exception as exc:  # noqa: BLE001 - any failure of a dependency is its "down" state
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def _database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"vendor": connection.vendor}


def _redis() -> dict:
    conn = django_rq.get_connection("default")
    conn.ping()
    return {}


def _s3() -> dict:
    client = s3.client()
    buckets = [settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA, settings.S3_BUCKET_BACKUP]
    for bucket in buckets:
        client.head_bucket(Bucket=bucket)
    return {"endpoint": settings.S3_ENDPOINT_URL, "buckets": buckets}


@functools.cache
def _version(binary: str) -> str:
    out = subprocess.run(  # noqa: S603 - binary comes from settings, not from a request
        [binary, "-version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return out.splitlines()[0] if out else "unknown"


def _ffmpeg() -> dict:
    return {
        "ffmpeg": _version(settings.FFMPEG_BINARY),
        "ffprobe": _version(settings.FFPROBE_BINARY),
    }


def _workers() -> dict:
    workers = Worker.all(connection=django_rq.get_connection("default"))
    if not workers:
        raise RuntimeError("no RQ worker is running")
    return {"count": len(workers), "queues": sorted({q for w in workers for q in w.queue_names()})}


def health_report() -> dict:
    checks = {
        "database": _check(_database),
        "redis": _check(_redis),
        "s3": _check(_s3),
        "ffmpeg": _check(_ffmpeg),
        "workers": _check(_workers),
    }
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}
