"""Quality-measurement benchmark: the time QC adds to a job, as a ratio to the encode time,
measured in the same run.

    .venv/bin/python bench/quality.py [--duration 60] [--chunk-seconds 20] [--workers 2] [--profile standard]

The same source goes through the whole pipeline twice, on N real RQ workers listening on every
pipeline queue (the "quality" one included), with its own SeaweedFS, a temporary SQLite
database and its own redis-server:

(a) REELFLOW_QC_MODE=off: object created -> packaged (probe, chunked encode, assemble, HLS +
    DASH). This is the encode time.
(b) REELFLOW_QC_MODE=always: the same, plus one measurement per (chunk, video rendition) on
    the quality queue, beside packaging, until the job's last measurement is stored.

QC's added time is (b)'s time to its last measurement minus (a)'s encode time; the ratio is
that over (a). Also printed: how much QC slowed the encode itself (both share the workers),
the CPU seconds QC's ffmpeg used against the units', the measuring throughput, the frames
scored (every Nth), how many ffmpeg runs measured them and where their source frames came
from (a unit's decoded copy, or the source decoded again), how early measuring started and
how much of it was done before the job was packaged, and each rendition's scores. Ends with
one line holding a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable

from media_bench import children_cpu, make_source, stop_workers  # noqa: E402 - beside this script

BEFORE_PACKAGED = {"queued", "probing", "encoding", "packaging"}
SETTLED = {"published", "held_for_review", "rejected"}  # where a job waits for no worker


def start_redis(work: Path) -> tuple[subprocess.Popen, str]:
    """A private redis-server on a free 127.0.0.1 port: no other test or benchmark on the
    machine can take this run's jobs (a shared database number is no guarantee)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (work / "redis").mkdir()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(work / "redis")],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def job_follow(job, *, mode: str, t0: float, args, label: str) -> tuple[float | None, float | None, float | None]:
    """Seconds from the event until the job was packaged, its measurements done and it settled."""
    from pipeline.models import JobState, QualityTask, Unit
    from pipeline.quality.selectors import job_quality_state

    packaged = qc_done = settled = None
    last_report = t0
    while True:
        job.refresh_from_db()
        now = time.monotonic() - t0
        if job.state == JobState.FAILED:
            raise RuntimeError(f"job failed: {job.failure_reason}")
        if packaged is None and job.state not in BEFORE_PACKAGED:
            packaged = now
        if qc_done is None and mode != "off" and job_quality_state(job) in ("done", "failed"):
            qc_done = now
        if settled is None and job.state in SETTLED:
            settled = now
        if packaged is not None and settled is not None and (mode == "off" or qc_done is not None):
            return packaged, qc_done, settled
        if now - (last_report - t0) > 15:
            done = QualityTask.objects.filter(job=job, state="done").count()
            print(f"  ... {label}: {job.state}, {Unit.objects.filter(job=job, state='done').count()} units, "
                  f"{done} measurements done", flush=True)  # fmt: skip
            last_report = time.monotonic()
        if now > args.timeout:
            raise RuntimeError(f"{label}: no end after {args.timeout} s (state {job.state})")
        time.sleep(0.1)


def job_figures(job_pk: int, *, wall0: float, times: tuple, cpu: float) -> dict:
    """The ended job's figures: its units' and measurements' CPU, when measuring ran, scores."""
    from pipeline.models import Artifact, EncodeJob, QualityTask, Rendition, Unit
    from pipeline.quality.selectors import rendition_scores

    packaged, qc_done, settled = times
    load = os.getloadavg()[0]
    job = EncodeJob.objects.get(pk=job_pk)
    tasks = list(QualityTask.objects.filter(job=job))
    units = list(Unit.objects.filter(job=job))
    qc_artifacts = list(Artifact.objects.filter(job=job, kind=Artifact.Kind.QC).values_list("inputs", flat=True))
    # When each measurement started and ended, in seconds after the upload's event.
    started = sorted(t.started_at.timestamp() - wall0 for t in tasks if t.started_at)
    ended = sorted(t.finished_at.timestamp() - wall0 for t in tasks if t.finished_at)
    return {
        "job": job.pk,
        "load": load,
        "state": job.state,
        "reason": job.failure_reason,
        "packaged_s": packaged,
        "qc_done_s": qc_done,
        "settled_s": settled,
        "cpu_s": cpu,
        "unit_cpu_s": sum(u.cpu_s or 0 for u in units),
        "qc_cpu_s": sum(t.cpu_s or 0 for t in tasks),
        "qc_wall_s": [t.wall_s for t in tasks if t.wall_s],
        "qc_frames": sum(t.frames or 0 for t in tasks),
        "tasks": len(tasks),
        "tasks_failed": sum(1 for t in tasks if t.state == "failed"),
        "qc_batches": len({t.rq_id for t in tasks}),
        "qc_step": max((t.frame_scores.get("step", 1) for t in tasks), default=None),
        "qc_reference": {
            kind: sum(1 for i in qc_artifacts if i.get("reference", "source") == kind) for kind in ("cache", "source")
        },
        "qc_first_start_s": started[0] if started else None,
        "qc_done_before_packaged": sum(1 for e in ended if packaged is not None and e <= packaged),
        "units": len(units),
        "tool": tasks[0].tool if tasks else "",
        "scores": {
            r.name: {m: round(s["mean"], 2) for m, s in rendition_scores(r).items()}
            for r in Rendition.objects.filter(job=job, kind="video").order_by("height")
        },
    }


