"""/metrics benchmark: scraping with 10,000 seeded jobs, against the operations overview page
(`/ops/`, jobs per state and queue depths: the closest console page) on the same rows in the
same run.

    .venv/bin/python bench/metrics_scrape.py [--jobs 10000] [--requests 60] [--postgres [URL]]

The database, the seed and the timing are bench/ops_pages.py's: a fresh SQLite file (or a new
PostgreSQL database), `seed_demo` (about 40 units a job, events), signed-in test-client
requests requested round robin. /metrics is scraped with the bearer token, as Prometheus does.
Before timing, a few thousand worker observations are pushed to Redis (core.metrics) so the
histograms have series to render. Redis must be running (BENCH_REDIS_URL, default database 12;
this run empties the metrics hashes in it).

Target: p95 <= 100 ms. Prints a table, the ratio, then one line with a JSON object of the figures
(`metrics_p95_ms`).
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ops_pages import _environment, _measure  # noqa: E402

TOKEN = "bench-metrics-token-0123456789"  # noqa: S105 - a token for this run only


def _observations(n: int) -> None:
    from core import metrics

    metrics.reset()
    rng = random.Random(7)
    for _ in range(n):
        labels = {
            "codec": rng.choice(["libx264", "libx265", "libvpx-vp9"]),
            "height": rng.choice(["240", "480", "720", "1080"]),
        }
        metrics.observe("reelflow_unit_duration_seconds", rng.uniform(1, 300), **labels)
        metrics.observe("reelflow_unit_cpu_seconds", rng.uniform(1, 600), **labels)
        metrics.observe("reelflow_encode_speed_fps", rng.uniform(5, 800), **labels)
        metrics.inc("reelflow_units_finished", **labels, outcome="done")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=60, help="timed requests per page")
    parser.add_argument("--observations", type=int, default=2_000)
    parser.add_argument("--postgres", nargs="?", const="postgres://postgres@127.0.0.1:5432", default="")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reelflow-metrics-bench-") as tmp:
        drop = _environment(args, Path(tmp))
        os.environ["METRICS_TOKEN"] = TOKEN
        try:
            return run(args)
        finally:
            if drop is not None:
                drop()


def run(args) -> int:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from console.demo import demo_data_seed
    from core.roles import Role
    from core.services import user_create_with_role
    from pipeline.models import Unit

    call_command("migrate", verbosity=0)
    started = time.monotonic()
    report = demo_data_seed(jobs=args.jobs)
    seed_s = time.monotonic() - started
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    units = Unit.objects.count()
    _observations(args.observations)
    print(f"{connection.vendor}: seeded {report.jobs} jobs, {units} units in {seed_s:.1f} s")

    operator, _ = user_create_with_role(username="bench-ops", role=Role.OPERATIONS)
    ops = Client()
    ops.force_login(operator)
    scraper = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    size = len(scraper.get("/metrics").content)
    measured = _measure({"metrics": (scraper, "/metrics"), "overview": (ops, "/ops/")}, args.requests)
    print(f"\n{'page':12} {'p50 ms':>8} {'p95 ms':>8} {'cpu p50':>8} {'cpu p95':>8} {'queries':>8}")
    for name, fig in measured.items():
        print(
            f"{name:12} {fig['p50']:8.1f} {fig['p95']:8.1f} {fig['cpu_p50']:8.1f} {fig['cpu_p95']:8.1f} {fig['queries']:8}"
        )
    ratio = round(measured["metrics"]["p50"] / measured["overview"]["p50"], 2)
    load = os.getloadavg()[0]
    print(f"\n/metrics p50 / overview p50: {ratio} ({size} bytes a scrape)")
    print(
        f"/metrics p95: {measured['metrics']['p95']} ms (target 100 ms; load average {load:.1f} on {os.cpu_count()} CPUs)"
    )
    print(
        json.dumps(
            {
                "db": connection.vendor,
                "jobs": report.jobs,
                "units": units,
                "seed_s": round(seed_s, 1),
                "requests": args.requests,
                "scrape_bytes": size,
                "metrics": measured["metrics"],
                "overview": measured["overview"],
                "ratio_p50": ratio,
                "metrics_p95_ms": measured["metrics"]["p95"],
                "metrics_cpu_p95_ms": measured["metrics"]["cpu_p95"],
                "load_avg": round(load, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
