"""Time to watchable: from the publisher's upload to a player on the asset page (first playable)
and to the public package (published), as ratios to one ffmpeg producing the same ladder in
the same run; quality control's CPU against the encode's; how fast an unauthorized EC2 launch
is stopped while the encode runs; and a model of the time to published on bigger fleets.

    .venv/bin/python bench/publish.py [--duration 60] [--workers 2] [--profile standard] [--runs 1]
                                      [--control-queues "security webhooks default" ...]
                                      [--sweep-seconds N] [--launch-every 10] [--media-nice N]
                                      [--redis-url redis://127.0.0.1:6379/8] [--no-flower]

Everything runs as `make run` runs it, on this machine: daphne serving config.asgi (the studio
upload API and the security event intake), N media workers (`rqworker` on pipeline.queues.MEDIA,
at the Procfile's niceness unless --media-nice), one control worker per --control-queues
(default one on "security webhooks default"), `rqcron config.cron` (the periodic sweeps, the
security sweep every SECURITY_SWEEP_SECONDS or --sweep-seconds), SeaweedFS, a simulated cloud
(security.simcloud: moto, seeded with the demo fleet), a temporary SQLite database, a private
decoded-chunk cache folder and Redis database 8 (--redis-url, else BENCH_REDIS_URL; emptied at
the start). REELFLOW_QC_MODE=always and the shipped rule sets: the `standard` profile's
"Quality floor" rule makes the job wait for its quality measurements.

For each source, the pipeline benchmark's 720p25 testsrc2 clip (--duration s, media_bench.make_source)
and the shared sample flower.mp4 (found as tests/conftest.py's sample_path finds it):

(a) baseline: one ffmpeg, decode once, `split`, every rung with the units' encoder settings and
    the audio renditions (bench/pipeline.py's baseline()); timed before and after (b), averaged.
(b) the studio's upload path by HTTP, as studio-upload.js does it (start, signed parts PUT to S3,
    complete; the complete call starts the job through the object-created path). Times count
    from the client's first API call (upload start). First playable: the first `rendition.playable`
    event whose payload says `preview: true` (the assemble step wrote the preview the asset page
    plays; EncodeJob.preview_key is set with it), or the job's publication if no preview came
    first. Published: the `job.published` event.

QC CPU ratio: the job's measuring ffmpeg CPU (QualityTask.cpu_s) over its encoding units' ffmpeg
CPU (Unit.cpu_s, video and audio), as bench/quality.py counts them.

Detection, during the first source's encode only: every --launch-every seconds on average (each
gap drawn between half and one and a half times that, so that the launches meet the sweep's
cycle at every phase) two instances are launched in the simulated cloud. One boots an
unapproved image with no event sent: only the periodic sweep (refresh EC2, evaluate, the
`ec2-approved-amis` rule's stop) can catch it. The other is compliant, but launched by a
principal outside SECURITY_LAUNCH_ALLOWLIST, and its CloudTrail RunInstances record is POSTed to
daphne's /security/events/ec2/ at once: only the event path can catch it. A poller outside
Reelflow reads EC2 every 0.1 s; the detection time is from the launch call's return to EC2
answering "stopping" or "stopped" (the cloud's own event delivery delay is not part of it).
Reported: every launch, the median and the worst; the JSON's detect_sweep_s and detect_event_s
are the worst, and null when a launch was never stopped.

Model: the measured per-unit costs (CPU-s per pixel-frame by rung, the source decode rate from
an `ffmpeg -threads 1 -f null` decode of the source, audio per second, QC per frame by rung,
assemble per second, the fixed cost per unit, ingest, packaging and the publish tail) scaled to
720p25 titles of --titles minutes, chunked as pipeline.chunking.plan_for_fleet plans them for
the workers, queued in pipeline.scheduling.queue_order's order, and run by a simulation of that
many workers (--per-machine of them per machine, one CPU each, the decoded-chunk cache per
machine within this machine's budget) taking work in the media workers' queue order: package,
assemble, encode, quality. It prints object-created -> published for each fleet size, and the
model's figure for the measured job beside the measured one.

Ends with one line holding a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import ast
import base64
import contextlib
import hashlib
import heapq
import importlib.util
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable

from media_bench import children_cpu, make_source, stop_workers  # noqa: E402 - beside this script

ACCESS_KEY, SECRET_KEY = "bench-access", "bench-secret-key-123456"
EVENTS_TOKEN = "bench-security-events-token"  # noqa: S105 - a local benchmark
INTRUDER = "arn:aws:iam::123456789012:user/intruder"
ALLOWLIST = "arn:aws:iam::123456789012:role/reelflow-*"
GOALS = {"first_playable_ratio": 0.4, "published_ratio": 1.5, "qc_cpu_ratio": 0.35, "detect_sweep_s": 15.0,
         "detect_event_s": 2.0}  # fmt: skip
MIB = 1024**2


def _bench_pipeline():
    """bench/pipeline.py as a module (its name is taken by the `pipeline` package)."""
    spec = importlib.util.spec_from_file_location("bench_pipeline", ROOT / "bench" / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample_path(name: str) -> Path | None:
    """tests/conftest.py's lookup: $REELFLOW_SAMPLES_DIR, ../shared/samples, /work/shared/samples."""
    for folder in filter(None, [os.environ.get("REELFLOW_SAMPLES_DIR", ""), str(ROOT.parent / "shared" / "samples"),
                                "/work/shared/samples"]):  # fmt: skip
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile_nice() -> int:
    """The niceness the Procfile starts media workers at (`nice -n N` on its worker line), else 0."""
    with contextlib.suppress(OSError):
        for line in (ROOT / "Procfile").read_text().splitlines():
            if line.startswith("worker:"):
                found = re.search(r"\bnice\s+-n\s*(-?\d+)", line)
                return int(found.group(1)) if found else 0
    return 0


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def rnd(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# --- The studio's upload path ----------------------------------------------------------------


def workers_ready(workers: list[subprocess.Popen], timeout: float) -> float:
    """Seconds until each worker has registered with RQ and been seen idle (its start-up and
    warm-up done). Not all at once: the control workers run the sweeps as soon as they start."""
    import django_rq
    from rq import Worker

    started = time.monotonic()
    pids = {w.pid for w in workers}
    seen: set[int] = set()
    states: dict[int, str] = {}
    while time.monotonic() - started < timeout:
        if any(w.poll() is not None for w in workers):
            raise RuntimeError("a worker exited while starting (see its log)")
        for worker in Worker.all(connection=django_rq.get_connection("default")):
            if worker.pid in pids:
                states[worker.pid] = worker.get_state()
                if states[worker.pid] == "idle":
                    seen.add(worker.pid)
        if seen == pids:
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"workers not all seen idle within {timeout:g} s: states by pid {states}, expected {sorted(pids)}")


