"""Load: 500 websocket viewers + 20 concurrent studio uploads + a running encode, at once.

    .venv/bin/python bench/load.py [--minutes 5] [--viewers 500] [--uploaders 20] [--upload-mib 16]
                                   [--asgi-threads 32] [--ws-connect-timeout 30] [--nice 10]

Defaults are the settings under which this machine held the load (docs/benchmarks.md): with
daphne's own defaults (10 sync threads, 5 s websocket handshake) most of the 500 handshakes
timed out while the upload API calls held every thread.

All on this machine, against one daphne (config.asgi), two RQ workers (with the scheduler, as
the Procfile runs them), a SeaweedFS and a SQLite database of its own and Redis database 12
(BENCH_REDIS_URL to change it), for the whole window:

- viewers: N websocket clients signed in as the publisher, each on the asset page socket of
  the encode that is running (when it publishes, the bench starts the next one and the viewers
  move to its page, as a publisher opening the new asset would);
- a probe process sends 2 progress messages a second with a send time through the channel
  layer, as a worker does, to the running job's group: the viewers' receive times give the
  fan-out latency under this load (p50/p95/max);
- uploaders: M threads, each uploading a file again and again through the studio's path (start,
  signed part URLs, parts PUT to S3, complete): seconds per upload (p50/p95), MiB/s in total.
  The files are a video signature and noise, so each completed upload also starts a job that
  the workers refuse at probe ("not a media file") — ingest load, counted separately;
- encode: a generated 720p clip, `standard` profile, 4 s chunks, on the two workers;
- a page poller: the studio home page fetched once a second: p95.

Errors counted: failed or refused uploads, websocket connections that failed or were closed by
the server, probe messages not sent, page errors, an encode that did not publish. Prints a
summary and ONE line of JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_common import (  # noqa: E402
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
from progress_ws import HANDSHAKES_AT_ONCE, PY, free_port, percentile  # noqa: E402
from studio_upload import MIB, make_upload_file, upload_browser_path  # noqa: E402


def pct(values: list[float], q: float, scale: float = 1000) -> float | None:
    return round(scale * percentile(values, q), 1) if values else None


# --- The probe: progress messages with a send time, from another process -------------------


def probe(job_file: str, rate: float, stop_file: str) -> None:
    import django

    django.setup()
    from pipeline import progress

    sent = failed = 0
    interval = 1 / rate
    while not os.path.exists(stop_file):
        job_id = int(Path(job_file).read_text() or 0)
        if job_id:
            try:
                progress.publish_rollback_unsafe(job_id, {"kind": "progress", "unit": 0, "probe": True,
                                                          "sent_at": time.time()})  # fmt: skip
                sent += 1
            except Exception:  # noqa: BLE001 - counted
                failed += 1
        time.sleep(interval)
    print(json.dumps({"sent": sent, "failed": failed}), flush=True)


# --- Uploaders: a process of their own, so they do not slow the viewers' event loop -------


def upload_proc(
    origin: str, cookie_name: str, cookie_value: str, count: int, seconds: float, source: str, work: str
) -> None:
    import requests

    deadline = time.monotonic() + seconds
    data = Path(source).read_bytes()
    results = {"seconds": [], "errors": [], "bytes": 0}
    lock = threading.Lock()

    def uploader(index: int) -> None:
        session = requests.Session()
        session.cookies.set(cookie_name, cookie_value)
        session.get(f"{origin}/studio/upload/").raise_for_status()
        n = 0
        while time.monotonic() < deadline:
            path = Path(work) / f"up-{index}-{n}.mp4"
            path.write_bytes(data[:-16] + os.urandom(16))  # a different file each time
            try:
                took, _ = upload_browser_path(origin=origin, session=session, path=path, parallel=4)
                with lock:
                    results["seconds"].append(took)
                    results["bytes"] += len(data)
            except Exception as exc:  # noqa: BLE001 - counted
                with lock:
                    results["errors"].append(f"{type(exc).__name__}: {exc}"[:200])
            path.unlink()
            n += 1

    threads = [threading.Thread(target=uploader, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(results), flush=True)


# --- Viewers --------------------------------------------------------------------------------


async def viewer(
    origin: str, cookie: str, current: dict, slots: asyncio.Semaphore, stats: dict, stop: asyncio.Event
):
    import websockets

    headers = {"Cookie": cookie, "Origin": origin}
    while not stop.is_set():
        asset = current["asset"]
        url = origin.replace("http", "ws") + f"/ws/studio/assets/{asset}/"
        try:
            async with slots:
                ws = await websockets.connect(
                    url, additional_headers=headers, max_queue=None, open_timeout=120
                )
            stats["connects"] += 1
            try:
                while not stop.is_set() and current["asset"] == asset:
                    try:
                        raw = await asyncio.wait_for(ws.recv(), timeout=1)
                    except TimeoutError:
                        continue
                    message = json.loads(raw)
                    stats["messages"] += 1
                    if message.get("probe") and "sent_at" in message:
                        stats["latencies"].append(time.time() - message["sent_at"])
            finally:
                await ws.close()
            if not stop.is_set() and current["asset"] == asset:
                stats["dropped"] += 1
                stats["errors"].append("closed by the server")
        except asyncio.CancelledError:
            raise
        except websockets.ConnectionClosed as exc:
            if not stop.is_set():
                stats["dropped"] += 1
                stats["errors"].append(f"closed: {exc}"[:200])
        except Exception as exc:  # noqa: BLE001 - every failure is counted
            stats["dropped"] += 1
            stats["errors"].append(f"{type(exc).__name__}: {exc}"[:200])
            await asyncio.sleep(1)


async def viewers(origin, cookie, current, count, stats, stop_at):
    stop = asyncio.Event()
    slots = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    tasks = [asyncio.create_task(viewer(origin, cookie, current, slots, stats, stop)) for _ in range(count)]
    while time.monotonic() < stop_at:
        await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- Main -----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--viewers", type=int, default=500)
    parser.add_argument("--uploaders", type=int, default=20)
    parser.add_argument("--upload-mib", type=int, default=16)
    parser.add_argument("--clip-seconds", type=int, default=60)
    parser.add_argument("--asgi-threads", type=int, default=int(os.environ.get("ASGI_THREADS", 32)))
    parser.add_argument("--ws-connect-timeout", type=int, default=30, help="daphne's handshake timeout (s)")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the RQ workers (batch work)")
    parser.add_argument("--probe", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--upload-proc", help=argparse.SUPPRESS)
    return parser.parse_args()


class Platform:
    """SeaweedFS, a SQLite database, Django configured for them, a signed-in publisher, the clip
    to encode and the file to upload, one daphne and two niced RQ workers with the scheduler;
    stopped on exit (the probe told to stop too)."""

    def __init__(self, args) -> None:
        self.args = args
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Platform:
        from devservices.seaweed import start_seaweed

        nofile_raise()
        self.work = work = Path(tempfile.mkdtemp(prefix="reelflow-bench-load-"))
        self.stop_file = work / "stop"
        self.server = start_seaweed(data_dir=work / "s3", access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.env = {
            **web_env(work=work, endpoint_url=self.server.endpoint_url, origin=self.origin,
                      prefix="reelflow-bench-load", redis_default="redis://127.0.0.1:6379/12"),
            "REELFLOW_CHUNK_SECONDS": "4",
            "REELFLOW_SEGMENT_SECONDS": "2",
            # Threads for Django's sync code under daphne (asgiref's executor; default: 5 a CPU = 10
            # here). Each upload API call holds one while it talks to S3; see docs/benchmarks.md.
            "ASGI_THREADS": str(self.args.asgi_threads),
        }  # fmt: skip
        os.environ.update(self.env)
        django_setup_then(self._start, lambda: self.__exit__(None, None, None))
        return self

    def _start(self) -> None:
        from django.conf import settings

        from core.roles import Role
        from core.services import user_create_with_role

        args, work = self.args, self.work
        web_database(self.origin)
        publisher, _ = user_create_with_role(username="loadpub", role=Role.PUBLISHER)
        self.cookie_value = session_cookie_value(publisher)
        self.cookie = f"{settings.SESSION_COOKIE_NAME}={self.cookie_value}"
        self.clip = work / "encode.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={args.clip_seconds}",
             "-f", "lavfi", "-i", f"sine=frequency=440:duration={args.clip_seconds}", "-c:v", "libx264",
             "-preset", "ultrafast", "-g", "50", "-c:a", "aac", str(self.clip)],
            check=True, timeout=600,
        )  # fmt: skip
        self.upload_file = work / "upload.mp4"
        make_upload_file(self.upload_file, args.upload_mib)
        self._processes()
        daphne_wait(self.origin)

    def _processes(self) -> None:
        from pipeline.queues import MEDIA as MEDIA_QUEUES

        args, work, env = self.args, self.work, self.env
        daphne_log = (work / "daphne.log").open("wb")
        self.procs.append(subprocess.Popen([PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "--websocket_connect_timeout",
                                            str(args.ws_connect_timeout), "config.asgi:application"],
                                           cwd=ROOT, env=env, stdout=daphne_log, stderr=subprocess.STDOUT))  # fmt: skip
        for index in range(2):
            log = (work / f"worker-{index}.log").open("wb")
            self.procs.append(subprocess.Popen(
                ["nice", "-n", str(args.nice), PY, "manage.py", "rqworker", *MEDIA_QUEUES,
                 "default", "--with-scheduler"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            ))  # fmt: skip

    def __exit__(self, kind, exc, tb) -> None:
        self.stop_file.write_text("stop")
        processes_stop(self.procs, timeout=20)
        self.server.stop()


class Encodes:
    """The encodes, one after another: when one ends the next starts, and the viewers and the
    probe move to its job."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.list: list[dict] = []
        self.current = {"asset": 0}
        self.job_file = platform.work / "job-id"
        self.job_file.write_text("0")

    def start(self) -> None:
        from django.conf import settings

        from core import s3
        from pipeline import events
        from pipeline.models import IngestEvent

        key = f"uploads/loadpub/encode-{len(self.list)}/clip.mp4"
        s3.client().upload_file(
            str(self.platform.clip), settings.S3_BUCKET_INGEST, key, ExtraArgs={"Metadata": {"profile": "standard"}}
        )
        event = events.object_created_receive(created=events.ObjectCreated(bucket=settings.S3_BUCKET_INGEST, key=key),
                                              source=IngestEvent.Source.CLI)  # fmt: skip
        self.list.append({"job": event.job_id, "started": time.monotonic()})
        self.current["asset"] = event.job.asset_id
        self.job_file.write_text(str(event.job_id))

    def loop(self, deadline: float) -> None:
        import django.db

        from pipeline.models import EncodeJob, JobState

        encodes = self.list
        while time.monotonic() < deadline:
            job = EncodeJob.objects.get(pk=encodes[-1]["job"])
            if job.state in (JobState.PUBLISHED, JobState.HELD, JobState.FAILED, JobState.CANCELLED):
                encodes[-1].update(state=job.state, seconds=round(time.monotonic() - encodes[-1]["started"], 1),
                                   reason=job.failure_reason)  # fmt: skip
                self.start()
            time.sleep(1)
        django.db.connections.close_all()