def run_job(*, mode: str, source: Path, env: dict, args, work: Path, label: str) -> dict:
    """One job from object-created to its end with QC `mode`; times from the event."""
    from django.conf import settings

    from core import s3
    from pipeline import events
    from pipeline.models import IngestEvent
    from pipeline.queues import MEDIA as MEDIA_QUEUES

    logs = [open(work / f"worker-{label}-{i}.log", "w") for i in range(args.workers)]  # noqa: SIM115
    worker_env = {**env, "REELFLOW_QC_MODE": mode}
    workers = [
        subprocess.Popen([PY, "manage.py", "rqworker", *MEDIA_QUEUES, "default"], cwd=ROOT, env=worker_env, stdout=log,
                         stderr=subprocess.STDOUT)
        for log in logs
    ]  # fmt: skip
    time.sleep(3)  # workers import Django and register; not part of a job's time
    try:
        cpu0 = children_cpu()
        key = f"uploads/bench/{uuid.uuid4().hex[:8]}-source.mp4"
        s3.client().upload_file(
            str(source), settings.S3_BUCKET_INGEST, key, ExtraArgs={"Metadata": {"profile": args.profile}}
        )
        t0 = time.monotonic()
        wall0 = time.time()
        event = events.object_created_receive(
            created=events.ObjectCreated(bucket=settings.S3_BUCKET_INGEST, key=key),
            source=IngestEvent.Source.CLI,
        )
        job = event.job
        times = job_follow(job, mode=mode, t0=t0, args=args, label=label)
    finally:
        stop_workers(workers)
        for log in logs:
            log.close()
    return job_figures(job.pk, wall0=wall0, times=times, cpu=children_cpu() - cpu0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--chunk-seconds", type=int, default=20)
    parser.add_argument("--segment-seconds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--runs", type=int, default=1, help="repeat both jobs; medians are reported")
    parser.add_argument(
        "--timeout", type=float, default=3600, help="give up on a job after this many seconds"
    )
    return parser.parse_args()


class Platform:
    """SeaweedFS, a private redis-server, a temporary SQLite database, Django configured for
    them (the environment the workers inherit) and the source clip; stopped on exit."""

    def __init__(self, args) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="reelflow-bench-qc-"))

    def __enter__(self) -> Platform:
        from devservices.seaweed import start_seaweed

        args, work = self.args, self.work
        self.server = start_seaweed(
            data_dir=work / "s3", access_key="bench-access", secret_key="bench-secret-key-123456"
        )
        self.redis, redis_url = start_redis(work)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
            "REDIS_URL": redis_url,
            "S3_ENDPOINT_URL": self.server.endpoint_url,
            "S3_ACCESS_KEY": "bench-access",
            "S3_SECRET_KEY": "bench-secret-key-123456",
            "REELFLOW_CHUNK_SECONDS": str(args.chunk_seconds),
            "REELFLOW_SEGMENT_SECONDS": str(args.segment_seconds),
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update(self.env)
        self._django()
        self.source = work / "source.mp4"
        print(f"making a {args.duration} s 720p source ...", flush=True)
        make_source(self.source, args.duration)
        return self

    def _django(self) -> None:
        import django

        django.setup()
        import django_rq
        from django.conf import settings
        from django.core.management import call_command

        from core import s3
        from core.roles import Role
        from core.services import user_create_with_role
        from pipeline.quality import metrics
        from pipeline.quality.selectors import qc_binary

        django_rq.get_connection("default").flushdb()
        call_command("migrate", verbosity=0)
        s3.buckets_ensure([settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA, settings.S3_BUCKET_BACKUP])
        user_create_with_role(username="bench", role=Role.PUBLISHER)
        tool = metrics.qc_tool(qc_binary())
        print(f"measuring with {tool.label}", flush=True)

    def __exit__(self, kind, exc, tb) -> None:
        self.server.stop()
        self.redis.terminate()
        self.redis.wait(timeout=10)
        shutil.rmtree(self.work, ignore_errors=True)


def measure_one(platform: Platform, run: int) -> dict | None:
    """One pair of jobs, QC off and on; None if a measurement failed."""
    args = platform.args
    # Alternate which goes first, so neither always pays for a cold start.
    pair = {}
    for mode in ("off", "always") if run % 2 == 0 else ("always", "off"):
        pair[mode] = run_job(
            mode=mode, source=platform.source, env=platform.env, args=args, work=platform.work, label=f"{mode}-{run}"
        )
    off, on = pair["off"], pair["always"]
    print(f"run {run + 1}, QC off: packaged after {off['packaged_s']:.1f} s "
          f"({off['units']} units, {off['cpu_s']:.1f} CPU-s, load {off['load']:.1f}); ends {off['state']}",
          flush=True)  # fmt: skip
    print(f"run {run + 1}, QC on: packaged after {on['packaged_s']:.1f} s, last of {on['tasks']} "
          f"measurements after {on['qc_done_s']:.1f} s ({on['cpu_s']:.1f} CPU-s, load {on['load']:.1f}); "
          f"ends {on['state']}",
          flush=True)  # fmt: skip
    if on["tasks_failed"]:
        print(f"{on['tasks_failed']} measurements failed", file=sys.stderr)
        return None
    return {"off": off, "on": on}


