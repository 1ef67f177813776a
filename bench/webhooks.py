"""Webhooks benchmark: event recorded -> delivery received, against a direct signed POST of the
same body to the same receiver, in the same run.

    .venv/bin/python bench/webhooks.py [--events 50] [--encode-seconds 0]

(a) baseline: the bench process signs the body and POSTs it to a receiver on 127.0.0.1
    (what any sender pays: HTTP on loopback and the receiver).
(b) Reelflow: `event_record` in its own transaction, the delivery row, the RQ job queued on
    commit, a real `rqworker default` claiming it, signing, POSTing and recording the attempt;
    measured from the event's created_at to the receiver's clock at receipt.
With --encode-seconds N, also a real encode of an N-second clip (fast profile) on two workers
taking every queue, as the Procfile runs them: latency of each of its events while units run.

Prints medians and p95 and the ratio b/a, then one line with a JSON object of the figures.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
FINAL_JOB_STATES = {"published", "failed", "held_for_review", "rejected", "cancelled"}


class Receiver:
    def __init__(self) -> None:
        self.received: dict[str, float] = {}  # Reelflow-Delivery (or baseline id) -> receipt time
        self.event_ids: dict[str, int] = {}
        received, event_ids = self.received, self.event_ids

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.time()
                key = self.headers.get("Reelflow-Delivery", "")
                received[key] = now
                event_ids[key] = json.loads(body)["id"]
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for deliveries")
        time.sleep(0.01)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between events")
    parser.add_argument("--encode-seconds", type=int, default=0)
    return parser.parse_args()


def environment(args, work: Path):
    """The environment (the worker's too), SeaweedFS with --encode-seconds, Django set up and
    migrated on a temporary SQLite database; returns (env, the S3 server or None)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        "WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
        "REELFLOW_CHUNK_SECONDS": "4",
        "REELFLOW_SEGMENT_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    server = None
    if args.encode_seconds:
        from devservices.seaweed import start_seaweed

        server = start_seaweed(
            data_dir=work / "s3", access_key="bench-access", secret_key="bench-secret-key-123456"
        )
        env.update(
            S3_ENDPOINT_URL=server.endpoint_url,
            S3_ACCESS_KEY="bench-access",
            S3_SECRET_KEY="bench-secret-key-123456",
        )
    os.environ.update(env)
    import django

    django.setup()
    import django_rq
    from django.core.management import call_command

    django_rq.get_connection("default").flushdb()
    call_command("migrate", verbosity=0)
    return env, server


def direct_posts(args, receiver: Receiver, secret: str) -> list[float]:
    """(a) baseline: sign and POST the same kind of body directly, one at a time."""
    import requests

    from core.services import event_record
    from webhooks import payloads

    session = requests.Session()
    direct = []
    sample = event_record(type="job.published", subject=("pipeline.encodejob", 1), payload={"asset": 1})
    body = payloads.body_for(sample)
    for n in range(args.events):
        key = f"direct-{n}"
        started = time.time()
        headers = payloads.headers_for(
            event_type="job.published", delivery_key=key, body=body, secrets_=[secret]
        )
        session.post(receiver.url, data=body, headers=headers, timeout=10).raise_for_status()
        direct.append((receiver.received[key] - started) * 1000)
    return direct


def via_reelflow(args, env: dict, publisher, receiver: Receiver) -> list[float]:
    """(b) Reelflow: a long-running worker on the deliveries' queue, events recorded one by one."""
    from django.conf import settings
    from django.db import transaction

    from core.services import event_record
    from webhooks.models import Delivery, DeliveryState

    worker = subprocess.Popen(
        [PY, "manage.py", "rqworker", settings.WEBHOOKS_QUEUE],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        warm = event_record(type="job.created", subject=("pipeline.encodejob", 1), owner=publisher)
        wait_for(lambda: Delivery.objects.filter(event=warm, state=DeliveryState.DELIVERED).exists(), 120)
        recorded = []
        for _ in range(args.events):
            with transaction.atomic():
                recorded.append(
                    event_record(
                        type="job.published",
                        subject=("pipeline.encodejob", 1),
                        owner=publisher,
                        payload={"asset": 1},
                    )
                )
            time.sleep(args.gap)
        keys = {
            str(k): e for k, e in Delivery.objects.filter(event__in=recorded).values_list("key", "event_id")
        }
        wait_for(lambda: all(k in receiver.received for k in keys), 120)
        created = {e.pk: e.created_at.timestamp() for e in recorded}
        return [(receiver.received[k] - created[e]) * 1000 for k, e in keys.items()]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)


def summary_print(figures: dict) -> None:
    print(
        f"direct signed POST          p50 {figures['direct_post_ms_p50']} ms, p95 {figures['direct_post_ms_p95']} ms"
    )
    print(
        f"event -> receipt (idle)     p50 {figures['event_to_receipt_ms_p50']} ms, p95 {figures['event_to_receipt_ms_p95']} ms,"
        f" max {figures['event_to_receipt_ms_max']} ms  ({figures['ratio_p50']}x the direct POST)"
    )


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="reelflow-bench-webhooks-"))
    env, server = environment(args, work)
    from core.roles import Role
    from core.services import user_create_with_role
    from webhooks.services import endpoint_create

    receiver = Receiver()
    publisher, _ = user_create_with_role(username=f"bench{uuid.uuid4().hex[:6]}", role=Role.PUBLISHER)
    endpoint, secret = endpoint_create(owner=publisher, url=receiver.url)
    direct = direct_posts(args, receiver, secret)
    via = via_reelflow(args, env, publisher, receiver)
    figures = {
        "events": args.events,
        "direct_post_ms_p50": round(statistics.median(direct), 2),
        "direct_post_ms_p95": round(pct(direct, 0.95), 2),
        "event_to_receipt_ms_p50": round(statistics.median(via), 1),
        "event_to_receipt_ms_p95": round(pct(via, 0.95), 1),
        "event_to_receipt_ms_max": round(max(via), 1),
        "ratio_p50": round(statistics.median(via) / statistics.median(direct), 1),
    }
    summary_print(figures)
    if args.encode_seconds:
        figures.update(encode_latency(args.encode_seconds, publisher, receiver, env, work))
    if server is not None:
        server.stop()
    print(json.dumps(figures))
    return 0


