"""Pipeline benchmark: Reelflow from object-created to PUBLISHED against one ffmpeg process
producing the same ladder, on the same source, in the same run.

    .venv/bin/python bench/pipeline.py [--duration 60] [--chunk-seconds 20] [--workers 2] [--runs 1]
                                       [--lanes] [--compare-cache]

(a) baseline: one ffmpeg, `split` filter, the same x264/AAC settings as the units, MP4 out, with
    ffmpeg's own threading (its best on this machine); timed before and after (b), averaged.
(b) Reelflow: upload to the ingest bucket, the object-created event, probe, chunked encode on
    N RQ worker processes, assemble, package HLS+DASH, poster and sprite, until PUBLISHED.

Prints the wall-time ratio b/a, the CPU-seconds ratio, and the fixed cost per unit (unit wall
time minus ffmpeg's own), then one line with a JSON object of the figures.
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
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable

from media_bench import children_cpu, make_source, stop_workers  # noqa: E402 - beside this script
from pipeline_lanes import cpu_by_rendition, lanes  # noqa: E402


def workers_cpu(workers: list[subprocess.Popen]) -> tuple[float, float]:
    """CPU seconds of the worker processes so far: their own (Python), and the children they
    have reaped (ffmpeg, ffprobe)."""
    import psutil

    own = children = 0.0
    for w in workers:
        times = psutil.Process(w.pid).cpu_times()
        own += times.user + times.system
        children += times.children_user + times.children_system
    return own, children


def workers_ready(workers: list[subprocess.Popen], timeout: float) -> float:
    """Seconds until every worker is registered with RQ and idle (its start-up and warm-up done)."""
    import django_rq
    from rq import Worker

    started = time.monotonic()
    pids = {w.pid for w in workers}
    while time.monotonic() - started < timeout:
        if any(w.poll() is not None for w in workers):
            raise RuntimeError("a worker exited while starting (see its log)")
        ready = [w for w in Worker.all(connection=django_rq.get_connection("default")) if w.pid in pids]
        if len(ready) == len(workers) and all(w.get_state() == "idle" for w in ready):
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"workers not idle within {timeout:g} s")


def process_cpu(pid: int) -> float:
    """CPU seconds of one process (and its reaped children) so far."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def baseline(source: Path, out: Path, rungs: list[tuple[dict, int, int]], audio: list[dict], gop: int) -> tuple[float, float]:
    """One ffmpeg: decode once, split, scale and encode every rung with the units' settings."""
    from pipeline import ffmpeg
    from pipeline.media import video_rendition

    n = len(rungs)
    graph = f"[0:v]split={n}" + "".join(f"[s{i}]" for i in range(n)) + ";"
    graph += ";".join(f"[s{i}]scale={w}:{h},setsar=1,format=yuv420p[v{i}]" for i, (_, w, h) in enumerate(rungs))
    args = ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-filter_complex", graph]
    for i, (params, _, _) in enumerate(rungs):
        args += ["-map", f"[v{i}]", *ffmpeg._encoder_args(video_rendition(params), gop=gop), "-an", str(out / f"{params['name']}.mp4")]
    for spec in audio:
        args += ["-map", "0:a:0", "-vn", "-c:a", spec["codec"], "-b:a", f"{spec['bitrate_kbps']}k",
                 "-ac", str(spec["channels"]), str(out / f"{spec['name']}.mp4")]
    cpu0, t0 = children_cpu(), time.monotonic()
    subprocess.run(args, check=True)
    return time.monotonic() - t0, children_cpu() - cpu0


def unit_waits(job) -> dict[int, float]:
    """Seconds each unit waited for another unit to finish decoding its chunk (lineage)."""
    from pipeline.models import Artifact

    return {
        int(a.step.removeprefix("encode_unit:")): a.inputs.get("decoded_wait_s") or 0.0
        for a in Artifact.objects.filter(job=job, kind__in=[Artifact.Kind.UNIT, Artifact.Kind.AUDIO])
    }


def decoded_summary(job, units) -> str:
    from pipeline.models import Artifact

    how = {
        a.step.removeprefix("encode_unit:"): a.inputs.get("decoded_from", "source")
        for a in Artifact.objects.filter(job=job, kind=Artifact.Kind.UNIT)
    }
    waits = unit_waits(job)
    groups: dict[str, list[float]] = {}
    for unit in units:
        if unit.chunk_id:
            groups.setdefault(how.get(str(unit.pk), "?"), []).append(unit.cpu_s or 0)
    waited = [w for w in waits.values() if w >= 0.05]
    return "; ".join(f"{name}: {len(cpu)} units, {sum(cpu):.1f} CPU-s" for name, cpu in sorted(groups.items())) + (
        f"; {len(waited)} units waited for their chunk's writer, {sum(waited):.1f} s in all" if waited else ""
    )