def upload_studio(*, origin: str, session, path: Path, profile: str, title: str, parallel: int) -> dict:
    """What studio-upload.js does: start (the first part URLs come signed with it), sign the
    rest in batches, PUT the parts to S3 in parallel, complete. Times are time.time()."""
    import requests

    data_head = path.open("rb").read(MIB)
    size = path.stat().st_size
    api = {"X-CSRFToken": session.cookies["csrftoken"], "Content-Type": "application/json"}
    started_at = time.time()
    answer = session.post(f"{origin}/studio/uploads/", headers=api, data=json.dumps({
        "filename": path.name, "size": size, "lastModified": int(path.stat().st_mtime * 1000),
        "fingerprint": hashlib.sha256(data_head).hexdigest(), "contentType": "video/mp4", "title": title,
        "profile": profile, "head": base64.b64encode(data_head[:1024]).decode(),
    }))  # fmt: skip
    answer.raise_for_status()
    upload = answer.json()
    part_size, total = upload["partSize"], upload["partsTotal"]
    urls = {int(n): u for n, u in upload.get("partUrls", {}).items()}
    missing = [n for n in range(1, total + 1) if n not in urls]
    for first in range(0, len(missing), 20):
        signed = session.post(origin + upload["partsUrl"], headers=api, data=json.dumps({"parts": missing[first:first + 20]}))
        signed.raise_for_status()
        urls.update({int(n): u for n, u in signed.json()["urls"].items()})
    local = threading.local()

    def put(number: int) -> None:
        with path.open("rb") as f:
            f.seek((number - 1) * part_size)
            body = f.read(part_size)
        if not hasattr(local, "http"):
            local.http = requests.Session()
        local.http.put(urls[number], data=body, timeout=300).raise_for_status()

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(put, range(1, total + 1)))
    parts_done = time.time()
    done = session.post(origin + upload["completeUrl"], headers=api, data="{}")
    done.raise_for_status()
    return {"started_at": started_at, "parts_done_at": parts_done, "completed_at": time.time(),
            "asset": done.json()["asset"], "bytes": size}  # fmt: skip


# --- Detection: launches in the simulated cloud while the encode runs ----------------------


@dataclass
class Launch:
    path: str  # "sweep" | "event"
    instance: str
    launched: float  # monotonic, when run_instances returned
    stopped: float | None = None
    posted_ms: float | None = None  # the event POST's round trip

    @property
    def seconds(self) -> float | None:
        return None if self.stopped is None else self.stopped - self.launched


class Detection:
    """Launches every `every` s until stopped; a poller outside Reelflow watches EC2."""

    def __init__(self, *, endpoint: str, origin: str, every: float):
        self.endpoint, self.origin, self.every = endpoint, origin, every
        self.launches: list[Launch] = []
        self.lock = threading.Lock()
        self.launching = threading.Event()
        self.done = threading.Event()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._launcher, daemon=True),
                        threading.Thread(target=self._poller, daemon=True)]  # fmt: skip

    def start(self) -> None:
        self.launching.set()
        for thread in self.threads:
            thread.start()

    def stop_launching(self) -> None:
        self.launching.clear()

    def wait_all_stopped(self, timeout: float) -> None:
        """Once the launcher is done (a launch in flight when the job ended is still watched),
        until every instance launched is stopped or `timeout` s have passed."""
        self.launching.clear()
        self.threads[0].join(timeout=120)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(launch.stopped is not None for launch in self.launches):
                    break
            time.sleep(0.2)
        self.done.set()
        self.threads[1].join(timeout=30)

    def _launcher(self) -> None:
        import random

        import requests

        from security import simcloud
        from security.services.ec2_events import CLOUDTRAIL_CALL

        ec2 = simcloud.ec2_client(self.endpoint)
        http = requests.Session()
        # Gaps drawn between half and one and a half times `every` (seeded): launches at a fixed
        # period would meet a sweep of the same period at one phase only, and measure one delay.
        gaps = random.Random(20)  # noqa: S311 - spacing, not secrets
        n = 0
        next_at = time.monotonic()
        while self.launching.is_set() and not self.done.is_set():
            try:
                # An intruder's own image, no event sent: the sweep's `ec2-approved-amis` stops it.
                instance = simcloud.instance_launch(
                    ec2, image_id=simcloud.UNAPPROVED_AMI, tags={**simcloud.COMPLIANT_TAGS, "Name": f"bench-sweep-{n}"}
                )
                with self.lock:
                    self.launches.append(Launch("sweep", instance, time.monotonic()))
                # A compliant instance launched by a principal outside the allowlist, announced
                # by its CloudTrail record at once: only the event intake can stop it.
                instance = simcloud.instance_launch(ec2, tags={**simcloud.COMPLIANT_TAGS, "Name": f"bench-event-{n}"})
                launch = Launch("event", instance, time.monotonic())
                with self.lock:
                    self.launches.append(launch)
                body = {
                    "version": "0", "id": f"eb-bench-{n}", "detail-type": CLOUDTRAIL_CALL, "source": "aws.ec2",
                    "account": "123456789012", "region": "us-east-1",
                    "detail": {"eventVersion": "1.08", "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
                               "userIdentity": {"type": "IAMUser", "arn": INTRUDER, "accountId": "123456789012"},
                               "awsRegion": "us-east-1", "eventID": f"bench-{n}-{instance}", "eventType": "AwsApiCall",
                               "responseElements": {"instancesSet": {"items": [{"instanceId": instance}]}}},
                }  # fmt: skip
                t = time.monotonic()
                answer = http.post(f"{self.origin}/security/events/ec2/", json=body, timeout=60,
                                   headers={"Authorization": f"Bearer {EVENTS_TOKEN}"})  # fmt: skip
                launch.posted_ms = (time.monotonic() - t) * 1000
                if answer.status_code != 200:
                    self.errors.append(f"event intake answered {answer.status_code}: {answer.text[:200]}")
            except Exception as exc:  # noqa: BLE001 - reported with the figures
                self.errors.append(f"launch {n}: {type(exc).__name__}: {exc}"[:300])
            n += 1
            next_at += self.every * gaps.uniform(0.5, 1.5)
            while self.launching.is_set() and time.monotonic() < next_at:
                time.sleep(0.1)

    def _poller(self) -> None:
        from security import simcloud

        ec2 = simcloud.ec2_client(self.endpoint)
        while not self.done.is_set():
            with self.lock:
                pending = {launch.instance: launch for launch in self.launches if launch.stopped is None}
            if pending:
                try:
                    answer = ec2.describe_instances(InstanceIds=list(pending))
                    now = time.monotonic()
                    for reservation in answer["Reservations"]:
                        for instance in reservation["Instances"]:
                            if instance["State"]["Name"] in ("stopping", "stopped"):
                                pending[instance["InstanceId"]].stopped = now
                except Exception as exc:  # noqa: BLE001
                    self.errors.append(f"poll: {type(exc).__name__}: {exc}"[:300])
            time.sleep(0.1)

    def figures(self) -> dict:
        out = {}
        for path in ("sweep", "event"):
            launches = [launch for launch in self.launches if launch.path == path]
            seconds = [launch.seconds for launch in launches if launch.seconds is not None]
            out[path] = {
                "launches": len(launches), "stopped": len(seconds), "seconds": [round(s, 2) for s in seconds],
                "median_s": rnd(med(seconds)), "max_s": rnd(max(seconds)) if seconds else None,
                "post_ms_median": rnd(med([launch.posted_ms for launch in launches if launch.posted_ms is not None]), 1),
            }  # fmt: skip
        out["errors"] = self.errors[:5]
        return out