def figures_of(args, results: list[dict]) -> dict:
    def med(fn) -> float:
        return statistics.median(fn(r) for r in results)

    encode_s = med(lambda r: r["off"]["packaged_s"])
    qc_done_s = med(lambda r: r["on"]["qc_done_s"])
    # Each run's ratio from its own pair (the machine's load changes between runs), then the median.
    ratios = [(r["on"]["qc_done_s"] - r["off"]["packaged_s"]) / r["off"]["packaged_s"] for r in results]
    last = results[-1]["on"]
    qc_wall = [w for r in results for w in r["on"]["qc_wall_s"]]
    return {
        "source_s": args.duration,
        "chunk_s": args.chunk_seconds,
        "workers": args.workers,
        "profile": args.profile,
        "runs": args.runs,
        "tool": last["tool"],
        "measurements": last["tasks"],
        "frames_measured": last["qc_frames"],
        "frame_step": last["qc_step"],
        "qc_runs": last["qc_batches"],
        "qc_source_read_from": last["qc_reference"],
        "qc_first_start_s": round(last["qc_first_start_s"], 2) if last["qc_first_start_s"] is not None else None,
        "qc_done_before_packaged": last["qc_done_before_packaged"],
        "encode_s": round(encode_s, 2),
        "qc_on_packaged_s": round(med(lambda r: r["on"]["packaged_s"]), 2),
        "qc_on_done_s": round(qc_done_s, 2),
        "qc_added_s": round(med(lambda r: r["on"]["qc_done_s"] - r["off"]["packaged_s"]), 2),
        "qc_added_ratio": round(statistics.median(ratios), 3),
        "qc_added_ratios": [round(x, 3) for x in ratios],
        "qc_added_cpu_ratio": round(
            med(lambda r: (r["on"]["cpu_s"] - r["off"]["cpu_s"]) / r["off"]["cpu_s"]), 3
        ),
        "encode_slowdown_ratio": round(med(lambda r: r["on"]["packaged_s"] / r["off"]["packaged_s"]), 3),
        "encode_cpu_s": round(med(lambda r: r["off"]["cpu_s"]), 2),
        "qc_on_cpu_s": round(med(lambda r: r["on"]["cpu_s"]), 2),
        "units_ffmpeg_cpu_s": round(med(lambda r: r["on"]["unit_cpu_s"]), 2),
        "qc_ffmpeg_cpu_s": round(med(lambda r: r["on"]["qc_cpu_s"]), 2),
        "qc_cpu_ratio": round(med(lambda r: r["on"]["qc_cpu_s"] / r["on"]["unit_cpu_s"]), 3),
        "qc_task_wall_s_median": round(statistics.median(qc_wall), 2) if qc_wall else None,
        "qc_frames_per_cpu_s": round(last["qc_frames"] / last["qc_cpu_s"], 1) if last["qc_cpu_s"] else None,
        "load_avg_1min": [round(r[m]["load"], 1) for r in results for m in ("off", "on")],
        "scores": last["scores"],
    }


def summary_print(figures: dict) -> None:
    print(f"encode (QC off, object-created -> packaged): {figures['encode_s']} s")
    print(
        f"QC on: packaged after {figures['qc_on_packaged_s']} s, last measurement after {figures['qc_on_done_s']} s"
    )
    print(
        f"time QC adds: {figures['qc_added_s']} s = {figures['qc_added_ratio']} x the encode time "
        f"(runs: {figures['qc_added_ratios']})"
    )
    print(f"CPU QC adds: {figures['qc_added_cpu_ratio']} x the encode's CPU seconds")
    print(f"CPU: QC's ffmpeg {figures['qc_ffmpeg_cpu_s']} s against the units' {figures['units_ffmpeg_cpu_s']} s "
          f"({figures['qc_cpu_ratio']} x)")  # fmt: skip
    print(f"measured: {figures['frames_measured']} frames (every {figures['frame_step']}) in {figures['qc_runs']} ffmpeg "
          f"runs; source frames from {figures['qc_source_read_from']}; first measurement started "
          f"{figures['qc_first_start_s']} s after the upload, {figures['qc_done_before_packaged']} of "
          f"{figures['measurements']} done before the job was packaged")  # fmt: skip
    print(json.dumps(figures))


def main() -> int:
    args = parse_args()
    results = []
    with Platform(args) as platform:
        for run in range(args.runs):
            pair = measure_one(platform, run)
            if pair is None:
                return 1
            results.append(pair)
    summary_print(figures_of(args, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