def timeline(job, t0_wall: float) -> str:
    """Where the wall time went: the job's milestones and the last unit, from the event log."""
    from core.models import Event

    marks = {}
    for event in Event.objects.filter(created_at__gte=job.created_at).order_by("id"):
        at = event.created_at.timestamp() - t0_wall
        if event.type.startswith("job.") and event.subject_id == str(job.pk):
            marks.setdefault(event.type.removeprefix("job."), at)
        elif event.type in ("unit.started", "unit.done", "rendition.ready"):
            marks[f"last {event.type}"] = at  # later events overwrite: the last one stays
            marks.setdefault(f"first {event.type}", at)
    return ", ".join(f"{name} {at:.1f}" for name, at in sorted(marks.items(), key=lambda kv: kv[1]))


def worker_lanes(units, t0_wall: float, wall: float, width: int = 60) -> list[str]:
    """Each worker's units on one line, drawn over the job's wall time (a video unit as the
    first digit of its rung's name, ``7`` for h264-720p; an audio unit as ``a``), and the share
    of the lane they fill; what the lanes leave blank is where a CPU waited on the pipeline."""
    rows: dict[str, list] = {}
    for unit in units:
        if unit.started_at and unit.finished_at:
            rows.setdefault(unit.worker or "?", []).append(unit)
    lines = []
    for _worker, lane in sorted(rows.items()):
        cells = [" "] * width
        busy = 0.0
        for unit in lane:
            start = unit.started_at.timestamp() - t0_wall
            end = unit.finished_at.timestamp() - t0_wall
            busy += end - start
            mark = (unit.rendition.name.split("-")[-1][:1] or "?") if unit.chunk_id else "a"
            first = int(start / wall * width)
            for cell in range(first, max(first + 1, int(end / wall * width))):
                cells[min(cell, width - 1)] = mark
        lines.append(f"|{''.join(cells)}| {len(lane)} units, busy {busy / wall:.0%}")
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--chunk-seconds", type=int, default=20)
    parser.add_argument("--segment-seconds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--runs", type=int, default=1, help="repeat both sides; medians are reported")
    parser.add_argument("--timeout", type=float, default=1800, help="give up on a job after this many seconds")
    parser.add_argument("--lanes", action="store_true",
                        help="in each run, also time the job's unit commands as bare ffmpeg processes in as many lanes "
                             "as workers (no queue, S3, database or packaging): splits the gap into the price of "
                             "separate processes and the pipeline's own overhead")
    parser.add_argument("--compare-cache", action="store_true",
                        help="in each run, also encode with the decoded-chunk cache off (REELFLOW_DECODED_CACHE_MB=0)")
    return parser.parse_args()