# --- One job through the studio ------------------------------------------------------------


def event_times(job) -> dict[str, float]:
    """The job's milestones (time.time()): the first of each event type, and the first
    playable-with-preview."""
    from core.models import Event

    created = Event.objects.filter(type="job.created", subject_id=str(job.pk)).order_by("id").first()
    times: dict[str, float] = {}
    for event in Event.objects.filter(subject_type=created.subject_type, subject_id=str(job.pk)).order_by("id"):
        at = event.created_at.timestamp()
        times.setdefault(event.type, at)
        if event.type == "rendition.playable" and event.payload.get("preview"):
            times.setdefault("preview", at)
        if event.type == "rendition.ready":
            times[f"ready:{event.payload.get('rendition')}"] = at
    return times


def log_lines(logs: list[Path], offsets: list[int]) -> list[str]:
    lines = []
    for path, offset in zip(logs, offsets, strict=True):
        with path.open("rb") as f:
            f.seek(offset)
            lines += f.read().decode(errors="replace").splitlines()
    return lines


def steps_from_logs(lines: list[str], job_id: int) -> dict:
    """Assemble wall time per rendition and the package step's, from the media workers' logs."""
    assembled, package_ms = {}, None
    for line in lines:
        found = re.search(r"assembled (\S+): elapsed at each phase's end (\{.*\})", line)
        if found:
            with contextlib.suppress(ValueError, SyntaxError):
                assembled[found.group(1)] = max(ast.literal_eval(found.group(2)).values()) / 1000
        found = re.search(rf"job {job_id} packaged: ffmpeg (\d+) ms, .* (\d+) ms$", line)
        if found:
            package_ms = int(found.group(1)) + int(found.group(2))
    return {"assemble_s": assembled, "package_s": None if package_ms is None else package_ms / 1000}


def run_job(*, source: Path, label: str, args, origin: str, cookie: tuple[str, str], logs: list[Path],
            detection: Detection | None) -> dict:  # fmt: skip
    import requests
    from django.conf import settings

    from pipeline.models import EncodeJob, JobState, QualityTask, Unit

    session = requests.Session()
    session.cookies.set(*cookie)
    session.get(f"{origin}/studio/upload/", timeout=60).raise_for_status()  # the page sets the CSRF cookie
    offsets = [path.stat().st_size for path in logs]
    load0 = os.getloadavg()[0]
    try:
        up = upload_studio(origin=origin, session=session, path=source, profile=args.profile, title=f"bench {label}",
                           parallel=settings.STUDIO_UPLOAD_PARALLEL_PARTS)  # fmt: skip
        job = EncodeJob.objects.filter(asset_id=up["asset"]).order_by("-pk").first()
        if detection is not None:  # launches from the job's start to its publication
            detection.start()
        t0 = up["started_at"]
        print(f"  [{label}] uploaded {up['bytes'] / MIB:.1f} MiB in {up['completed_at'] - t0:.1f} s "
              f"(parts {up['parts_done_at'] - t0:.1f} s); job {job.pk}", flush=True)  # fmt: skip
        deadline = time.monotonic() + args.timeout
        last_report = time.monotonic()
        seen_preview = False
        ended = (JobState.PUBLISHED, JobState.HELD, JobState.FAILED, JobState.CANCELLED, JobState.REJECTED)
        while True:
            job.refresh_from_db()
            if not seen_preview and job.preview_key:
                seen_preview = True
                print(f"  [{label}] preview written after {time.time() - t0:.1f} s: {job.preview_key}", flush=True)
            if job.state in ended:
                break
            if time.monotonic() - last_report > 15:
                units = Unit.objects.filter(job=job)
                tasks = QualityTask.objects.filter(job=job)
                print(f"  [{label}] {time.time() - t0:.0f} s: {job.state}, units {units.filter(state='done').count()}/"
                      f"{units.count()}, measurements {tasks.filter(state='done').count()}/{tasks.count()}"
                      + (f", launches stopped {sum(1 for x in detection.launches if x.stopped)}/{len(detection.launches)}"
                         if detection else ""), flush=True)  # fmt: skip
                last_report = time.monotonic()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: job {job.pk} not ended after {args.timeout:g} s (state {job.state})")
            time.sleep(0.2)
    finally:
        if detection is not None:
            detection.stop_launching()
    if detection is not None:
        detection.wait_all_stopped(timeout=args.detect_timeout)
    if job.state != JobState.PUBLISHED:
        raise RuntimeError(f"{label}: job {job.pk} ended {job.state}: {job.failure_reason}")
    times = event_times(job)
    units = list(Unit.objects.filter(job=job).select_related("rendition", "chunk"))
    tasks = list(QualityTask.objects.filter(job=job).select_related("rendition", "chunk"))
    unit_cpu = sum(u.cpu_s or 0 for u in units)
    qc_cpu = sum(t.cpu_s or 0 for t in tasks)
    published = times["job.published"] - t0
    preview = times.get("preview")
    first_playable = (preview - t0) if preview is not None and preview < times["job.published"] else published
    starts = [u.started_at.timestamp() for u in units if u.started_at]
    ends = [u.finished_at.timestamp() for u in units if u.finished_at]
    qc_ends = [t.finished_at.timestamp() for t in tasks if t.finished_at]
    steps = steps_from_logs(log_lines(logs, offsets), job.pk)
    marks = {
        "upload done": up["completed_at"] - t0, "job created": times["job.created"] - t0,
        "first unit started": min(starts) - t0, "first playable (preview)": (preview - t0) if preview else None,
        "last unit done": max(ends) - t0, "packaged": times.get("job.packaged", math.nan) - t0,
        "last measurement done": (max(qc_ends) - t0) if qc_ends else None, "published": published,
    }  # fmt: skip
    print(f"  [{label}] timeline (s from upload start): "
          + ", ".join(f"{k} {v:.1f}" for k, v in sorted(((k, v) for k, v in marks.items() if v is not None),
                                                        key=lambda kv: kv[1])), flush=True)  # fmt: skip
    print(f"  [{label}] chunk plan: {(job.chunk_plan or {}).get('summary', '?')}; {len(units)} units, "
          f"{len(tasks)} measurements; CPU-s units {unit_cpu:.1f}, QC {qc_cpu:.1f}", flush=True)  # fmt: skip
    return {
        "job": job, "t0": t0, "first_playable_s": first_playable, "published_s": published,
        "preview": preview is not None and preview < times["job.published"],
        "upload_s": up["completed_at"] - t0, "created_s": times["job.created"] - t0, "unit_cpu_s": unit_cpu,
        "qc_cpu_s": qc_cpu, "units": len(units), "tasks": len(tasks), "steps": steps, "times": times,
        "load": [round(load0, 1), round(os.getloadavg()[0], 1)], "chunk_plan": (job.chunk_plan or {}).get("summary", ""),
    }  # fmt: skip