def page_poller(platform: Platform, deadline: float, pages: dict) -> None:
    """The studio home page once a second until the deadline."""
    import requests
    from django.conf import settings

    session = requests.Session()
    session.cookies.set(settings.SESSION_COOKIE_NAME, platform.cookie_value)
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            ok = session.get(f"{platform.origin}/studio/", timeout=30).status_code == 200
        except requests.RequestException:
            ok = False
        pages["seconds"].append(time.monotonic() - t0)
        pages["errors"] += 0 if ok else 1
        time.sleep(max(0, 1 - (time.monotonic() - t0)))


def measure(platform: Platform, args) -> dict:
    """The whole window: encodes, the probe, the uploaders, the page poller and the viewers."""
    from django.conf import settings

    env, work = platform.env, platform.work
    encodes = Encodes(platform)
    encodes.start()
    deadline = time.monotonic() + args.minutes * 60
    probe_proc = subprocess.Popen([PY, __file__, "--probe", str(encodes.job_file), "2", str(platform.stop_file)], env=env,
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip

    uploaders_proc = subprocess.Popen(
        [PY, __file__, "--upload-proc", json.dumps({
            "origin": platform.origin, "cookie_name": settings.SESSION_COOKIE_NAME, "cookie_value": platform.cookie_value,
            "count": args.uploaders, "seconds": deadline - time.monotonic(), "source": str(platform.upload_file),
            "work": str(work)})],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip

    pages = {"seconds": [], "errors": 0}
    threads = [
        threading.Thread(target=page_poller, args=(platform, deadline, pages), daemon=True),
        threading.Thread(target=encodes.loop, args=(deadline,), daemon=True),
    ]
    ws_stats = {"connects": 0, "dropped": 0, "messages": 0, "latencies": [], "errors": []}
    started = time.monotonic()
    for thread in threads:
        thread.start()
    asyncio.run(viewers(platform.origin, platform.cookie, encodes.current, args.viewers, ws_stats, deadline))
    for thread in threads:
        thread.join(timeout=300)
    elapsed = time.monotonic() - started
    uploads = json.loads(uploaders_proc.communicate(timeout=600)[0].strip().splitlines()[-1])
    platform.stop_file.write_text("stop")
    probe_out = json.loads(probe_proc.communicate(timeout=30)[0].strip().splitlines()[-1])
    return {"elapsed": elapsed, "uploads": uploads, "probe": probe_out, "ws": ws_stats, "pages": pages,
            "encodes": encodes.list}  # fmt: skip


def results_of(args, raw: dict) -> dict:
    from pipeline.models import EncodeJob, JobState

    elapsed, uploads, probe_out = raw["elapsed"], raw["uploads"], raw["probe"]
    ws_stats, pages, encodes = raw["ws"], raw["pages"], raw["encodes"]
    last = EncodeJob.objects.get(pk=encodes[-1]["job"])
    encodes[-1].setdefault("state", f"{last.state} (still running at the end)")
    finished = [e for e in encodes if "seconds" in e]
    refused = EncodeJob.objects.filter(
        state=JobState.FAILED, failure_reason__contains="not a media file"
    ).count()

    results = {
        "minutes": round(elapsed / 60, 2),
        "machine": {"cpus": os.cpu_count()},
        "viewers": {
            "clients": args.viewers, "connects": ws_stats["connects"], "dropped": ws_stats["dropped"],
            "messages": ws_stats["messages"], "probe_sent": probe_out["sent"], "probe_failed": probe_out["failed"],
            "probe_received": len(ws_stats["latencies"]),
            "p50_ms": pct([x for x in ws_stats["latencies"]], 50), "p95_ms": pct(ws_stats["latencies"], 95),
            "max_ms": round(1000 * max(ws_stats["latencies"]), 1) if ws_stats["latencies"] else None,
        },
        "uploads": {
            "uploaders": args.uploaders, "mib_each": args.upload_mib, "done": len(uploads["seconds"]),
            "errors": len(uploads["errors"]), "p50_s": pct(uploads["seconds"], 50, 1),
            "p95_s": pct(uploads["seconds"], 95, 1),
            "mib_s_total": round(uploads["bytes"] / MIB / elapsed, 1),
            "jobs_refused_at_probe": refused,
        },
        "pages": {"requests": len(pages["seconds"]), "errors": pages["errors"], "p50_ms": pct(pages["seconds"], 50),
                  "p95_ms": pct(pages["seconds"], 95)},
        "encodes": encodes,
    }  # fmt: skip
    errors = (ws_stats["dropped"] + probe_out["failed"] + len(uploads["errors"]) + pages["errors"]
              + sum(1 for e in finished if e["state"] not in (JobState.PUBLISHED, JobState.HELD)))  # fmt: skip
    results["errors"] = errors
    return results


def summary_print(args, results: dict, raw: dict) -> None:
    v, u, p = results["viewers"], results["uploads"], results["pages"]
    print(f"load for {results['minutes']} min on {os.cpu_count()} CPUs:")
    print(f"  {args.viewers} viewers: {v['connects']} connections, {v['dropped']} dropped; probe messages "
          f"{v['probe_received']} received of {v['probe_sent']} x viewers sent; latency p50 {v['p50_ms']} ms, "
          f"p95 {v['p95_ms']} ms, max {v['max_ms']} ms")  # fmt: skip
    print(f"  {args.uploaders} uploaders: {u['done']} uploads of {args.upload_mib} MiB, {u['errors']} errors, "
          f"p50 {u['p50_s']} s, p95 {u['p95_s']} s each, {u['mib_s_total']} MiB/s in total")  # fmt: skip
    print(
        f"  studio page: {p['requests']} requests, {p['errors']} errors, p50 {p['p50_ms']} ms, p95 {p['p95_ms']} ms"
    )
    for e in results["encodes"]:
        print(
            f"  encode job {e['job']}: {e.get('state')} {('in ' + str(e['seconds']) + ' s') if 'seconds' in e else ''}"
        )
    print(f"  errors: {results['errors']}")
    for error in raw["ws"]["errors"][:3] + raw["uploads"]["errors"][:3]:
        print(f"    e.g. {error}")
    print(json.dumps(results))


def main() -> int:
    args = parse_args()
    if args.probe:
        probe(args.probe[0], float(args.probe[1]), args.probe[2])
        return 0
    if args.upload_proc:
        upload_proc(**json.loads(args.upload_proc))
        return 0
    with Platform(args) as platform:
        raw = measure(platform, args)
        results = results_of(args, raw)
        summary_print(args, results, raw)
    return 0 if results["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