class Platform:
    """SeaweedFS, a temporary SQLite database, Django configured for them (the environment the
    workers inherit), the buckets, a publisher, and the source clip probed; stopped on exit."""

    def __init__(self, args) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="reelflow-bench-"))

    def __enter__(self) -> Platform:
        from devservices.seaweed import start_seaweed

        args = self.args
        self.server = start_seaweed(data_dir=self.work / "s3", access_key="bench-access", secret_key="bench-secret-key-123456")
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "DATABASE_URL": f"sqlite:///{self.work / 'bench.sqlite3'}",
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
            "S3_ENDPOINT_URL": self.server.endpoint_url,
            "S3_ACCESS_KEY": "bench-access",
            "S3_SECRET_KEY": "bench-secret-key-123456",
            "REELFLOW_CHUNK_SECONDS": str(args.chunk_seconds),
            "REELFLOW_SEGMENT_SECONDS": str(args.segment_seconds),
            # The encode pipeline alone, as the baseline does it: quality measurement has its own
            # benchmark (bench/quality.py).
            "REELFLOW_QC_MODE": "off",
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update(self.env)
        self._django()
        from pipeline import chunking, ffmpeg

        self.source = self.work / "source.mp4"
        print(f"making a {args.duration} s 720p source ...", flush=True)
        make_source(self.source, args.duration)
        self.info = ffmpeg.probe(str(self.source))
        fps = chunking.planning_fps(fps=self.info.video.fps, avg_fps=self.info.video.avg_fps, vfr=self.info.video.vfr)
        self.gop = chunking.segment_frames(fps=fps, segment_seconds=args.segment_seconds)
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

        django_rq.get_connection("default").flushdb()
        call_command("migrate", verbosity=0)
        from pipeline.models import RuleSet

        # Without QC a quality rule would hold the job; the publish rules themselves still run.
        RuleSet.objects.filter(rules__kind="quality_min").update(is_active=False)
        s3.buckets_ensure([settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA, settings.S3_BUCKET_BACKUP])
        user_create_with_role(username="bench", role=Role.PUBLISHER)

    def __exit__(self, kind, exc, tb) -> None:
        self.server.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def workers_start(platform: Platform, run: int, label: str, run_env: dict) -> tuple[list, list[subprocess.Popen]]:
    """Fresh media workers for one upload, each with its log file (under cProfile if
    BENCH_PROFILE_DIR is set)."""
    from pipeline.queues import MEDIA as MEDIA_QUEUES

    work = platform.work
    logs = [open(work / f"worker-{run}-{label}-{i}.log", "w") for i in range(platform.args.workers)]  # noqa: SIM115
    profile_dir = os.environ.get("BENCH_PROFILE_DIR")  # each worker's Python under cProfile
    workers = [
        subprocess.Popen([PY, *(["-m", "cProfile", "-o", f"{profile_dir}/worker-{run}-{label.replace(' ', '-')}-{i}.prof"] if profile_dir else []),
                          "manage.py", "rqworker", *MEDIA_QUEUES, "default"],
                         cwd=ROOT, env=run_env, stdout=log, stderr=subprocess.STDOUT)
        for i, log in enumerate(logs)
    ]
    return logs, workers


def job_wait(job, t0: float, timeout: float, logs: list, workers: list[subprocess.Popen]) -> bool:
    """Until the job ends; False (the workers stopped, their logs' tails printed) on timeout."""
    from pipeline.models import JobState, Unit

    last_report = time.monotonic()
    while True:
        job.refresh_from_db()
        if job.state in (JobState.PUBLISHED, JobState.FAILED, JobState.CANCELLED):
            return True
        if time.monotonic() - last_report > 15:
            done = Unit.objects.filter(job=job, state="done").count()
            print(f"  ... {job.state}, {done}/{Unit.objects.filter(job=job).count()} units done", flush=True)
            last_report = time.monotonic()
        if time.monotonic() - t0 > timeout:
            for log in logs:
                log.flush()
                print(f"timed out; {log.name} tail:\n" + Path(log.name).read_text()[-3000:])
            stop_workers(workers)
            return False
        time.sleep(0.1)


def worker_logs_print(logs: list) -> None:
    phase_lines = [
        line for log in logs for line in Path(log.name).read_text().splitlines() if "ms total, ffmpeg" in line
    ]
    for line in phase_lines[:2]:
        print("   ", line.split(": ", 1)[-1])
    for log in logs:
        for line in Path(log.name).read_text().splitlines():
            if " packaged: ffmpeg " in line or "assembled " in line:
                print("   ", line.split(": ", 1)[-1])
    for log in logs:
        log.close()


def job_report(job, label: str, t0_wall: float, wall: float, cpu: tuple[float, float, float]) -> dict:
    """The published job's timeline, units and CPU printed; its figures returned."""
    from pipeline.models import Unit

    own, children, s3_cpu = cpu
    print(f"    [{label}] timeline (s from object-created):", timeline(job, t0_wall), flush=True)
    units = list(Unit.objects.filter(job=job).select_related("rendition"))
    print(f"    [{label}] units by where their frames came from:", decoded_summary(job, units), flush=True)
    for line in worker_lanes(units, t0_wall, wall):
        print(f"    [{label}] lane {line}", flush=True)
    by_rendition: dict[str, float] = {}
    for unit in units:
        by_rendition[unit.rendition.name] = by_rendition.get(unit.rendition.name, 0) + (unit.cpu_s or 0)
    unit_cpu = sum(by_rendition.values())
    print(f"    [{label}] CPU-s: workers' Python {own:.1f}, their ffmpeg/ffprobe {children:.1f} (units "
          f"{unit_cpu:.1f}: " + cpu_by_rendition(by_rendition)
          + f"; assemble, package and probes {children - unit_cpu:.1f}); beside them the S3 server {s3_cpu:.1f}",
          flush=True)
    # Time spent waiting for another unit's decoded frames is idle, not overhead: it is left out.
    waits = unit_waits(job)
    fixed_ms = [(u.wall_s - u.ffmpeg_s - waits.get(u.pk, 0.0)) * 1000 for u in units if u.wall_s and u.ffmpeg_s]
    return {
        "job": job, "wall": wall, "cpu": own + children, "unit_cpu": sum(u.cpu_s or 0 for u in units), "units": len(units),
        "fixed_ms": statistics.median(fixed_ms), "fixed_ms_p95": sorted(fixed_ms)[int(0.95 * (len(fixed_ms) - 1))],
    }