# --- The model ------------------------------------------------------------------------------


@dataclass
class Costs:
    """What the measured job cost, per unit of work, for the simulation."""

    fps: Fraction
    segment_seconds: int
    src_w: int
    src_h: int
    frame_bytes: int | None
    rungs: list[dict]  # name, codec, width, height, enc (CPU-s / pixel-frame), qc (CPU-s / frame), assemble (s / title-s)
    audio: list[dict]  # name, cpu (CPU-s / title-s), assemble (s / title-s)
    decode: float  # CPU-s per source pixel-frame
    write: float  # CPU-s per source pixel-frame to keep the frames (0: inside the decoding rung's rate)
    fixed_s: float  # per unit and per measurement
    ingest_s: float  # object-created -> first unit started, less the scene analysis
    scene_cpu_per_cut: float | None
    package_s: float
    tail_s: float  # the later of packaged and the last measurement -> published
    qc: bool
    notes: list[str] = field(default_factory=list)


def decode_rate(source: Path) -> float:
    """CPU-s per pixel-frame of decoding the source as a unit does (one thread)."""
    from pipeline import ffmpeg as rf_ffmpeg

    info = rf_ffmpeg.probe(str(source))
    cpu0 = children_cpu()
    subprocess.run(["ffmpeg", "-v", "error", "-threads", "1", "-i", str(source), "-an", "-f", "null", "-"], check=True)
    frames = round(info.video.duration_s * float(info.video.fps)) if info.video.duration_s else None
    frames = frames or round(info.duration * float(info.video.fps))
    return (children_cpu() - cpu0) / (info.video.width * info.video.height * frames)


def measured_costs(result: dict, *, decode: float) -> Costs:
    from django.conf import settings

    from pipeline import decoded_cache
    from pipeline.media import planned_fps, video_info_from_json
    from pipeline.models import Artifact, QualityTask, Rendition, Unit

    bench_pipeline = _bench_pipeline()
    job = result["job"]
    video = video_info_from_json(job.asset.probe["video"])
    fps = planned_fps(video)
    title_s = sum(job.chunks.values_list("frame_count", flat=True)) / float(fps)
    src_px = video.width * video.height
    how = {int(a.step.removeprefix("encode_unit:")): a.inputs.get("decoded_from", "source")
           for a in Artifact.objects.filter(job=job, kind=Artifact.Kind.UNIT)}  # fmt: skip
    waits = bench_pipeline.unit_waits(job)
    units = list(Unit.objects.filter(job=job).select_related("rendition", "chunk"))
    tasks = list(QualityTask.objects.filter(job=job).select_related("rendition", "chunk"))
    notes = []

    def pf(unit) -> int:
        return unit.rendition.width * unit.rendition.height * unit.chunk.frame_count

    read_rate: dict[str, float] = {}
    for rendition in {u.rendition.name for u in units if u.chunk_id}:
        readers = [u for u in units if u.chunk_id and u.rendition.name == rendition and how.get(u.pk) == "cache" and u.cpu_s]
        if readers:
            read_rate[rendition] = statistics.median(u.cpu_s / pf(u) for u in readers)
    # Keeping the frames: what a writer spends beyond its rung's reading rate and the decode,
    # where its rung also has readers; else it stays inside the decoding rung's rate.
    extra = [(u.cpu_s - read_rate[u.rendition.name] * pf(u) - decode * src_px * u.chunk.frame_count) / (src_px * u.chunk.frame_count)
             for u in units if u.chunk_id and u.cpu_s and how.get(u.pk) == "source, cached" and u.rendition.name in read_rate]  # fmt: skip
    write = max(0.0, statistics.median(extra)) if extra else 0.0
    if not extra:
        notes.append("keeping decoded frames: no rung both wrote and read them, so the cost is inside the decoding rung's rate")
    rungs = []
    for rendition in Rendition.objects.filter(job=job, kind="video").order_by("height"):
        mine = [u for u in units if u.rendition_id == rendition.pk and u.cpu_s]
        if rendition.name in read_rate:
            enc = read_rate[rendition.name]
        else:  # every unit of this rung decoded: take the decode (and the keeping) off
            enc = statistics.median(
                (u.cpu_s - (decode + (write if how.get(u.pk) == "source, cached" else 0)) * src_px * u.chunk.frame_count) / pf(u)
                for u in mine
            )  # fmt: skip
        qc = [t.cpu_s / t.chunk.frame_count for t in tasks if t.rendition_id == rendition.pk and t.cpu_s]
        assemble = result["steps"]["assemble_s"].get(rendition.name)
        if assemble is None:
            notes.append(f"{rendition.name}: no assemble time in the logs, taken as 0")
        rungs.append({"name": rendition.name, "codec": rendition.params["codec"], "width": rendition.width,
                      "height": rendition.height, "enc": enc, "qc": statistics.median(qc) if qc else 0.0,
                      "assemble": (assemble or 0.0) / title_s})  # fmt: skip
    audio = []
    times = result["times"]
    for rendition in Rendition.objects.filter(job=job, kind="audio").order_by("name"):
        unit = next(u for u in units if u.rendition_id == rendition.pk)
        ready = times.get(f"ready:{rendition.name}")
        assemble = max(0.0, ready - unit.finished_at.timestamp()) if ready and unit.finished_at else 0.0
        audio.append({"name": rendition.name, "cpu": (unit.cpu_s or 0) / title_s, "assemble": assemble / title_s})
    fixed = [(u.wall_s - u.ffmpeg_s - waits.get(u.pk, 0.0)) for u in units if u.wall_s and u.ffmpeg_s]
    scene = (job.chunk_plan or {}).get("scene", {})
    scene_wall = scene.get("wall_s") or 0.0 if scene.get("status") == "analysed" else 0.0
    scanned = scene.get("boundaries_scanned") or 0
    per_cut = (scene.get("cpu_s") or 0) / scanned if scene.get("status") == "analysed" and scanned else None
    if per_cut is None:
        notes.append(f"scene analysis not run in the measured job ({scene.get('reason') or scene.get('status')}): "
                     f"left out of the model (bounded by REELFLOW_SCENE_TIMEOUT_S = {settings.REELFLOW_SCENE_TIMEOUT_S:g} s)")  # fmt: skip
    first_start = min(u.started_at.timestamp() for u in units if u.started_at)
    last_qc = max((t.finished_at.timestamp() for t in tasks if t.finished_at), default=0.0)
    packaged = times.get("job.packaged", times["job.published"])
    frame_size = decoded_cache.frame_bytes(pix_fmt=video.pix_fmt, width=video.width, height=video.height)
    return Costs(
        fps=fps, segment_seconds=job.segment_seconds, src_w=video.width, src_h=video.height,
        frame_bytes=frame_size if settings.REELFLOW_DECODED_CACHE_MB > 0 else None, rungs=rungs, audio=audio,
        decode=decode, write=write, fixed_s=statistics.median(fixed) if fixed else 0.0,
        ingest_s=max(0.0, first_start - times["job.created"] - scene_wall), scene_cpu_per_cut=per_cut,
        package_s=result["steps"]["package_s"] or 0.0, tail_s=max(0.0, times["job.published"] - max(packaged, last_qc)),
        qc=bool(tasks), notes=notes,
    )  # fmt: skip


