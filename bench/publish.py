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
assemble, quality, encode. It prints object-created -> published for each fleet size, and the
model's figure for the measured job beside the measured one.

Ends with one line holding a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable

from media_bench import (  # noqa: E402 - beside this script
    bench_pipeline,
    free_port,
    make_source,
    med,
    rnd,
    sample_path,
    stop_workers,
)
from publish_cloud import ALLOWLIST, EVENTS_TOKEN, Detection  # noqa: E402
from publish_model import decode_rate, model_report  # noqa: E402
from publish_studio import run_job, workers_ready  # noqa: E402

ACCESS_KEY, SECRET_KEY = "bench-access", "bench-secret-key-123456"
GOALS = {"first_playable_ratio": 0.4, "published_ratio": 1.5, "qc_cpu_ratio": 0.35, "detect_sweep_s": 15.0,
         "detect_event_s": 2.0}  # fmt: skip


def procfile_nice() -> int:
    """The niceness the Procfile starts media workers at (`nice -n N` on its worker line), else 0."""
    with contextlib.suppress(OSError):
        for line in (ROOT / "Procfile").read_text().splitlines():
            if line.startswith("worker:"):
                found = re.search(r"\bnice\s+-n\s*(-?\d+)", line)
                return int(found.group(1)) if found else 0
    return 0


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
    parser.add_argument("--keep-work", action="store_true", help="keep the work folder (logs, database) for a look after")
    args = parser.parse_args()
    control_lines = args.control_queues or ["security webhooks default"]
    media_nice = procfile_nice() if args.media_nice is None else args.media_nice
    per_machine = args.per_machine or args.workers

    # Killed with SIGTERM, it still stops what it started (Platform.__exit__): orphaned workers
    # on its Redis database would take the next run's jobs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="reelflow-bench-publish-"))
    cache_dir = Path("/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir()) / f"reelflow-bench-publish-{os.getpid()}"
    try:
        return bench(args, work=work, cache_dir=cache_dir, control_lines=control_lines, media_nice=media_nice,
                     per_machine=per_machine)  # fmt: skip
    finally:
        if args.keep_work:
            print(f"work folder kept: {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(cache_dir, ignore_errors=True)


class Platform:
    """Everything `make run` starts, for the benchmark (see the module's docstring): entered, it
    has the studio's origin, the simulated cloud's endpoint, the media workers' logs and a
    signed-in publisher's session cookie."""

    def __init__(self, args, *, work: Path, cache_dir: Path, control_lines: list[str], media_nice: int):
        self.args, self.work, self.cache_dir = args, work, cache_dir
        self.control_lines, self.media_nice = control_lines, media_nice
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.server = None

    def _env(self) -> dict:
        args, work = self.args, self.work
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
            "REDIS_URL": args.redis_url,
            "CHANNELS_PREFIX": "reelflow-bench-publish",
            "CACHE_PREFIX": "reelflow-bench-publish",
            "S3_ENDPOINT_URL": self.server.endpoint_url,
            "S3_ACCESS_KEY": ACCESS_KEY,
            "S3_SECRET_KEY": SECRET_KEY,
            "REELFLOW_SITE_URL": self.origin,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "REELFLOW_VAR_DIR": str(work),
            "REELFLOW_DECODED_CACHE_DIR": str(self.cache_dir),
            "REELFLOW_QC_MODE": "always",
            "AWS_REGIONS": "us-east-1",
            "AWS_ENDPOINT_URL_EC2": self.moto_endpoint,
            "AWS_ENDPOINT_URL_SQS": self.moto_endpoint,
            "AWS_ACCESS_KEY_ID": "simulated",
            "AWS_SECRET_ACCESS_KEY": "simulated",
            "SECURITY_EVENTS_TOKEN": EVENTS_TOKEN,
            "SECURITY_LAUNCH_ALLOWLIST": ALLOWLIST,
            "PYTHONUNBUFFERED": "1",
            **({"SECURITY_SWEEP_SECONDS": str(args.sweep_seconds)} if args.sweep_seconds else {}),
        }

    def __enter__(self) -> Platform:
        from devservices.seaweed import start_seaweed

        self.server = start_seaweed(data_dir=self.work / "s3", access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        try:
            port, moto_port = free_port(), free_port()
            self.origin = f"http://127.0.0.1:{port}"
            self.moto_endpoint = f"http://127.0.0.1:{moto_port}"
            self.env = self._env()
            os.environ.update(self.env)
            self._database()
            self._processes(port, moto_port)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _database(self) -> None:
        import django

        django.setup()
        import django_rq
        from django.conf import settings
        from django.core.management import call_command
        from django.test import Client

        from core import s3
        from core.roles import Role
        from core.services import user_create_with_role
        from pipeline.models import RuleSet

        args = self.args
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; Redis {args.redis_url}; "
              f"work folder {self.work}", flush=True)  # fmt: skip
        connection = django_rq.get_connection("default")
        db = connection.connection_pool.connection_kwargs.get("db", 0)
        others = [c for c in connection.client_list() if int(c.get("db", -1)) == db and c.get("cmd") != "client|list"]
        if others:  # workers of a benchmark that was killed would take this run's jobs
            raise SystemExit(f"Redis database {db} has {len(others)} other clients (a benchmark still running, or "
                             f"its orphaned workers?): stop them or pass --redis-url with a free database")  # fmt: skip
        connection.flushdb()
        call_command("migrate", verbosity=0)
        call_command("collectstatic", "--noinput", verbosity=0)
        s3.buckets_ensure([settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA, settings.S3_BUCKET_BACKUP],
                          cors_origins=[self.origin])  # fmt: skip
        publisher, _ = user_create_with_role(username="benchpub", role=Role.PUBLISHER)
        quality_sets = [rs.name for rs in RuleSet.objects.filter(is_active=True, rules__kind="quality_min",
                                                                  profiles__slug=args.profile).distinct()]  # fmt: skip
        print(f"profile {args.profile}: quality rule sets {quality_sets or 'NONE (the job will not wait for QC)'}; "
              f"REELFLOW_QC_MODE={settings.REELFLOW_QC_MODE}", flush=True)  # fmt: skip
        client = Client()
        client.force_login(publisher)
        self.cookie = (settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value)

    def _start(self, argv: list[str], log: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(argv, cwd=ROOT, env=env or self.env, stdout=(self.work / log).open("wb"),
                                stderr=subprocess.STDOUT)  # fmt: skip

    def _processes(self, port: int, moto_port: int) -> None:
        import requests
        from django.conf import settings

        from pipeline.queues import MEDIA as MEDIA_QUEUES

        args, nice = self.args, self.media_nice
        # The simulated cloud, its own process as AWS is; seeded with the demo fleet.
        self.procs.append(self._start([PY, "-m", "security.simcloud", "--port", str(moto_port)], "moto.log"))
        self.procs.append(self._start(
            [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "--websocket_connect_timeout", "30", "config.asgi:application"],
            "daphne.log", env={**self.env, "ASGI_THREADS": self.env.get("ASGI_THREADS", "32")}))  # fmt: skip
        self.logs = [self.work / f"media-{i}.log" for i in range(args.workers)]
        for log in self.logs:
            self.workers.append(self._start([*(["nice", "-n", str(nice)] if nice else []), PY, "manage.py", "rqworker",
                                             *MEDIA_QUEUES, "--with-scheduler"], log.name))  # fmt: skip
        for i, line in enumerate(self.control_lines):
            self.workers.append(self._start([PY, "manage.py", "rqworker", *line.split(), "--with-scheduler"], f"control-{i}.log"))
        ready_s = workers_ready(self.workers, timeout=300)
        # The scheduler once the workers are up, as its first sweeps would find no worker before.
        self.procs.append(self._start([PY, "manage.py", "rqcron", "config.cron"], "cron.log"))
        for _ in range(600):
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.origin}/accounts/login/", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("daphne did not answer")
        print(f"{args.workers} media workers (nice {nice}) on {' '.join(MEDIA_QUEUES)}; control workers on "
              + "; ".join(self.control_lines) + f"; security sweep every {settings.SECURITY_SWEEP_SECONDS} s; "
              f"all idle after {ready_s:.1f} s", flush=True)  # fmt: skip

    def __exit__(self, kind, exc, tb) -> None:
        if exc is not None:
            for log in sorted(self.work.glob("*.log")):  # what the processes said, before their folder goes
                print(f"--- {log.name}, last lines:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-12:]),
                      file=sys.stderr)  # fmt: skip
        stop_workers(self.workers)
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.server is not None:
            self.server.stop()


def sources_of(args, work: Path) -> list[tuple[str, Path]]:
    generated = work / "source.mp4"
    print(f"making a {args.duration} s 720p source ...", flush=True)
    make_source(generated, args.duration)
    sources = [("testsrc2", generated)]
    flower = None if args.no_flower else sample_path("flower.mp4")
    if flower is not None:
        sources.append(("flower", flower))
    elif not args.no_flower:
        print("flower.mp4 not found ($REELFLOW_SAMPLES_DIR, ../shared/samples, /work/shared/samples): skipped", flush=True)
    return sources


def measure_one(platform: Platform, *, name: str, path: Path, run: int, out: Path) -> tuple[dict, dict | None]:
    """One source through the studio between two runs of the one-ffmpeg baseline; the
    detection figures when the launches ran beside it (the generated source)."""
    from django.conf import settings

    from pipeline import chunking
    from pipeline import ffmpeg as rf_ffmpeg
    from pipeline.models import Profile
    from pipeline.services.planning import rendition_plan

    args = platform.args
    info = rf_ffmpeg.probe(str(path))
    fps = chunking.planning_fps(fps=info.video.fps, avg_fps=info.video.avg_fps, vfr=info.video.vfr)
    gop = chunking.segment_frames(fps=fps, segment_seconds=settings.REELFLOW_SEGMENT_SECONDS)
    rungs, audio = rendition_plan(SimpleNamespace(profile=Profile.objects.get(slug=args.profile)), info)
    out.mkdir()
    label = f"{name} run {run + 1}"
    baseline = bench_pipeline().baseline
    before = baseline(path, out, rungs, audio, gop)
    print(f"  [{label}] (a) one ffmpeg, {len(rungs)} rungs + {len(audio)} audio: {before[0]:.1f} s wall, "
          f"{before[1]:.1f} CPU-s", flush=True)  # fmt: skip
    detection = (Detection(endpoint=platform.moto_endpoint, origin=platform.origin, every=args.launch_every)
                 if name == "testsrc2" else None)  # fmt: skip
    result = run_job(source=path, label=label, args=args, origin=platform.origin, cookie=platform.cookie,
                     logs=platform.logs, detection=detection)  # fmt: skip
    after = baseline(path, out, rungs, audio, gop)
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
    if detection is None:
        return result, None
    figures = detection.figures()
    for path_name in ("sweep", "event"):
        d = figures[path_name]
        print(f"  [{label}] detection through the {path_name}: {d['stopped']}/{d['launches']} stopped, "
              f"median {d['median_s']} s, worst {d['max_s']} s: {d['seconds']}", flush=True)  # fmt: skip
    for error in figures["errors"]:
        print(f"  [{label}] detection error: {error}", flush=True)
    return result, figures


def source_figures(runs: list[dict]) -> dict:
    """One source's figures, the medians of its runs."""

    def median_of(key: str, digits: int = 2) -> float | None:
        return rnd(med([r[key] for r in runs if r[key] is not None]), digits)

    return {
        "source_s": round(runs[-1]["job"].asset.duration_s or 0, 2),
        "chunk_plan": runs[-1]["chunk_plan"], "units": runs[-1]["units"], "measurements": runs[-1]["tasks"],
        **{key: median_of(key) for key in ("baseline_s", "baseline_cpu_s", "upload_s", "first_playable_s", "published_s")},
        "first_playable_ratio": median_of("first_playable_ratio", 3), "published_ratio": median_of("published_ratio", 3),
        "first_playable_ratios": [round(r["first_playable_ratio"], 3) for r in runs],
        "published_ratios": [round(r["published_ratio"], 3) for r in runs],
        "preview": [r["preview"] for r in runs],
        "unit_cpu_s": median_of("unit_cpu_s"), "qc_cpu_s": median_of("qc_cpu_s"),
        "qc_cpu_ratio": median_of("qc_cpu_ratio", 3), "load": [r["load"] for r in runs],
    }  # fmt: skip


def detection_figures(detections: list[dict]) -> dict:
    """The launches of every run: the worst and the median per path; a launch never stopped
    counts as a miss (its path's worst becomes null), never as fast."""
    sweep = [s for d in detections for s in d["sweep"]["seconds"]]
    event = [s for d in detections for s in d["event"]["seconds"]]
    missed = {p: sum(d[p]["launches"] - d[p]["stopped"] for d in detections) for p in ("sweep", "event")}
    return {
        "detect_sweep_s": None if missed["sweep"] or not sweep else rnd(max(sweep)),
        "detect_event_s": None if missed["event"] or not event else rnd(max(event)),
        "detect_sweep_median_s": rnd(med(sweep)), "detect_event_median_s": rnd(med(event)),
        "detect_sweep_all_s": sweep, "detect_event_all_s": event,
        "detect_launches": {"sweep": len(sweep) + missed["sweep"], "event": len(event) + missed["event"]},
        "detect_not_stopped": missed,
    }  # fmt: skip


def summary_print(figures: dict) -> None:
    from django.conf import settings

    for name, s in figures["sources"].items():
        print(f"{name} ({s['source_s']} s): first playable {s['first_playable_s']} s = {s['first_playable_ratio']} x "
              f"one ffmpeg (goal <= {GOALS['first_playable_ratio']}); published {s['published_s']} s = "
              f"{s['published_ratio']} x (goal <= {GOALS['published_ratio']}); QC CPU {s['qc_cpu_ratio']} x the "
              f"encode's (goal <= {GOALS['qc_cpu_ratio']})", flush=True)  # fmt: skip
    print(f"detection while the encode ran (sweep every {settings.SECURITY_SWEEP_SECONDS} s): sweep worst "
          f"{figures['detect_sweep_s']} s, median {figures['detect_sweep_median_s']} s (goal <= {GOALS['detect_sweep_s']:g}); "
          f"event worst {figures['detect_event_s']} s, median {figures['detect_event_median_s']} s "
          f"(goal <= {GOALS['detect_event_s']:g}); not stopped {figures['detect_not_stopped']}", flush=True)  # fmt: skip


def bench(args, *, work: Path, cache_dir: Path, control_lines: list[str], media_nice: int, per_machine: int) -> int:
    results: dict[str, list[dict]] = {}
    detections = []
    with Platform(args, work=work, cache_dir=cache_dir, control_lines=control_lines, media_nice=media_nice) as platform:
        sources = sources_of(args, work)
        decode = decode_rate(sources[0][1])
        print(f"source decode, one thread: {decode * 1e9:.2f} CPU-s per giga pixel-frame", flush=True)
        for run in range(args.runs):
            for name, path in sources:
                result, detected = measure_one(platform, name=name, path=path, run=run, out=work / f"baseline-{name}-{run}")
                results.setdefault(name, []).append(result)
                detections += [detected] if detected else []
    from django.conf import settings

    figures: dict = {"profile": args.profile, "workers": args.workers, "control_queues": control_lines,
                     "media_nice": media_nice, "runs": args.runs, "cpus": os.cpu_count(),
                     "sweep_interval_s": settings.SECURITY_SWEEP_SECONDS, "launch_every_s": args.launch_every}  # fmt: skip
    figures["sources"] = {name: source_figures(runs) for name, runs in results.items() if runs}
    main_source = figures["sources"].get("testsrc2", {})
    for key in ("first_playable_ratio", "published_ratio", "qc_cpu_ratio", "first_playable_s", "published_s", "baseline_s"):
        figures[key] = main_source.get(key)
    figures.update(detection_figures(detections))
    model_table = {}
    if results.get("testsrc2"):
        model_table, figures["model_check"] = model_report(results["testsrc2"][-1], decode=decode, args=args,
                                                           per_machine=per_machine)  # fmt: skip
    figures["modelled_published_s"] = {t: {w: v["published_s"] for w, v in row.items()} for t, row in model_table.items()}
    figures["modelled"] = model_table
    summary_print(figures)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