def reelflow(platform: Platform, run: int, label: str, run_env: dict) -> dict | None:
    """(b) one upload through Reelflow with fresh workers; None if the job did not publish."""
    from django.conf import settings

    from core import s3
    from pipeline import events
    from pipeline.models import IngestEvent, JobState

    server = platform.server
    logs, workers = workers_start(platform, run, label, run_env)
    # Workers import Django, register and warm up: not part of a job's time.
    ready_s = workers_ready(workers, timeout=60)
    print(f"    [{label}] workers idle after {ready_s:.1f} s", flush=True)
    cpu0 = workers_cpu(workers)
    s3_cpu0 = process_cpu(server.process.pid)
    key = f"uploads/bench/{uuid.uuid4().hex[:8]}-source.mp4"
    s3.client().upload_file(str(platform.source), settings.S3_BUCKET_INGEST, key,
                            ExtraArgs={"Metadata": {"profile": platform.args.profile}})
    t0, t0_wall = time.monotonic(), time.time()
    event = events.object_created_receive(
        created=events.ObjectCreated(bucket=settings.S3_BUCKET_INGEST, key=key), source=IngestEvent.Source.CLI
    )
    job = event.job
    if not job_wait(job, t0, platform.args.timeout, logs, workers):
        return None
    wall = time.monotonic() - t0
    own1, children1 = workers_cpu(workers)
    own, children = own1 - cpu0[0], children1 - cpu0[1]  # the job's CPU, not the workers' start-up
    s3_cpu = process_cpu(server.process.pid) - s3_cpu0
    stop_workers(workers)
    worker_logs_print(logs)
    if job.state != JobState.PUBLISHED:
        print(f"job failed: {job.failure_reason}", file=sys.stderr)
        return None
    return job_report(job, label, t0_wall, wall, (own, children, s3_cpu))


