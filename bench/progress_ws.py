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

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
MIB = 1024**2
ACCESS_KEY, SECRET_KEY = "bench-access", "bench-secret-key-123456"
HANDSHAKES_AT_ONCE = 50


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


# --- Upload: the browser's path and boto3's --------------------------------------------------


def upload_browser_path(*, origin: str, session, path: Path, parallel: int) -> tuple[float, float]:
    """Seconds from the first API call to the completed upload, doing what studio-upload.js does,
    and how many of them went to the studio API (start, signing, completing) rather than parts."""
    import threading

    import requests

    local = threading.local()
    api_s = 0.0
    data_head = path.open("rb").read(MIB)
    size = path.stat().st_size
    csrf = session.cookies["csrftoken"]
    api = {"X-CSRFToken": csrf, "Content-Type": "application/json"}
    t0 = time.monotonic()
    started = session.post(
        f"{origin}/studio/uploads/",
        headers=api,
        data=json.dumps(
            {
                "filename": path.name, "size": size, "lastModified": int(time.time() * 1000),
                "fingerprint": hashlib.sha256(data_head).hexdigest(), "contentType": "video/mp4",
                "title": "bench", "profile": "fast", "head": base64.b64encode(data_head[:1024]).decode(),
            }
        ),
    )  # fmt: skip
    started.raise_for_status()
    api_s += time.monotonic() - t0
    upload = started.json()
    part_size, total = upload["partSize"], upload["partsTotal"]
    pending = list(range(1, total + 1))
    urls: dict[int, str] = {int(n): u for n, u in upload.get("partUrls", {}).items()}

    def sign(first: int) -> None:
        nonlocal api_s
        t = time.monotonic()
        batch = [n for n in pending if n >= first and n not in urls][:20]
        answer = session.post(origin + upload["partsUrl"], headers=api, data=json.dumps({"parts": batch}))
        answer.raise_for_status()
        urls.update({int(n): u for n, u in answer.json()["urls"].items()})
        api_s += time.monotonic() - t

    def put(number: int) -> None:
        with path.open("rb") as f:
            f.seek((number - 1) * part_size)
            body = f.read(part_size)
        # A browser keeps its connections to S3 alive between parts; so does each thread here.
        if not hasattr(local, "http"):
            local.http = requests.Session()
        local.http.put(urls[number], data=body, timeout=300).raise_for_status()

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = []
        for number in pending:
            if number not in urls:
                sign(number)
            futures.append(pool.submit(put, number))
        for future in futures:
            future.result()
    t = time.monotonic()
    session.post(origin + upload["completeUrl"], headers=api, data="{}").raise_for_status()
    api_s += time.monotonic() - t
    return time.monotonic() - t0, api_s


def upload_boto3(*, path: Path, bucket: str, key: str) -> float:
    from core import s3

    t0 = time.monotonic()
    s3.client().upload_file(str(path), bucket, key)
    return time.monotonic() - t0


