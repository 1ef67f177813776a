"""Playback benchmark: byte ranges served through /play/ (daphne, token and policy checked on
every request, the range streamed from S3) against the same ranges fetched straight from S3 with
a presigned URL, in the same run.

    .venv/bin/python bench/playback.py [--requests 100] [--range-kib 512] [--file-mib 32]

(a) baseline: GET `Range: bytes=a-b` on a presigned S3 URL of the file (what a player pays
    without Reelflow in between: the studio player's way).
(b) Reelflow: the same ranges on the signed playback URL, through daphne (one process), the
    playback checks (two indexed queries) and the streamed S3 read.
Also the whole file once each way (MB/s). Ranges are at random offsets (seeded), one request at
a time. Prints medians, p95, the ratio b/a, then one line with a JSON object of the figures.
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed_get(session, url: str, headers: dict) -> tuple[float, int]:
    started = time.perf_counter()
    response = session.get(url, headers=headers, timeout=60)
    body = response.content
    elapsed = time.perf_counter() - started
    assert response.status_code in (200, 206), (url, response.status_code, body[:200])
    return elapsed, len(body)


def start_web(env: dict, work: Path) -> tuple[str, subprocess.Popen]:
    """daphne on a free port serving config.asgi with the bench's settings, once it answers."""
    import requests

    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    log = (work / "daphne.log").open("wb")
    web = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
                           cwd=ROOT, env={**env, "REELFLOW_SITE_URL": origin}, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{origin}/healthz", timeout=5).status_code in (200, 503):
                return origin, web
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or web.poll() is not None:
            web.kill()
            raise SystemExit(f"daphne did not start: {(work / 'daphne.log').read_text()[-2000:]}")
        time.sleep(0.3)


def measure(session, url: str, ranges: list[tuple[int, int]], *, size: int) -> dict:
    """Each range one at a time, then the whole file once."""
    times = []
    for first, last in ranges:
        elapsed, got = timed_get(session, url, {"Range": f"bytes={first}-{last}"})
        assert got == last - first + 1
        times.append(elapsed)
    whole, got = timed_get(session, url, {})
    assert got == size
    return {"median_ms": round(statistics.median(times) * 1000, 2), "p95_ms": round(pct(times, 0.95) * 1000, 2),
            "whole_file_mb_s": round(size / whole / 1e6, 1)}  # fmt: skip


def report(args, results: dict) -> None:
    a, b = results["s3_direct"], results["reelflow_play"]
    print(f"{args.requests} ranges of {args.range_kib} KiB from a {args.file_mib} MiB file, one at a time")
    print(f"(a) S3 presigned   median {a['median_ms']} ms  p95 {a['p95_ms']} ms  whole file {a['whole_file_mb_s']} MB/s")
    print(f"(b) /play/ daphne  median {b['median_ms']} ms  p95 {b['p95_ms']} ms  whole file {b['whole_file_mb_s']} MB/s")
    ratio = round(b["median_ms"] / a["median_ms"], 2)
    print(f"ratio b/a (median): {ratio}")
    print(json.dumps({"requests": args.requests, "range_kib": args.range_kib, "file_mib": args.file_mib, **results,
                      "ratio_median": ratio}))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--range-kib", type=int, default=512)
    parser.add_argument("--file-mib", type=int, default=32)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="reelflow-bench-playback-"))
    from devservices.seaweed import start_seaweed

    server = start_seaweed(data_dir=work / "s3", access_key="bench-access", secret_key="bench-secret-key-123456")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        "S3_ENDPOINT_URL": server.endpoint_url,
        "S3_ACCESS_KEY": "bench-access",
        "S3_SECRET_KEY": "bench-secret-key-123456",
        "REELFLOW_VAR_DIR": str(work),
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    import django

    django.setup()
    import requests
    from django.conf import settings
    from django.core.management import call_command

    from core import s3
    from core.roles import Role
    from core.services import user_create_with_role
    from delivery.services import playback_urls
    from pipeline.ladders import ladders_sync
    from pipeline.models import Asset, AudioRenditionSpec, EncodeJob, JobState, Profile, VideoRenditionSpec

    call_command("migrate", verbosity=0)
    (work / "static").mkdir(exist_ok=True)
    s3.buckets_ensure([settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA])
    ladders_sync(Profile, VideoRenditionSpec, AudioRenditionSpec)
    publisher, _ = user_create_with_role(username="benchpub", role=Role.PUBLISHER)
    asset = Asset.objects.create(publisher=publisher, title="Bench", source_bucket=settings.S3_BUCKET_INGEST,
                                 source_key="uploads/benchpub/x.mp4", state="ready", duration_s=600)  # fmt: skip
    folder = f"published/{asset.pk}/1"
    job = EncodeJob.objects.create(asset=asset, profile=Profile.objects.get(slug="fast"), chunk_seconds=4,
                                   segment_seconds=2, state=JobState.PUBLISHED,
                                   master_playlist_key=f"{folder}/master.m3u8")  # fmt: skip
    size = args.file_mib * 1024**2
    payload = random.Random(7).randbytes(size)
    s3.client().put_object(Bucket=settings.S3_BUCKET_MEDIA, Key=f"{folder}/h264-360p.mp4", Body=payload)
    s3.client().put_object(Bucket=settings.S3_BUCKET_MEDIA, Key=f"{folder}/master.m3u8", Body=b"#EXTM3U\n")

    origin, web = start_web(env, work)
    settings.SITE_URL = origin
    try:
        hls = playback_urls(asset=asset, job=job)["hls"]
        via_reelflow = hls.rsplit("/", 1)[0] + "/h264-360p.mp4"
        direct = s3.presign_get(settings.S3_BUCKET_MEDIA, f"{folder}/h264-360p.mp4", expires=3600)
        span = args.range_kib * 1024
        rng = random.Random(11)
        ranges = [(start := rng.randrange(0, size - span), start + span - 1) for _ in range(args.requests)]
        session = requests.Session()
        for url in (direct, via_reelflow):  # warm both paths (connections, caches, first imports)
            timed_get(session, url, {"Range": "bytes=0-1023"})
        results = {
            name: measure(session, url, ranges, size=size)
            for name, url in (("s3_direct", direct), ("reelflow_play", via_reelflow))
        }
    finally:
        web.terminate()
        web.wait(timeout=10)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
