"""Studio benchmark: live progress to many websocket clients, and the browser's upload path.

    .venv/bin/python bench/progress_ws.py [--clients 100 500] [--with-1000] [--messages 100]
                                          [--rate 4] [--upload-mib 256] [--runs 3] [--skip-upload]

(1) Fan-out. N websocket clients (100 and 500 by default; --with-1000 adds 1000) on ONE daphne
    process serving config.asgi, each signed in with its session cookie and watching the same
    job's asset page socket, while a separate publisher process sends progress messages through
    the channel layer exactly as an encoding worker does (pipeline.progress; by default at one
    running unit's rate, 4 a second). Measured: latency
    from just before the publish call to receipt by each client (p50, p95, max), messages not
    received, connections dropped, and the web process's CPU per frame delivered (the figure
    other load on the machine inflates least). Goal: p95 <= 100 ms at 500 clients.
(2) Upload. The browser's path done by Python step by step: start the upload on the studio API,
    sign part URLs in batches, PUT the parts to S3 in parallel (STUDIO_UPLOAD_PARALLEL_PARTS at
    a time, STUDIO_UPLOAD_PART_BYTES each), complete on the API (ListParts, Complete, a ranged
    GET of the first bytes, the object-created event). Baseline: boto3's upload_file of the same
    file to the same S3 (its default multipart transfer). Ratio = path / baseline throughput,
    goal >= 0.8.

Everything runs against its own SeaweedFS (temp folder), a temp SQLite database and Redis
database 13 (BENCH_REDIS_URL to change it). Prints the figures and ratios, then ONE line with a
JSON object of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
MIB = 1024**2
HANDSHAKES_AT_ONCE = 50

from bench_common import (  # noqa: E402 - beside this script
    ACCESS_KEY,
    SECRET_KEY,
    daphne_wait,
    django_setup_then,
    nofile_raise,
    processes_stop,
    session_cookie_value,
    web_database,
    web_env,
)
from studio_upload import make_upload_file, upload_boto3, upload_browser_path  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# --- The publisher: a separate process, as an RQ worker is -----------------------------------


def publish(job_id: int, unit_id: int, rendition_id: int, count: int, rate: float) -> None:
    import logging

    import django

    django.setup()
    from pipeline import progress

    class Count(logging.Handler):
        failed = 0

        def emit(self, record: logging.LogRecord) -> None:
            Count.failed += 1

    # publish_rollback_unsafe logs (and swallows) a failed send, as a worker must: count them.
    logging.getLogger("pipeline.progress").addHandler(Count(level=logging.WARNING))
    interval = 1 / rate
    start = time.monotonic()
    for n in range(count):
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        progress.publish_rollback_unsafe(
            job_id,
            {
                "kind": "progress", "unit": unit_id, "rendition": "h264-720p", "rendition_id": rendition_id,
                "chunk": 0, "percent": round(100 * n / count, 1), "fps": 96.0, "speed": 3.8, "eta_s": 12.0,
                "frame": n, "sent_at": time.time(),
            },
        )  # fmt: skip
    print(json.dumps({"published": count - Count.failed, "failed": Count.failed}), flush=True)


# --- Websocket clients ------------------------------------------------------------------------


async def watch(url: str, headers: dict, slots: asyncio.Semaphore, ready: asyncio.Event, stats: dict) -> None:
    """One page's socket: the snapshot, then every message until cancelled."""
    import websockets

    try:
        async with slots:  # at most so many handshakes at once, as page loads spread out
            ws = await websockets.connect(url, additional_headers=headers, max_queue=None, open_timeout=120)
            snapshot = json.loads(await ws.recv())
        assert snapshot["type"] == "snapshot", snapshot
        stats["connected"] += 1
        if stats["connected"] + stats["dropped"] >= stats["wanted"]:
            ready.set()
        try:
            async for raw in ws:
                message = json.loads(raw)
                if message.get("kind") == "progress" and "sent_at" in message:
                    stats["latencies"].append(time.time() - message["sent_at"])
        finally:
            await ws.close()
        stats["dropped"] += 1  # the server closed the socket
        stats["errors"].append("closed by the server")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure of a client is counted as a drop
        stats["dropped"] += 1
        stats["errors"].append(f"{type(exc).__name__}: {exc}"[:200])
        if stats["connected"] + stats["dropped"] >= stats["wanted"]:
            ready.set()


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def fan_out(
    *,
    origin: str,
    cookie: str,
    asset_id: int,
    job: dict,
    clients: int,
    messages: int,
    rate: float,
    env,
    web_pid: int,
):
    url = origin.replace("http", "ws") + f"/ws/studio/assets/{asset_id}/"
    headers = {"Cookie": cookie, "Origin": origin}
    stats = {"wanted": clients, "connected": 0, "dropped": 0, "latencies": [], "errors": []}
    ready = asyncio.Event()
    slots = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    t0 = time.monotonic()
    tasks = [asyncio.create_task(watch(url, headers, slots, ready, stats)) for _ in range(clients)]
    await asyncio.wait_for(ready.wait(), timeout=300)
    connect_s = time.monotonic() - t0
    await asyncio.sleep(1)
    cpu0 = cpu_seconds(web_pid)
    publisher = await asyncio.create_subprocess_exec(
        PY, __file__, "--publish", json.dumps({**job, "count": messages, "rate": rate}), env=env,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await publisher.communicate()
    published = json.loads(out.decode().strip().splitlines()[-1])
    expected = stats["connected"] * messages
    deadline = time.monotonic() + 15
    while len(stats["latencies"]) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    web_cpu = cpu_seconds(web_pid) - cpu0
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lat = stats["latencies"]
    return {
        "clients": clients,
        "connected": stats["connected"],
        "dropped": stats["dropped"],
        "missed": expected - len(lat),
        "publish_failed": published["failed"],
        "connect_s": round(connect_s, 1),
        "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
        "p95_ms": round(1000 * percentile(lat, 95), 1) if lat else None,
        "max_ms": round(1000 * max(lat), 1) if lat else None,
        # CPU the web process spent per frame delivered: unlike latency, not inflated by other load.
        "web_cpu_us_per_frame": round(1e6 * web_cpu / len(lat)) if lat else None,
        "errors": stats["errors"][:3],
    }


# --- Setup and report -----------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--with-1000", action="store_true", help="also run 1000 clients")
    parser.add_argument("--messages", type=int, default=100, help="progress messages per run")
    parser.add_argument(
        "--rate",
        type=float,
        help="messages per second (default: one running unit's, 1000/REELFLOW_PROGRESS_INTERVAL_MS)",
    )
    parser.add_argument("--upload-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3, help="upload runs per side; medians are reported")
    parser.add_argument("--skip-upload", action="store_true")
    parser.add_argument("--publish", help=argparse.SUPPRESS)
    return parser.parse_args()


def job_fixture(publisher) -> tuple[int, dict]:
    """An encoding job of 10 chunks x 3 renditions for the asset page to watch: (asset id, the
    publisher process's job arguments)."""
    from django.conf import settings

    from pipeline.models import Asset, Chunk, EncodeJob, JobState, Profile, Rendition, RenditionKind, Unit

    asset = Asset.objects.create(publisher=publisher, title="Bench", source_bucket=settings.S3_BUCKET_INGEST,
                                 source_key="uploads/benchpub/x.mp4", duration_s=600)  # fmt: skip
    job = EncodeJob.objects.create(asset=asset, profile=Profile.objects.get(slug="standard"), chunk_seconds=60,
                                   segment_seconds=4, state=JobState.ENCODING)  # fmt: skip
    chunks = [Chunk.objects.create(job=job, index=i, start_s=60 * i, end_s=60 * (i + 1), start_frame=1500 * i,
                                   frame_count=1500) for i in range(10)]  # fmt: skip
    unit_ids = []
    for height in (240, 480, 720):
        rendition = Rendition.objects.create(job=job, kind=RenditionKind.VIDEO, name=f"h264-{height}p",
                                             width=height * 16 // 9, height=height, units_total=10)  # fmt: skip
        unit_ids += [Unit.objects.create(job=job, rendition=rendition, chunk=c, output_key=f"u/{height}/{c.index}").pk
                     for c in chunks]  # fmt: skip
    return asset.pk, {
        "job_id": job.pk,
        "unit_id": unit_ids[-1],
        "rendition_id": Unit.objects.get(pk=unit_ids[-1]).rendition_id,
    }


class Platform:
    """SeaweedFS, a temporary SQLite database, Django configured for them, the watched job, a
    signed-in publisher and ONE daphne serving config.asgi; all stopped on exit."""

    def __init__(self) -> None:
        self.daphne: subprocess.Popen | None = None

    def __enter__(self) -> Platform:
        from devservices.seaweed import start_seaweed

        nofile_raise()
        self.work = work = Path(tempfile.mkdtemp(prefix="reelflow-bench-ws-"))
        self.server = start_seaweed(data_dir=work / "s3", access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.env = web_env(work=work, endpoint_url=self.server.endpoint_url, origin=self.origin,
                           prefix="reelflow-bench-ws", redis_default="redis://127.0.0.1:6379/13")  # fmt: skip
        os.environ.update(self.env)
        django_setup_then(self._start, lambda: self.__exit__(None, None, None))
        return self

    def _start(self) -> None:
        from django.conf import settings

        from core.roles import Role
        from core.services import user_create_with_role

        web_database(self.origin)
        publisher, _ = user_create_with_role(username="benchpub", role=Role.PUBLISHER)
        self.asset_id, self.job_args = job_fixture(publisher)
        self.cookie_value = session_cookie_value(publisher)
        self.cookie = f"{settings.SESSION_COOKIE_NAME}={self.cookie_value}"
        log = (self.work / "daphne.log").open("wb")
        self.daphne = subprocess.Popen(
            [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "config.asgi:application"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        daphne_wait(self.origin)

    def __exit__(self, kind, exc, tb) -> None:
        import django_rq

        if self.daphne is not None:
            processes_stop([self.daphne], timeout=10)
        with contextlib.suppress(Exception):
            django_rq.get_connection("default").flushdb()
        self.server.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def fan_out_one(platform: Platform, args, n: int, rate: float) -> dict:
    """(1) at ``n`` clients, printed; daphne's log where a client failed or missed messages."""
    row = asyncio.run(
        fan_out(origin=platform.origin, cookie=platform.cookie, asset_id=platform.asset_id, job=platform.job_args,
                clients=n, messages=args.messages, rate=rate, env=platform.env, web_pid=platform.daphne.pid)
    )  # fmt: skip
    print(
        f"fan-out {n:>5} clients: p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, max {row['max_ms']} ms, "
        f"dropped {row['dropped']}, missed {row['missed']} of {n * args.messages} "
        f"(publisher failed to send {row['publish_failed']}); web process {row['web_cpu_us_per_frame']} µs CPU a frame "
        f"({args.messages} messages at {rate:g}/s; all connected in {row['connect_s']} s)"
    )
    for error in row["errors"]:
        print(f"    client error: {error}")
    if row["errors"] or row["missed"]:
        lines = (platform.work / "daphne.log").read_text(errors="replace").splitlines()
        noise = ("WSCONNECT", "WSDISCONNECT", "HTTP GET", "HTTP POST")
        print(
            "    daphne said:\n"
            + "\n".join(line for line in lines if not any(n in line for n in noise))[-3000:]
        )
    return row


def upload_times(platform: Platform, args, path: Path) -> tuple[list[float], list[float], list[float]]:
    """(2) the browser's path and boto3's upload_file, alternated: seconds of each, and of the API."""
    import requests
    from django.conf import settings

    session = requests.Session()
    session.cookies.set(settings.SESSION_COOKIE_NAME, platform.cookie_value)
    session.get(f"{platform.origin}/studio/upload/").raise_for_status()  # sets the CSRF cookie
    browser, boto, api = [], [], []
    for run in range(args.runs):
        # Alternate which side goes first so neither always meets a warmer S3.
        sides = [("browser", browser), ("boto3", boto)]
        for name, times in sides if run % 2 == 0 else reversed(sides):
            if name == "browser":
                seconds, api_seconds = upload_browser_path(
                    origin=platform.origin,
                    session=session,
                    path=path,
                    parallel=settings.STUDIO_UPLOAD_PARALLEL_PARTS,
                )
                times.append(seconds)
                api.append(api_seconds)
            else:
                times.append(
                    upload_boto3(
                        path=path, bucket=settings.S3_BUCKET_INGEST, key=f"bench/boto-{run}.mp4"
                    )
                )
    return browser, boto, api


def upload_figures(platform: Platform, args) -> dict:
    from django.conf import settings

    path = platform.work / "upload.mp4"
    make_upload_file(path, args.upload_mib)
    browser, boto, api = upload_times(platform, args, path)
    size_mib = path.stat().st_size / MIB
    browser_mibs = size_mib / statistics.median(browser)
    boto_mibs = size_mib / statistics.median(boto)
    upload = {
        "mib": round(size_mib),
        "part_mib": settings.STUDIO_UPLOAD_PART_BYTES // MIB,
        "parallel_parts": settings.STUDIO_UPLOAD_PARALLEL_PARTS,
        "browser_path_mib_s": round(browser_mibs, 1),
        "boto3_upload_file_mib_s": round(boto_mibs, 1),
        "ratio": round(browser_mibs / boto_mibs, 2),
        "studio_api_s": round(statistics.median(api), 2),
        "runs": args.runs,
    }
    print(
        f"upload {size_mib:.0f} MiB: browser path {browser_mibs:.1f} MiB/s "
        f"({settings.STUDIO_UPLOAD_PARALLEL_PARTS} parts of {settings.STUDIO_UPLOAD_PART_BYTES // MIB} MiB "
        f"in parallel, {upload['studio_api_s']} s of it in the studio API), boto3 upload_file "
        f"{boto_mibs:.1f} MiB/s; ratio {upload['ratio']} (goal >= 0.8)"
    )
    return upload


def main() -> int:
    args = parse_args()
    if args.publish:
        publish(**{k: v for k, v in json.loads(args.publish).items()})
        return 0
    clients = sorted(set(args.clients + ([1000] if args.with_1000 else [])))
    with Platform() as platform:
        from django.conf import settings

        rate = args.rate or 1000 / settings.REELFLOW_PROGRESS_INTERVAL_MS
        results: dict = {
            "fan_out": [],
            "rate_per_s": rate,
            "messages": args.messages,
            "machine": {"cpus": os.cpu_count()},
        }
        for n in clients:
            results["fan_out"].append(fan_out_one(platform, args, n, rate))
        at_500 = next((r for r in results["fan_out"] if r["clients"] == 500), None)
        if at_500 and at_500["p95_ms"] is not None:
            results["p95_ms_at_500_over_goal"] = round(at_500["p95_ms"] / 100, 2)
            print(f"p95 at 500 clients / 100 ms goal: {results['p95_ms_at_500_over_goal']}")
        if not args.skip_upload:
            results["upload"] = upload_figures(platform, args)
        for row in results["fan_out"]:
            row.pop("errors")
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