def make_upload_file(path: Path, size_mib: int) -> None:
    """An MP4 signature, then incompressible bytes (S3 stores them as they come)."""
    with path.open("wb") as f:
        f.write(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2")
        block = os.urandom(4 * MIB)
        for _ in range(size_mib // 4):
            f.write(block)


# --- Setup and report -----------------------------------------------------------------------


def main() -> int:
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
    args = parser.parse_args()
    if args.publish:
        publish(**{k: v for k, v in json.loads(args.publish).items()})
        return 0
    clients = sorted(set(args.clients + ([1000] if args.with_1000 else [])))

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    work = Path(tempfile.mkdtemp(prefix="reelflow-bench-ws-"))
    from devservices.seaweed import start_seaweed

    server = start_seaweed(data_dir=work / "s3", access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
        "CHANNELS_PREFIX": "reelflow-bench-ws",
        "CACHE_PREFIX": "reelflow-bench-ws",
        "S3_ENDPOINT_URL": server.endpoint_url,
        "S3_ACCESS_KEY": ACCESS_KEY,
        "S3_SECRET_KEY": SECRET_KEY,
        "REELFLOW_SITE_URL": origin,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "REELFLOW_VAR_DIR": str(work),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    import django

    django.setup()
    import django_rq
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    daphne = None
    try:
        django_rq.get_connection("default").flushdb()
        call_command("migrate", verbosity=0)
        call_command("collectstatic", "--noinput", verbosity=0)
        from core import s3
        from core.roles import Role
        from core.services import user_create_with_role
        from pipeline.models import Asset, Chunk, EncodeJob, JobState, Profile, Rendition, RenditionKind, Unit

        s3.buckets_ensure([settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA], cors_origins=[origin])
        publisher, _ = user_create_with_role(username="benchpub", role=Role.PUBLISHER)
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
        client = Client()
        client.force_login(publisher)
        cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

        log = (work / "daphne.log").open("wb")
        daphne = subprocess.Popen(
            [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        import requests

        for _ in range(300):
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{origin}/accounts/login/", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("daphne did not answer")

        rate = args.rate or 1000 / settings.REELFLOW_PROGRESS_INTERVAL_MS
        results: dict = {
            "fan_out": [],
            "rate_per_s": rate,
            "messages": args.messages,
            "machine": {"cpus": os.cpu_count()},
        }
        job_args = {
            "job_id": job.pk,
            "unit_id": unit_ids[-1],
            "rendition_id": Unit.objects.get(pk=unit_ids[-1]).rendition_id,
        }
        for n in clients:
            row = asyncio.run(
                fan_out(origin=origin, cookie=cookie, asset_id=asset.pk, job=job_args, clients=n,
                        messages=args.messages, rate=rate, env=env, web_pid=daphne.pid)
            )  # fmt: skip
            results["fan_out"].append(row)
            print(
                f"fan-out {n:>5} clients: p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, max {row['max_ms']} ms, "
                f"dropped {row['dropped']}, missed {row['missed']} of {n * args.messages} "
                f"(publisher failed to send {row['publish_failed']}); web process {row['web_cpu_us_per_frame']} µs CPU a frame "
                f"({args.messages} messages at {rate:g}/s; all connected in {row['connect_s']} s)"
            )
            for error in row["errors"]:
                print(f"    client error: {error}")
            if row["errors"] or row["missed"]:
                lines = (work / "daphne.log").read_text(errors="replace").splitlines()
                noise = ("WSCONNECT", "WSDISCONNECT", "HTTP GET", "HTTP POST")
                print(
                    "    daphne said:\n"
                    + "\n".join(line for line in lines if not any(n in line for n in noise))[-3000:]
                )
        at_500 = next((r for r in results["fan_out"] if r["clients"] == 500), None)
        if at_500 and at_500["p95_ms"] is not None:
            results["p95_ms_at_500_over_goal"] = round(at_500["p95_ms"] / 100, 2)
            print(f"p95 at 500 clients / 100 ms goal: {results['p95_ms_at_500_over_goal']}")

        if not args.skip_upload:
            path = work / "upload.mp4"
            make_upload_file(path, args.upload_mib)
            session = requests.Session()
            session.cookies.set(
                settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value
            )
            session.get(f"{origin}/studio/upload/").raise_for_status()  # sets the CSRF cookie
            browser, boto, api = [], [], []
            for run in range(args.runs):
                # Alternate which side goes first so neither always meets a warmer S3.
                sides = [("browser", browser), ("boto3", boto)]
                for name, times in sides if run % 2 == 0 else reversed(sides):
                    if name == "browser":
                        seconds, api_seconds = upload_browser_path(
                            origin=origin,
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
            size_mib = path.stat().st_size / MIB
            browser_mibs = size_mib / statistics.median(browser)
            boto_mibs = size_mib / statistics.median(boto)
            results["upload"] = {
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
                f"in parallel, {results['upload']['studio_api_s']} s of it in the studio API), boto3 upload_file "
                f"{boto_mibs:.1f} MiB/s; ratio {results['upload']['ratio']} (goal >= 0.8)"
            )
        for row in results["fan_out"]:
            row.pop("errors")
        print(json.dumps(results))
    finally:
        if daphne is not None:
            daphne.terminate()
            try:
                daphne.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daphne.kill()
        with contextlib.suppress(Exception):
            django_rq.get_connection("default").flushdb()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
