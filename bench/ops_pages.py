"""Operations console benchmark: every console page on 10,000 seeded jobs, against Django's
admin on the same rows in the same run.

    .venv/bin/python bench/ops_pages.py [--jobs 10000] [--requests 40] [--postgres [URL]]

A fresh database (a temporary SQLite file, or a new PostgreSQL database created for the run and
dropped after it), `migrate`, `seed_demo` (about 40 units a job, events, queue samples), then
signed-in Django test-client requests (the whole middleware, view and template stack, no
network). Pages, the console's and the admin's, are requested round robin, so a burst of load
on the machine hits every page alike; each page's p50/p95 is over `--requests` requests after three warm-up ones, and its
query count is taken from one request. Wall time and this process's CPU time are both reported:
on a shared machine the CPU time is what the page costs, the wall time also what others cost.

Baselines (the same rows, the same run): the admin changelist of EncodeJob (page 1, filtered,
and 7,500 rows in, where OFFSET and COUNT(*) cost what keyset pages do not), the admin
changelist of Event (page 1 and 50,000 rows in), and the admin change page of one EncodeJob. Ratios are console
p50 / admin p50 for the matching page.

S3 is not started: the overview's health check talks to a closed port (answers "down" at once).
Redis must be running (TEST_REDIS_URL, default database 12 here; only read).

Prints a table, the ratios, then one line with a JSON object of the figures.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _postgres_create(url: str) -> tuple[str, Callable[[], None]]:
    """A new database on that server for this run; returns its URL and a function dropping it."""
    import psycopg

    base = url.rstrip("/").rsplit("/", 1)[0] if url.count("/") > 2 else url.rstrip("/")
    name = f"reelflow_ops_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{base}/{name}", drop


def _environment(args, tmp: Path) -> Callable[[], None] | None:
    drop = None
    if args.postgres:
        url, drop = _postgres_create(args.postgres)
    else:
        url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": url,
        "REELFLOW_VAR_DIR": str(tmp),
        "TEST_REDIS_URL": args.redis_url,
        "DJANGO_ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "S3_ENDPOINT_URL": "http://127.0.0.1:9",  # discard port: nothing listens, refused at once
        "S3_MAX_ATTEMPTS": "1",
        "LOG_LEVEL": "ERROR",
    })
    return drop


def _measure(pages: dict[str, tuple], requests: int) -> dict[str, dict]:
    """`pages`: name -> (client, url). Every page is requested once per round, console and
    admin pages alike, so that load from elsewhere on the machine falls on both."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    figures: dict[str, dict] = {}
    for name, (client, url) in pages.items():
        for _ in range(3):
            response = client.get(url)
            if response.status_code != 200:
                raise SystemExit(f"{name}: GET {url} answered {response.status_code}")
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        figures[name] = {"url": url, "queries": len(queries.captured_queries), "ms": [], "cpu": []}
    for _ in range(requests):
        for name, (client, url) in pages.items():
            started, cpu = time.perf_counter(), time.process_time()
            client.get(url)
            figures[name]["cpu"].append((time.process_time() - cpu) * 1000)
            figures[name]["ms"].append((time.perf_counter() - started) * 1000)
    for fig in figures.values():
        for key, prefix in (("ms", ""), ("cpu", "cpu_")):
            values = sorted(fig.pop(key))
            fig[f"{prefix}p50"] = round(statistics.median(values), 1)
            fig[f"{prefix}p95"] = round(values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))], 1)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=40, help="timed requests per page")
    parser.add_argument("--postgres", nargs="?", const="postgres://postgres@127.0.0.1:5432", default="",
                        help="run on a new database on this PostgreSQL server (default: local, user postgres)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="reelflow-ops-bench-") as tmp:
        drop = _environment(args, Path(tmp))
        try:
            return run(args)
        finally:
            if drop is not None:
                drop()


def seed(jobs: int):
    """Migrate and seed the demo data; returns (report, units, seconds)."""
    from django.core.management import call_command
    from django.db import connection

    from console.demo import demo_data_seed
    from pipeline.models import Unit

    call_command("migrate", verbosity=0)
    started = time.monotonic()
    report = demo_data_seed(jobs=jobs)
    seed_s = time.monotonic() - started
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    units = Unit.objects.count()
    print(f"{connection.vendor}: seeded {report.jobs} jobs, {units} units, {report.events} events in {seed_s:.1f} s")
    return report, units, seed_s


def pages_of(report) -> tuple[dict[str, str], dict[str, str]]:
    """The console's pages and the admin's, "deep" the same number of rows in for both."""
    from console.pagination import _encode
    from core.models import Event
    from pipeline.models import EncodeJob, JobState

    # "Deep" is the same number of rows in for the console (50 a page) and the admin (100).
    job_depth = min(7_500, report.jobs - 1)
    event_depth = min(50_000, report.events - 1)
    jobs = EncodeJob.objects.order_by("-created_at", "-id")
    deep = jobs[job_depth]
    cursor = _encode([deep.created_at, deep.pk])
    failed = EncodeJob.objects.filter(state=JobState.FAILED).order_by("-id").values_list("pk", flat=True).first()
    published = EncodeJob.objects.filter(state=JobState.PUBLISHED).order_by("-id").values_list("pk", flat=True).first()
    publisher = deep.asset.publisher.username
    events = Event.objects.order_by("-id").values_list("pk", flat=True)
    event_deep = _encode([events[event_depth]])

    console_pages = {
        "overview": "/ops/",
        "jobs": "/ops/jobs/",
        "jobs failed": "/ops/jobs/?state=failed",
        "jobs publisher+search": f"/ops/jobs/?publisher={publisher}&q=keynote",
        "jobs deep": f"/ops/jobs/?after={cursor}",
        "job (failed)": f"/ops/jobs/{failed}/",
        "job (published)": f"/ops/jobs/{published}/",
        "workers 3 h": "/ops/workers/",
        "workers 24 h": "/ops/workers/?hours=24",
        "events": "/ops/events/",
        "events type": "/ops/events/?type=job.failed",
        "events subject": f"/ops/events/?subject=job:{failed}",
        "events deep": f"/ops/events/?after={event_deep}",
    }
    admin_pages = {
        "admin jobs": "/admin/pipeline/encodejob/",
        "admin jobs failed": "/admin/pipeline/encodejob/?state__exact=failed",
        "admin jobs deep": f"/admin/pipeline/encodejob/?p={max(1, job_depth // 100)}",
        "admin job": f"/admin/pipeline/encodejob/{failed}/change/",
        "admin events": "/admin/core/event/",
        "admin events deep": f"/admin/core/event/?p={max(1, event_depth // 100)}",
    }
    return console_pages, admin_pages


def summary_print(ours: dict, base: dict) -> dict:
    """The table and the console/admin p50 ratios; returns the ratios."""
    print(f"\n{'page':26} {'p50 ms':>8} {'p95 ms':>8} {'cpu p50':>8} {'cpu p95':>8} {'queries':>8}")
    for name, fig in [*ours.items(), *base.items()]:
        print(f"{name:26} {fig['p50']:8.1f} {fig['p95']:8.1f} {fig['cpu_p50']:8.1f} {fig['cpu_p95']:8.1f} {fig['queries']:8}")
    pairs = {
        "jobs / admin jobs": ("jobs", "admin jobs"),
        "jobs failed / admin jobs failed": ("jobs failed", "admin jobs failed"),
        "jobs deep / admin jobs deep": ("jobs deep", "admin jobs deep"),
        "job / admin job": ("job (failed)", "admin job"),
        "events / admin events": ("events", "admin events"),
        "events deep / admin events deep": ("events deep", "admin events deep"),
    }
    ratios = {label: round(ours[a]["p50"] / base[b]["p50"], 2) for label, (a, b) in pairs.items()}
    print("\np50 ratios, console / admin (below 1: the console is faster):")
    for label, ratio in ratios.items():
        print(f"  {label:45} {ratio:5.2f}")
    return ratios


def run(args) -> int:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from core.roles import Role
    from core.services import user_create_with_role

    report, units, seed_s = seed(args.jobs)
    operator, _ = user_create_with_role(username="bench-ops", role=Role.OPERATIONS)
    root = get_user_model().objects.create_superuser("bench-root", "root@example.com", "pw")
    ops, admin = Client(), Client()
    ops.force_login(operator)
    admin.force_login(root)

    console_pages, admin_pages = pages_of(report)
    measured = _measure(
        {**{k: (ops, url) for k, url in console_pages.items()}, **{k: (admin, url) for k, url in admin_pages.items()}},
        args.requests,
    )
    ours = {k: measured[k] for k in console_pages}
    base = {k: measured[k] for k in admin_pages}
    ratios = summary_print(ours, base)
    worst = max(ours.values(), key=lambda f: f["p95"])
    worst_cpu = max(ours.values(), key=lambda f: f["cpu_p95"])
    load = os.getloadavg()[0]
    print(f"\nslowest console page at p95: {worst['url']} {worst['p95']} ms wall, "
          f"{worst_cpu['cpu_p95']} ms CPU at most (target 150 ms; load average {load:.1f} on {os.cpu_count()} CPUs)")
    print(json.dumps({
        "db": connection.vendor, "jobs": report.jobs, "units": units, "events": report.events,
        "seed_s": round(seed_s, 1), "requests": args.requests,
        "console": {k: {key: v[key] for key in ("p50", "p95", "cpu_p50", "cpu_p95", "queries")} for k, v in ours.items()},
        "admin": {k: {key: v[key] for key in ("p50", "p95", "cpu_p50", "cpu_p95", "queries")} for k, v in base.items()},
        "ratios": ratios, "max_p95_ms": worst["p95"], "max_cpu_p95_ms": worst_cpu["cpu_p95"], "load_avg": round(load, 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