def simulate(c: Costs, *, title_s: float, workers: int, per_machine: int, budget: int, wait_limit: float) -> dict:
    """Object-created -> published (and first playable) for a title of ``title_s`` seconds on
    ``workers`` workers, one CPU each, ``per_machine`` to a machine."""
    from django.conf import settings

    from pipeline import chunking, scheduling
    from pipeline.ladders import AUDIO_COST_PER_S, CODEC_COST

    plan = chunking.plan_for_fleet(
        duration_s=title_s, fps=c.fps, segment_seconds=c.segment_seconds,
        max_chunk_seconds=settings.REELFLOW_CHUNK_SECONDS, min_segments=settings.REELFLOW_MIN_CHUNK_SEGMENTS,
        slots=workers, chunks_per_slot=settings.REELFLOW_CHUNKS_PER_SLOT,
        scene_window=max(0, settings.REELFLOW_SCENE_WINDOW_SEGMENTS),
    )  # fmt: skip
    chunks = plan.chunks()
    movable = [o for o in chunking.scene_candidates(plan, window=max(0, settings.REELFLOW_SCENE_WINDOW_SEGMENTS)) if len(o) > 1]
    cores = os.cpu_count() or 1
    scene_s = min(settings.REELFLOW_SCENE_TIMEOUT_S, c.scene_cpu_per_cut * len(movable) / cores) if c.scene_cpu_per_cut and movable else 0.0
    # The units, priced as job_plan prices them, in the order _queue_order gives them: the
    # first playable set (the rung nearest REELFLOW_PREVIEW_HEIGHT from below, the audio) ahead.
    heights = sorted((rung["height"], ri) for ri, rung in enumerate(c.rungs))
    low = [ri for height, ri in heights if height <= settings.REELFLOW_PREVIEW_HEIGHT]
    ahead = settings.REELFLOW_PREVIEW_HEIGHT > 0 and bool(heights)
    preview_rung = (low[-1] if low else heights[0][1]) if ahead else None
    work, info = [], {}
    for ri, rung in enumerate(c.rungs):
        for chunk in chunks:
            key = len(info)
            info[key] = ("v", ri, chunk)
            work.append(scheduling.Work(key=key, cost=rung["width"] * rung["height"] * CODEC_COST.get(rung["codec"], 1.0) * chunk.frame_count,
                                        chunk=chunk.index, decode_cost=chunk.frame_count * c.src_w * c.src_h * scheduling.DECODE_SHARE,
                                        first=ri == preview_rung))  # fmt: skip
    for ai, _ in enumerate(c.audio):
        key = len(info)
        info[key] = ("a", ai, None)
        work.append(scheduling.Work(key=key, cost=title_s * AUDIO_COST_PER_S, first=ahead))
    shared = c.frame_bytes is not None and budget > 0
    queue = deque(scheduling.queue_order(work, workers=workers, shared_decode=shared))
    renditions = [("v", i) for i in range(len(c.rungs))] + [("a", i) for i in range(len(c.audio))]
    left = {r: (len(chunks) if r[0] == "v" else 1) for r in renditions}
    last_end: dict = {}
    in_queue = Counter(chunk.index for kind, _, chunk in info.values() if kind == "v")
    machines = -(-workers // per_machine)
    cache = [dict() for _ in range(machines)]  # chunk -> when its frames are complete on that machine
    used = [0] * machines
    assemble_q: list = []  # (available at, rendition)
    qc_q: list = []  # (available at, seq, seconds)
    seq = 0
    ready: dict = {}
    package_at = package_end = None
    qc_end = 0.0
    start = c.ingest_s + scene_s
    lanes = [(start, w) for w in range(workers)]
    heapq.heapify(lanes)
    busy = 0.0
    decoded = {"cache": 0, "wrote": 0, "self": 0, "waited_s": 0.0}
    while lanes:
        t, w = heapq.heappop(lanes)
        m = w // per_machine
        if package_end is None and package_at is not None and package_at <= t:
            package_end = end = t + c.package_s
        elif assemble_q and assemble_q[0][0] <= t:
            _, r = heapq.heappop(assemble_q)
            spec = c.rungs[r[1]] if r[0] == "v" else c.audio[r[1]]
            end = t + spec["assemble"] * title_s
            ready[r] = end
            if r[0] == "v" and c.qc:
                for chunk in chunks:
                    seq += 1
                    heapq.heappush(qc_q, (end, seq, spec["qc"] * chunk.frame_count + c.fixed_s))
            if len(ready) == len(renditions):
                package_at = max(ready.values())
        elif queue:
            kind, index, chunk = info[queue.popleft()]
            if kind == "a":
                seconds = c.audio[index]["cpu"] * title_s + c.fixed_s
            else:
                rung = c.rungs[index]
                pixel_frames = rung["width"] * rung["height"] * chunk.frame_count
                src = c.src_w * c.src_h * chunk.frame_count
                seconds = rung["enc"] * pixel_frames + c.fixed_s
                in_queue[chunk.index] -= 1
                held = cache[m].get(chunk.index)
                if held is not None and held <= t:
                    decoded["cache"] += 1
                elif held is not None and held - t <= wait_limit:
                    decoded["cache"] += 1
                    decoded["waited_s"] += held - t
                    seconds += held - t
                else:
                    seconds += c.decode * src
                    size = (c.frame_bytes or 0) * chunk.frame_count
                    if shared and held is None and used[m] + size <= budget:
                        seconds += c.write * src
                        cache[m][chunk.index] = t + seconds
                        used[m] += size
                        decoded["wrote"] += 1
                    else:
                        decoded["self"] += 1
                if in_queue[chunk.index] == 0:  # spent: every reader has its frames or its own decode
                    for mm in range(machines):
                        if chunk.index in cache[mm]:
                            cache[mm].pop(chunk.index)
                            used[mm] -= (c.frame_bytes or 0) * chunk.frame_count
            end = t + seconds
            r = (kind, index)
            last_end[r] = max(last_end.get(r, 0.0), end)
            left[r] -= 1
            if left[r] == 0:
                heapq.heappush(assemble_q, (last_end[r], r))
        elif qc_q and qc_q[0][0] <= t:
            _, _, seconds = heapq.heappop(qc_q)
            end = t + seconds
            qc_end = max(qc_end, end)
        else:
            future = [x for x in ([assemble_q[0][0]] if assemble_q else []) + ([qc_q[0][0]] if qc_q else [])
                      + ([package_at] if package_at is not None and package_end is None else []) if x > t]  # fmt: skip
            if future:
                heapq.heappush(lanes, (min(future), w))
            continue  # nothing will come for this worker: it retires
        busy += end - t
        heapq.heappush(lanes, (end, w))
    published = max(package_end, qc_end) + c.tail_s
    video_ready = min(v for r, v in ready.items() if r[0] == "v")
    audio_ready = min((v for r, v in ready.items() if r[0] == "a"), default=video_ready)
    first = max(video_ready, audio_ready)
    first_playable = first if first < max(ready.values()) else published
    return {
        "published_s": published, "first_playable_s": first_playable, "chunks": len(chunks),
        "chunk_s": round(title_s / len(chunks), 1), "units": len(info), "scene_s": scene_s,
        "busy": busy / (workers * (published - start)) if published > start else 0.0, **decoded,
    }  # fmt: skip


# --- Main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds of the generated 720p source")
    parser.add_argument("--workers", type=int, default=2, help="media workers")
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--runs", type=int, default=1, help="repeat every source; medians are reported")
    parser.add_argument("--control-queues", action="append", default=None,
                        help='one control worker per use, on these queues (default: one on "security webhooks default")')
    parser.add_argument("--sweep-seconds", type=int, help="SECURITY_SWEEP_SECONDS for the scheduler (default: the setting's)")
    parser.add_argument("--launch-every", type=float, default=10,
                        help="mean seconds between launches during the encode (each gap 0.5-1.5 times it)")
    parser.add_argument("--detect-timeout", type=float, default=180,
                        help="after the job, how long a launch may still take to be stopped")
    parser.add_argument("--media-nice", type=int, default=None, help="niceness of the media workers (default: the Procfile's)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8"),
                        help="Redis database this benchmark empties and uses (default: BENCH_REDIS_URL, else db 8)")
    parser.add_argument("--no-flower", action="store_true", help="only the generated source")
    parser.add_argument("--titles", type=float, nargs="+", default=[1, 10, 120], help="modelled titles, minutes")
    parser.add_argument("--fleet", type=int, nargs="+", default=[2, 8, 32, 64], help="modelled worker counts")
    parser.add_argument("--per-machine", type=int, default=None, help="modelled workers per machine (default: --workers)")
    parser.add_argument("--timeout", type=float, default=3600, help="give up on a job after this many seconds")
    args = parser.parse_args()
    control_lines = args.control_queues or ["security webhooks default"]
    media_nice = procfile_nice() if args.media_nice is None else args.media_nice
    per_machine = args.per_machine or args.workers

    work = Path(tempfile.mkdtemp(prefix="reelflow-bench-publish-"))
    cache_dir = Path("/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir()) / f"reelflow-bench-publish-{os.getpid()}"
    try:
        return bench(args, work=work, cache_dir=cache_dir, control_lines=control_lines, media_nice=media_nice,
                     per_machine=per_machine)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(cache_dir, ignore_errors=True)


def bench(args, *, work: Path, cache_dir: Path, control_lines: list[str], media_nice: int, per_machine: int) -> int:
    from devservices.seaweed import start_seaweed

    procs: list[subprocess.Popen] = []
    workers: list[subprocess.Popen] = []
    server = start_seaweed(data_dir=work / "s3", access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    try:
        port, moto_port = free_port(), free_port()
        origin = f"http://127.0.0.1:{port}"
        moto_endpoint = f"http://127.0.0.1:{moto_port}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
            "REDIS_URL": args.redis_url,
            "CHANNELS_PREFIX": "reelflow-bench-publish",
            "CACHE_PREFIX": "reelflow-bench-publish",
            "S3_ENDPOINT_URL": server.endpoint_url,
            "S3_ACCESS_KEY": ACCESS_KEY,
            "S3_SECRET_KEY": SECRET_KEY,
            "REELFLOW_SITE_URL": origin,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "REELFLOW_VAR_DIR": str(work),
            "REELFLOW_DECODED_CACHE_DIR": str(cache_dir),
            "REELFLOW_QC_MODE": "always",
            "AWS_REGIONS": "us-east-1",
            "AWS_ENDPOINT_URL_EC2": moto_endpoint,
            "AWS_ENDPOINT_URL_SQS": moto_endpoint,
            "AWS_ACCESS_KEY_ID": "simulated",
            "AWS_SECRET_ACCESS_KEY": "simulated",
            "SECURITY_EVENTS_TOKEN": EVENTS_TOKEN,
            "SECURITY_LAUNCH_ALLOWLIST": ALLOWLIST,
            "PYTHONUNBUFFERED": "1",
            **({"SECURITY_SWEEP_SECONDS": str(args.sweep_seconds)} if args.sweep_seconds else {}),
        }
        os.environ.update(env)
        import django

        django.setup()
        import django_rq
        import requests
        from django.conf import settings
        from django.core.management import call_command
        from django.test import Client

        from core import s3
        from core.roles import Role
        from core.services import user_create_with_role
        from pipeline import chunking, decoded_cache
        from pipeline import ffmpeg as rf_ffmpeg
        from pipeline.models import Profile, RuleSet
        from pipeline.queues import MEDIA as MEDIA_QUEUES
        from pipeline.services.planning import rendition_plan

        bench_pipeline = _bench_pipeline()
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; Redis {args.redis_url}; "
              f"work folder {work}", flush=True)  # fmt: skip
        django_rq.get_connection("default").flushdb()
        call_command("migrate", verbosity=0)
        call_command("collectstatic", "--noinput", verbosity=0)
        s3.buckets_ensure([settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA, settings.S3_BUCKET_BACKUP],
                          cors_origins=[origin])  # fmt: skip
        publisher, _ = user_create_with_role(username="benchpub", role=Role.PUBLISHER)
        quality_sets = [rs.name for rs in RuleSet.objects.filter(is_active=True, rules__kind="quality_min",
                                                                  profiles__slug=args.profile).distinct()]  # fmt: skip
        print(f"profile {args.profile}: quality rule sets {quality_sets or 'NONE (the job will not wait for QC)'}; "
              f"REELFLOW_QC_MODE={settings.REELFLOW_QC_MODE}", flush=True)  # fmt: skip
        client = Client()
        client.force_login(publisher)
        cookie = (settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value)

        sources = []
        generated = work / "source.mp4"
        print(f"making a {args.duration} s 720p source ...", flush=True)
        make_source(generated, args.duration)
        sources.append(("testsrc2", generated))
        flower = None if args.no_flower else sample_path("flower.mp4")
        if flower is not None:
            sources.append(("flower", flower))
        elif not args.no_flower:
            print("flower.mp4 not found ($REELFLOW_SAMPLES_DIR, ../shared/samples, /work/shared/samples): skipped", flush=True)

        # The simulated cloud, its own process as AWS is; seeded with the demo fleet.
        procs.append(subprocess.Popen([PY, "-m", "security.simcloud", "--port", str(moto_port)], cwd=ROOT, env=env,
                                      stdout=(work / "moto.log").open("wb"), stderr=subprocess.STDOUT))  # fmt: skip
        procs.append(subprocess.Popen(
            [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "--websocket_connect_timeout", "30", "config.asgi:application"],
            cwd=ROOT, env={**env, "ASGI_THREADS": env.get("ASGI_THREADS", "32")},
            stdout=(work / "daphne.log").open("wb"), stderr=subprocess.STDOUT))  # fmt: skip
        logs = [work / f"media-{i}.log" for i in range(args.workers)]
        for log in logs:
            workers.append(subprocess.Popen(
                [*(["nice", "-n", str(media_nice)] if media_nice else []), PY, "manage.py", "rqworker", *MEDIA_QUEUES,
                 "--with-scheduler"], cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT))  # fmt: skip
        for i, line in enumerate(control_lines):
            workers.append(subprocess.Popen([PY, "manage.py", "rqworker", *line.split(), "--with-scheduler"], cwd=ROOT,
                                            env=env, stdout=(work / f"control-{i}.log").open("wb"),
                                            stderr=subprocess.STDOUT))  # fmt: skip
        ready_s = workers_ready(workers, timeout=300)
        # The scheduler once the workers are up, as its first sweeps would find no worker before.
        procs.append(subprocess.Popen([PY, "manage.py", "rqcron", "config.cron"], cwd=ROOT, env=env,
                                      stdout=(work / "cron.log").open("wb"), stderr=subprocess.STDOUT))  # fmt: skip
        for _ in range(600):
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{origin}/accounts/login/", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("daphne did not answer")
        print(f"{args.workers} media workers (nice {media_nice}) on {' '.join(MEDIA_QUEUES)}; control workers on "
              + "; ".join(control_lines) + f"; security sweep every {settings.SECURITY_SWEEP_SECONDS} s; "
              f"all idle after {ready_s:.1f} s", flush=True)  # fmt: skip

        decode = decode_rate(generated)
        print(f"source decode, one thread: {decode * 1e9:.2f} CPU-s per giga pixel-frame", flush=True)

        results: dict[str, list[dict]] = {name: [] for name, _ in sources}
        detections = []
        for run in range(args.runs):
            for name, path in sources:
                info = rf_ffmpeg.probe(str(path))
                fps = chunking.planning_fps(fps=info.video.fps, avg_fps=info.video.avg_fps, vfr=info.video.vfr)
                gop = chunking.segment_frames(fps=fps, segment_seconds=settings.REELFLOW_SEGMENT_SECONDS)
                from types import SimpleNamespace

                rungs, audio = rendition_plan(SimpleNamespace(profile=Profile.objects.get(slug=args.profile)), info)
                out = work / f"baseline-{name}-{run}"
                out.mkdir()
                label = f"{name} run {run + 1}"
                before = bench_pipeline.baseline(path, out, rungs, audio, gop)
                print(f"  [{label}] (a) one ffmpeg, {len(rungs)} rungs + {len(audio)} audio: {before[0]:.1f} s wall, "
                      f"{before[1]:.1f} CPU-s", flush=True)  # fmt: skip
                detection = Detection(endpoint=moto_endpoint, origin=origin, every=args.launch_every) if name == "testsrc2" else None
                result = run_job(source=path, label=label, args=args, origin=origin, cookie=cookie, logs=logs,
                                 detection=detection)  # fmt: skip
                after = bench_pipeline.baseline(path, out, rungs, audio, gop)
                shutil.rmtree(out, ignore_errors=True)
                result["baseline_s"] = (before[0] + after[0]) / 2
                result["baseline_cpu_s"] = (before[1] + after[1]) / 2
                result["first_playable_ratio"] = result["first_playable_s"] / result["baseline_s"]
                result["published_ratio"] = result["published_s"] / result["baseline_s"]
                result["qc_cpu_ratio"] = result["qc_cpu_s"] / result["unit_cpu_s"] if result["unit_cpu_s"] else None
                print(f"  [{label}] (a) {before[0]:.1f} s before, {after[0]:.1f} s after; first playable "
                      f"{result['first_playable_s']:.1f} s ({'preview' if result['preview'] else 'no preview: the publication'}) "
                      f"= {result['first_playable_ratio']:.3f} x; published {result['published_s']:.1f} s = "
                      f"{result['published_ratio']:.3f} x; QC CPU {result['qc_cpu_s']:.1f} / units {result['unit_cpu_s']:.1f} "
                      f"= {result['qc_cpu_ratio']:.3f} x; load {result['load']}", flush=True)  # fmt: skip
                if detection is not None:
                    figures = detection.figures()
                    detections.append(figures)
                    for path_name in ("sweep", "event"):
                        d = figures[path_name]
                        print(f"  [{label}] detection through the {path_name}: {d['stopped']}/{d['launches']} stopped, "
                              f"median {d['median_s']} s, worst {d['max_s']} s: {d['seconds']}", flush=True)  # fmt: skip
                    for error in figures["errors"]:
                        print(f"  [{label}] detection error: {error}", flush=True)
                results[name].append(result)
    except BaseException:
        for log in sorted(work.glob("*.log")):  # what the processes said, before their folder goes
            print(f"--- {log.name}, last lines:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-12:]),
                  file=sys.stderr)  # fmt: skip
        raise
    finally:
        stop_workers(workers)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        server.stop()

    # --- Figures ---
    figures: dict = {"profile": args.profile, "workers": args.workers, "control_queues": control_lines,
                     "media_nice": media_nice, "runs": args.runs, "cpus": os.cpu_count(),
                     "sweep_interval_s": settings.SECURITY_SWEEP_SECONDS, "launch_every_s": args.launch_every}  # fmt: skip
    per_source = {}
    for name, runs in results.items():
        if not runs:
            continue
        per_source[name] = {
            "source_s": round(runs[-1]["job"].asset.duration_s or 0, 2),
            "chunk_plan": runs[-1]["chunk_plan"], "units": runs[-1]["units"], "measurements": runs[-1]["tasks"],
            "baseline_s": rnd(med([r["baseline_s"] for r in runs])),
            "baseline_cpu_s": rnd(med([r["baseline_cpu_s"] for r in runs])),
            "upload_s": rnd(med([r["upload_s"] for r in runs])),
            "first_playable_s": rnd(med([r["first_playable_s"] for r in runs])),
            "published_s": rnd(med([r["published_s"] for r in runs])),
            "first_playable_ratio": rnd(med([r["first_playable_ratio"] for r in runs]), 3),
            "published_ratio": rnd(med([r["published_ratio"] for r in runs]), 3),
            "first_playable_ratios": [round(r["first_playable_ratio"], 3) for r in runs],
            "published_ratios": [round(r["published_ratio"], 3) for r in runs],
            "preview": [r["preview"] for r in runs],
            "unit_cpu_s": rnd(med([r["unit_cpu_s"] for r in runs])), "qc_cpu_s": rnd(med([r["qc_cpu_s"] for r in runs])),
            "qc_cpu_ratio": rnd(med([r["qc_cpu_ratio"] for r in runs if r["qc_cpu_ratio"] is not None]), 3),
            "load": [r["load"] for r in runs],
        }  # fmt: skip
    figures["sources"] = per_source
    main_source = per_source.get("testsrc2", {})
    for key in ("first_playable_ratio", "published_ratio", "qc_cpu_ratio", "first_playable_s", "published_s", "baseline_s"):
        figures[key] = main_source.get(key)
    sweep = [s for d in detections for s in d["sweep"]["seconds"]]
    event = [s for d in detections for s in d["event"]["seconds"]]
    missed = {p: sum(d[p]["launches"] - d[p]["stopped"] for d in detections) for p in ("sweep", "event")}
    figures["detect_sweep_s"] = rnd(max(sweep)) if sweep else None
    figures["detect_event_s"] = rnd(max(event)) if event else None
    figures["detect_sweep_median_s"] = rnd(med(sweep))
    figures["detect_event_median_s"] = rnd(med(event))
    figures["detect_sweep_all_s"] = sweep
    figures["detect_event_all_s"] = event
    figures["detect_launches"] = {"sweep": len(sweep) + missed["sweep"], "event": len(event) + missed["event"]}
    figures["detect_not_stopped"] = missed
    if missed["sweep"] or missed["event"]:  # a launch never stopped counts as a miss, never as fast
        figures["detect_sweep_s"] = None if missed["sweep"] else figures["detect_sweep_s"]
        figures["detect_event_s"] = None if missed["event"] else figures["detect_event_s"]

    # --- The model ---
    model_table = {}
    if results.get("testsrc2"):
        costs = measured_costs(results["testsrc2"][-1], decode=decode)
        budget = decoded_cache.budget_bytes()
        wait_limit = settings.REELFLOW_DECODED_CACHE_WAIT_S
        print("model inputs (measured in this run, the testsrc2 job):", flush=True)
        for rung in costs.rungs:
            print(f"  {rung['name']}: encode {rung['enc'] * 1e9:.2f} CPU-s / G pixel-frames, QC {rung['qc'] * 1000:.1f} "
                  f"CPU-ms / frame, assemble {rung['assemble'] * 1000:.1f} ms / title-s", flush=True)  # fmt: skip
        for spec in costs.audio:
            print(f"  {spec['name']}: {spec['cpu'] * 1000:.1f} CPU-ms / title-s, assemble {spec['assemble'] * 1000:.1f} ms / title-s",
                  flush=True)  # fmt: skip
        print(f"  decode {costs.decode * 1e9:.2f}, keeping the frames {costs.write * 1e9:.2f} CPU-s / G source "
              f"pixel-frames; fixed cost {costs.fixed_s * 1000:.0f} ms a unit; ingest {costs.ingest_s:.2f} s; "
              f"package {costs.package_s:.2f} s; publish tail {costs.tail_s:.2f} s; decoded-chunk budget "
              f"{budget / MIB:.0f} MiB a machine; {per_machine} workers a machine", flush=True)  # fmt: skip
        for note in costs.notes:
            print(f"  note: {note}", flush=True)
        measured = results["testsrc2"][-1]
        check = simulate(costs, title_s=measured["job"].asset.duration_s, workers=args.workers,
                         per_machine=per_machine, budget=budget, wait_limit=wait_limit)  # fmt: skip
        measured_from_created = measured["published_s"] - measured["created_s"]
        print(f"model check, the measured job ({args.workers} workers): modelled object-created -> published "
              f"{check['published_s']:.1f} s against {measured_from_created:.1f} s measured "
              f"(measured x{measured_from_created / check['published_s']:.2f} the model, whose CPUs are its own; the machine's "
          f"load average went {measured['load'][0]} -> {measured['load'][1]} during the job)",
              flush=True)  # fmt: skip
        figures["model_check"] = {"modelled_s": rnd(check["published_s"], 1), "measured_s": rnd(measured_from_created, 1)}
        # The model's CPUs are its own; so is this reference: one ffmpeg's CPU-seconds over this
        # machine's cores, its best wall time on one idle machine like this one.
        baseline_per_s = measured["baseline_cpu_s"] / measured["job"].asset.duration_s / (os.cpu_count() or 1)
        header = (f"{'title':>8} | " + " | ".join(f"{w:>3} workers (chunks)" for w in args.fleet)
                  + f" | one ffmpeg: CPU-s / {os.cpu_count()} cores")  # fmt: skip
        print("modelled object-created -> published, s (chunks x length):", flush=True)
        print(header, flush=True)
        for minutes in args.titles:
            row = {}
            cells = []
            for fleet in args.fleet:
                sim = simulate(costs, title_s=minutes * 60, workers=fleet, per_machine=per_machine, budget=budget,
                               wait_limit=wait_limit)  # fmt: skip
                row[str(fleet)] = {"published_s": round(sim["published_s"], 1),
                                   "first_playable_s": round(sim["first_playable_s"], 1),
                                   "chunks": sim["chunks"], "chunk_s": sim["chunk_s"], "busy": round(sim["busy"], 2),
                                   "frames_from": {"cache": sim["cache"], "decoded_and_kept": sim["wrote"],
                                                   "decoded_not_kept": sim["self"]}}  # fmt: skip
                cells.append(f"{sim['published_s']:>8.1f} ({sim['chunks']}x{sim['chunk_s']:g}s)".rjust(20))
            model_table[f"{minutes:g}"] = row
            print(f"{minutes:>6g} m | " + " | ".join(cells) + f" | {baseline_per_s * minutes * 60:>8.1f}", flush=True)
        print("modelled first playable (object-created -> preview), s; and the video units that read their "
              "frames from the cache / decoded and kept them / decoded without keeping:", flush=True)
        for minutes in args.titles:
            row = model_table[f"{minutes:g}"]
            print(f"{minutes:>6g} m | " + " | ".join(
                f"{row[str(f)]['first_playable_s']:>8.1f} ({'/'.join(str(v) for v in row[str(f)]['frames_from'].values())})".rjust(20)
                for f in args.fleet), flush=True)  # fmt: skip
    figures["modelled_published_s"] = {t: {w: v["published_s"] for w, v in row.items()} for t, row in model_table.items()}
    figures["modelled"] = model_table

    # --- Summary ---
    for name, s in per_source.items():
        print(f"{name} ({s['source_s']} s): first playable {s['first_playable_s']} s = {s['first_playable_ratio']} x "
              f"one ffmpeg (goal <= {GOALS['first_playable_ratio']}); published {s['published_s']} s = "
              f"{s['published_ratio']} x (goal <= {GOALS['published_ratio']}); QC CPU {s['qc_cpu_ratio']} x the "
              f"encode's (goal <= {GOALS['qc_cpu_ratio']})", flush=True)  # fmt: skip
    print(f"detection while the encode ran (sweep every {settings.SECURITY_SWEEP_SECONDS} s): sweep worst "
          f"{figures['detect_sweep_s']} s, median {figures['detect_sweep_median_s']} s (goal <= {GOALS['detect_sweep_s']:g}); "
          f"event worst {figures['detect_event_s']} s, median {figures['detect_event_median_s']} s "
          f"(goal <= {GOALS['detect_event_s']:g}); not stopped {missed}", flush=True)  # fmt: skip
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
