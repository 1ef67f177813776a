"""Helpers that the web benchmarks (bench/progress_ws.py, bench/load.py) share: the open-files
limit raised, the environment of a daphne with its own SeaweedFS and SQLite, the database and
buckets made ready, and the wait until daphne answers."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ACCESS_KEY, SECRET_KEY = "bench-access", "bench-secret-key-123456"


def nofile_raise() -> None:
    """Many websocket clients in one process: as many open files as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def web_env(*, work: Path, endpoint_url: str, origin: str, prefix: str, redis_default: str) -> dict:
    """The environment of the bench, its daphne and its workers (BENCH_REDIS_URL, else
    ``redis_default``)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", redis_default),
        "CHANNELS_PREFIX": prefix,
        "CACHE_PREFIX": prefix,
        "S3_ENDPOINT_URL": endpoint_url,
        "S3_ACCESS_KEY": ACCESS_KEY,
        "S3_SECRET_KEY": SECRET_KEY,
        "REELFLOW_SITE_URL": origin,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "REELFLOW_VAR_DIR": str(work),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def web_database(origin: str) -> None:
    """Redis database emptied, SQLite migrated, static files collected, buckets made (CORS for
    ``origin``, as a browser uploads)."""
    import django_rq
    from django.conf import settings
    from django.core.management import call_command

    from core import s3

    django_rq.get_connection("default").flushdb()
    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    s3.buckets_ensure([settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA], cors_origins=[origin])


def session_cookie_value(user) -> str:
    """A signed-in session for ``user``: the value of its session cookie."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def daphne_wait(origin: str) -> None:
    """Until the login page answers (30 s at most)."""
    import requests

    for _ in range(300):
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"{origin}/accounts/login/", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("daphne did not answer")


def processes_stop(procs: list[subprocess.Popen], timeout: float) -> None:
    """Terminate, wait, kill what did not stop."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def django_setup_then(start: Callable[[], None], stop: Callable[[], None]) -> None:
    """Django set up from the environment, then ``start`` (a platform's services); ``stop`` what
    was started if that fails."""
    import django

    django.setup()
    try:
        start()
    except BaseException:
        stop()
        raise