def clip_make(path: Path, seconds: int) -> None:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=640x360:rate=25:duration={seconds}",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:sample_rate=48000:duration={seconds}",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "50",
            "-c:a",
            "aac",
            str(path),
        ],
        check=True,
    )


def encode_workers_start(env: dict) -> list[subprocess.Popen]:
    """Two workers taking every queue (the Procfile's order) and the deliveries worker."""
    from django.conf import settings

    from pipeline.queues import MEDIA as MEDIA_QUEUES

    queues = [
        *MEDIA_QUEUES,
        "backup",
        "security",
        "default",
    ]
    workers = [
        subprocess.Popen(
            [PY, "manage.py", "rqworker", *queues],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    # The Procfile's own deliveries worker, beside the two that encode.
    workers.append(
        subprocess.Popen([PY, "manage.py", "rqworker", settings.WEBHOOKS_QUEUE], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    )
    return workers


def encode_deliveries(key: str, receiver: Receiver, env: dict) -> list:
    """The encode from its object-created event to its end; its deliveries, once all received."""
    from django.conf import settings

    from core.models import Event
    from pipeline import events
    from pipeline.models import EncodeJob, IngestEvent
    from webhooks.models import Delivery

    workers = encode_workers_start(env)
    before = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    try:
        ingest = events.object_created_receive(
            created=events.ObjectCreated(bucket=settings.S3_BUCKET_INGEST, key=key),
            source=IngestEvent.Source.CLI,
        )
        deadline = time.monotonic() + 1800
        # Values, not members: the set of final states grows with the publish rules.
        while EncodeJob.objects.get(pk=ingest.job_id).state not in FINAL_JOB_STATES:
            if time.monotonic() > deadline:
                raise SystemExit("the encode did not finish")
            time.sleep(0.5)
        time.sleep(5)  # events that follow the final state (quality measurements)
        deliveries = list(Delivery.objects.filter(event_id__gt=before).select_related("event"))
        wait_for(lambda: all(str(d.key) in receiver.received for d in deliveries), 120)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=60)
    return deliveries


def encode_latency(seconds: int, publisher, receiver: Receiver, env: dict, work: Path) -> dict:
    """A real encode on two workers taking every queue (the Procfile's order): how long its events
    wait for a worker while units keep both busy."""
    from django.conf import settings

    from core import s3
    from pipeline.ladders import ladders_sync
    from pipeline.models import (
        AudioRenditionSpec,
        Profile,
        VideoRenditionSpec,
    )

    ladders_sync(Profile, VideoRenditionSpec, AudioRenditionSpec)
    s3.buckets_ensure([settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA, settings.S3_BUCKET_BACKUP])
    clip = work / "clip.mp4"
    clip_make(clip, seconds)
    key = f"uploads/{publisher.username}/bench-{uuid.uuid4().hex[:6]}.mp4"
    s3.client().upload_file(
        str(clip), settings.S3_BUCKET_INGEST, key, ExtraArgs={"Metadata": {"profile": "fast"}}
    )
    deliveries = encode_deliveries(key, receiver, env)
    by_type: dict[str, list[float]] = {}
    for d in deliveries:
        by_type.setdefault(d.event.type, []).append(
            (receiver.received[str(d.key)] - d.event.created_at.timestamp()) * 1000
        )
    everything = [v for values in by_type.values() for v in values]
    print(
        f"event -> receipt during a {seconds} s encode on 2 workers: p50 {statistics.median(everything):.0f} ms,"
        f" max {max(everything):.0f} ms over {len(everything)} events"
    )
    for type_, values in sorted(by_type.items()):
        print(
            f"  {type_:28} {statistics.median(values):8.0f} ms"
            + (f" (max {max(values):.0f})" if len(values) > 1 else "")
        )
    return {
        "encode_seconds": seconds,
        "encode_events": len(everything),
        "encode_event_to_receipt_ms_p50": round(statistics.median(everything)),
        "encode_event_to_receipt_ms_max": round(max(everything)),
    }


if __name__ == "__main__":
    sys.exit(main())