def lanes_measure(platform: Platform, job, wall_a: float, cpu_a: float) -> dict:
    """(c) for this run, in a folder in memory where there is one."""
    args = platform.args
    lanes_dir = Path(tempfile.mkdtemp(prefix="reelflow-lanes-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        wall_c, cpu_c = lanes(job, platform.source, lanes_dir, args.workers)
    finally:
        shutil.rmtree(lanes_dir, ignore_errors=True)
    print(f"    (c) the units as bare ffmpeg in {args.workers} lanes: {wall_c:.1f} s wall / {cpu_c:.1f} s CPU "
          f"(ratio to one ffmpeg: wall {wall_c / wall_a:.3f}, CPU {cpu_c / cpu_a:.3f})", flush=True)
    return {"wall_c": wall_c, "cpu_c": cpu_c}


def measure_one(platform: Platform, run: int, rungs: list, audio: list) -> dict | None:
    """One run: (a) before, (b) (and cache off), (a) after, (c); None if a job did not publish."""
    args, env, source, gop = platform.args, platform.env, platform.source, platform.gop
    # (a) one ffmpeg, same ladder: once before (b) and once after, so a drift in the
    # machine's speed (a shared VM) weighs on both sides alike.
    out = platform.work / f"baseline-{run}"
    out.mkdir()
    before = baseline(source, out, rungs, audio, gop)
    b = reelflow(platform, run, "cache on", env)
    if b is None:
        return None
    off = None
    if args.compare_cache:
        off = reelflow(platform, run, "cache off", {**env, "REELFLOW_DECODED_CACHE_MB": "0"})
        if off is None:
            return None
    after = baseline(source, out, rungs, audio, gop)
    wall_a, cpu_a = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
    print(f"    (a) one ffmpeg: {before[0]:.1f} s before (b), {after[0]:.1f} s after", flush=True)
    lane = lanes_measure(platform, b["job"], wall_a, cpu_a) if args.lanes else {}
    extra = f"; cache off {off['wall']:.1f} s wall / {off['cpu']:.1f} s CPU" if off else ""
    print(f"run {run + 1}: baseline {wall_a:.1f} s wall / {cpu_a:.1f} s CPU; "
          f"reelflow {b['wall']:.1f} s wall / {b['cpu']:.1f} s CPU ({b['units']} units){extra}", flush=True)
    return {
        **lane,
        "wall_a": wall_a, "wall_b": b["wall"], "cpu_a": cpu_a, "cpu_b": b["cpu"], "unit_cpu": b["unit_cpu"],
        "fixed_ms": b["fixed_ms"], "fixed_ms_p95": b["fixed_ms_p95"],
        "units": b["units"], "renditions": len(rungs) + len(audio),
        **({"wall_off": off["wall"], "cpu_off": off["cpu"]} if off else {}),
    }


def figures_of(args, results: list[dict]) -> dict:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    figures = {
        "source_s": args.duration,
        "chunk_s": args.chunk_seconds,
        "workers": args.workers,
        "profile": args.profile,
        "units": results[-1]["units"],
        "renditions": results[-1]["renditions"],
        "baseline_wall_s": round(med("wall_a"), 2),
        "reelflow_wall_s": round(med("wall_b"), 2),
        "wall_ratio": round(med("wall_b") / med("wall_a"), 3),
        # Each run against its own baseline, then the median: what the runs agree on.
        "wall_ratio_runs": [round(r["wall_b"] / r["wall_a"], 3) for r in results],
        "wall_ratio_median_of_runs": round(statistics.median(r["wall_b"] / r["wall_a"] for r in results), 3),
        "baseline_cpu_s": round(med("cpu_a"), 2),
        "reelflow_cpu_s": round(med("cpu_b"), 2),
        "cpu_ratio": round(med("cpu_b") / med("cpu_a"), 3),
        "unit_ffmpeg_cpu_s": round(med("unit_cpu"), 2),
        "fixed_cost_ms_per_unit": round(med("fixed_ms"), 1),
        "fixed_cost_ms_p95": round(med("fixed_ms_p95"), 1),
    }
    if args.lanes:
        figures["lanes_wall_ratio"] = round(med("wall_c") / med("wall_a"), 3)
        figures["lanes_cpu_ratio"] = round(med("cpu_c") / med("cpu_a"), 3)
        figures["pipeline_over_lanes_wall"] = round(med("wall_b") / med("wall_c"), 3)
    if args.compare_cache:
        figures["cache_off_wall_ratio"] = round(med("wall_off") / med("wall_a"), 3)
        figures["cache_off_cpu_ratio"] = round(med("cpu_off") / med("cpu_a"), 3)
    return figures


def summary_print(args, figures: dict) -> None:
    if args.lanes:
        print(f"units as bare ffmpeg processes: wall ratio {figures['lanes_wall_ratio']}, CPU ratio "
              f"{figures['lanes_cpu_ratio']}; the pipeline around them: x{figures['pipeline_over_lanes_wall']} wall")
    if args.compare_cache:
        print(f"without the decoded-chunk cache: wall ratio {figures['cache_off_wall_ratio']}, "
              f"CPU ratio {figures['cache_off_cpu_ratio']}")
    print(f"wall-time ratio (reelflow / one ffmpeg): {figures['wall_ratio']}  (goal <= 1.10); per run "
          f"{figures['wall_ratio_runs']}, median {figures['wall_ratio_median_of_runs']}")
    print(f"CPU-seconds ratio: {figures['cpu_ratio']}")
    print(f"fixed cost per unit: {figures['fixed_cost_ms_per_unit']} ms median (goal <= 150 ms)")
    print(json.dumps(figures))


def main() -> int:
    args = parse_args()
    results = []
    with Platform(args) as platform:
        from pipeline.models import Profile
        from pipeline.services.planning import rendition_plan

        # The ladder the job will plan (the same query job_plan makes), for the baseline.
        rungs, audio = rendition_plan(SimpleNamespace(profile=Profile.objects.get(slug=args.profile)), platform.info)
        for run in range(args.runs):
            result = measure_one(platform, run, rungs, audio)
            if result is None:
                return 1
            results.append(result)
    figures = figures_of(args, results)
    summary_print(args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
