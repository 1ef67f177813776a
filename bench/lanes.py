"""Lanes benchmark: how long a launch by an unauthorized principal in the simulated cloud takes
to be stopped while a real encode with quality measurement keeps both media workers busy.

    .venv/bin/python bench/lanes.py [--duration 40] [--sweeps 4] [--events 5] [--layout procfile|shared]

Standalone: its own SeaweedFS, a simulated cloud (moto_server in its own process, seeded with
the demo fleet), a temporary SQLite database, Redis from BENCH_REDIS_URL (db 12 by default,
emptied), and the processes `make run` starts, with the queues the Procfile gives them: web
(daphne), 2 media workers, the security, control and backup workers, the scheduler
(`rqcron config.cron`, sweep every SECURITY_SWEEP_SECONDS). A D s 720p testsrc2 clip is uploaded
with the standard profile (quality measurement on); while both media workers are busy (checked
at every launch), encoding and then measuring quality (launches go on until one of each kind
lands during the measurement):

(a) sweep path: an instance launched from an unapproved image and announced by no event; timed
    from the launch until EC2 (polled from outside every 100 ms) says stopping. Each launch
    waits a random part of the sweep interval first, so the launches sample its phase.
(b) event path: an instance launched by a principal outside the allowlist; CloudTrail's
    RunInstances (as EventBridge delivers it) is POSTed to the web's /security/events/ec2/;
    timed from the POST until EC2 says stopping. The same is measured before the upload, with
    the media workers idle: the machine's own baseline, in the same run.

`--layout shared` runs the layout before lanes instead (media workers on every queue, security
included; `control` on `webhooks ingest default`), for comparison. Prints each measurement, the
sweeps' queue waits, the processes' memory, then one line holding a JSON object whose first
keys are `detect_sweep_s` and `detect_event_s` (the worst of their launches).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from threading import Thread

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
VENV_BIN = Path(PY).parent

from bench_common import django_setup_then  # noqa: E402 - beside this script
from media_bench import make_source  # noqa: E402

from devservices import stack  # noqa: E402

SWEEP_GOAL_S, EVENT_GOAL_S = 15.0, 2.0
ALLOWLIST = "arn:aws:iam::123456789012:role/reelflow-*"
INTRUDER = "arn:aws:iam::123456789012:user/intruder"
EVENTS_TOKEN = "bench-lanes-token"
UNAPPROVED_AMI = "ami-0badc0ffee0000001"
RQWORKER = ".venv/bin/python -m devservices.respawn -- .venv/bin/python manage.py rqworker"
SHARED = {  # the Procfile before lanes
    "worker": f"{RQWORKER} ingest publish package assemble quality encode backup security default --with-scheduler",
    "control": f"{RQWORKER} webhooks ingest default",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.1)


def worker_lines(layout: str) -> dict[str, str]:
    """Each worker process to start (name -> command line, run as honcho runs a Procfile's)."""
    if layout == "shared":
        return {"worker-0": SHARED["worker"], "worker-1": SHARED["worker"], "control": SHARED["control"]}
    commands = stack.procfile_commands()
    lines = {f"worker-{i}": commands["worker"] for i in range(2)}
    for name in stack.LANES["control"]:
        lines[name] = commands[name]
    return lines


def kill_tree(proc: subprocess.Popen) -> None:
    import psutil

    try:
        family = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def state_of(ec2, instance_id: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def wait_stopped(ec2, instance_id: str, started: float, timeout: float) -> float | None:
    while time.monotonic() - started < timeout:
        if state_of(ec2, instance_id) in ("stopping", "stopped"):
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def run_instances_event(instance_id: str, *, event_id: str) -> bytes:
    """CloudTrail's RunInstances record as EventBridge delivers it ("AWS API Call via CloudTrail")."""
    return json.dumps(
        {
            "version": "0", "id": f"eb-{event_id}", "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.ec2", "account": "123456789012", "region": "us-east-1",
            "detail": {
                "eventVersion": "1.08",
                "userIdentity": {"type": "IAMUser", "arn": INTRUDER, "accountId": "123456789012"},
                "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances", "awsRegion": "us-east-1",
                "responseElements": {"instancesSet": {"items": [{"instanceId": instance_id}]}},
                "eventID": event_id, "eventType": "AwsApiCall",
                # The intake checks the launch against EC2 (LaunchTime near this) before acting.
                "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }
    ).encode()  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=40, help="seconds of the 720p source")
    parser.add_argument("--sweeps", type=int, default=4, help="launches caught by the sweep")
    parser.add_argument("--events", type=int, default=5, help="launches announced by an event")
    parser.add_argument("--idle-events", type=int, default=3, help="event launches before the upload (baseline)")
    parser.add_argument("--layout", choices=["procfile", "shared"], default="procfile")
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--sweep-timeout", type=float, default=600, help="give up on one sweep launch after this")
    return parser.parse_args()


class Platform:
    """SeaweedFS, the simulated cloud, a temporary SQLite database, Django configured for them,
    the source clip, and the processes `make run` starts in --layout; stopped on exit (the
    temporary folder kept, with the logs, unless ``done`` was set)."""

    def __init__(self, args) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="reelflow-lanes-"))
        self.procs: dict[str, subprocess.Popen] = {}
        self.done = False

    def __enter__(self) -> Platform:
        from devservices.seaweed import start_seaweed

        work = self.work
        self.server = start_seaweed(data_dir=work / "s3", access_key="bench-access", secret_key="bench-secret-key-123456")
        self.moto_port, self.web_port = free_port(), free_port()
        self.moto = subprocess.Popen(
            [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.cloud = cloud = f"http://127.0.0.1:{self.moto_port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "REELFLOW_VAR_DIR": str(work),
            "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
            "S3_ENDPOINT_URL": self.server.endpoint_url,
            "S3_ACCESS_KEY": "bench-access",
            "S3_SECRET_KEY": "bench-secret-key-123456",
            "AWS_REGIONS": "us-east-1",
            "AWS_ENDPOINT_URL_EC2": cloud,
            "AWS_ENDPOINT_URL_SQS": cloud,
            "AWS_ACCESS_KEY_ID": "simulated",
            "AWS_SECRET_ACCESS_KEY": "simulated",
            "SECURITY_LAUNCH_ALLOWLIST": ALLOWLIST,
            "SECURITY_EVENTS_TOKEN": EVENTS_TOKEN,
            "REELFLOW_QC_MODE": "always",
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update(self.env)
        django_setup_then(self._services, lambda: self.__exit__(None, None, None))
        return self

    def _services(self) -> None:
        self._database()
        self._processes()

    def _database(self) -> None:
        import django_rq
        from django.conf import settings
        from django.core.management import call_command

        from core import s3
        from core.roles import Role
        from core.services import user_create_with_role
        from security import simcloud

        wait_port(self.moto_port, self.moto, "moto_server")
        self.redis = django_rq.get_connection("default")
        self.redis.flushdb()
        call_command("migrate", verbosity=0)
        s3.buckets_ensure([settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA, settings.S3_BUCKET_BACKUP])
        user_create_with_role(username="bench", role=Role.PUBLISHER)
        self.ec2 = simcloud.ec2_client(self.cloud)
        simcloud.demo_fleet_seed(self.ec2)  # a fleet for the sweep to read, as under make run
        self.source = self.work / "source.mp4"
        print(f"making a {self.args.duration} s 720p source ...", flush=True)
        make_source(self.source, self.args.duration)

    def _start(self, name: str, argv: list[str], extra: dict | None = None) -> None:
        log = (self.logs / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen(
            argv, cwd=ROOT, env={**self.env, **(extra or {})}, stdout=log, stderr=subprocess.STDOUT
        )

    def _processes(self) -> None:
        from rq import Worker

        self.logs = self.work / "logs"
        self.logs.mkdir()
        lines = worker_lines(self.args.layout)
        for name, command in lines.items():
            self._start(name, ["/bin/sh", "-c", command])
        self._start("web", [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.web_port), "config.asgi:application"],
                    {"ASGI_THREADS": "32"})  # fmt: skip
        self._start("scheduler", [PY, "manage.py", "rqcron", "config.cron"])
        wait_port(self.web_port, self.procs["web"], "daphne")
        deadline = time.monotonic() + 120
        while len(Worker.all(connection=self.redis)) < len(lines):
            if time.monotonic() > deadline:
                raise SystemExit("workers did not register within 120 s (logs in " + str(self.logs) + ")")
            time.sleep(0.2)
        self.media = {w.name for w in Worker.all(connection=self.redis) if "encode" in w.queue_names()}
        print(f"layout {self.args.layout}:\n" + "\n".join(f"  {n}: {c}" for n, c in lines.items()), flush=True)

    def __exit__(self, kind, exc, tb) -> None:
        for proc in self.procs.values():
            kill_tree(proc)
        self.moto.terminate()
        self.moto.wait(timeout=10)
        self.server.stop()
        if self.done:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            print(f"logs kept in {self.work / 'logs'}", file=sys.stderr)

    def upload(self) -> None:
        from django.conf import settings

        from core import s3
        from pipeline import events
        from pipeline.models import IngestEvent

        key = f"uploads/bench/{uuid.uuid4().hex[:8]}-source.mp4"
        s3.client().upload_file(
            str(self.source), settings.S3_BUCKET_INGEST, key, ExtraArgs={"Metadata": {"profile": self.args.profile}}
        )
        events.object_created_receive(
            created=events.ObjectCreated(bucket=settings.S3_BUCKET_INGEST, key=key), source=IngestEvent.Source.CLI
        )

    def media_busy(self) -> list[str]:
        """What each media worker is doing: the queue of its current job, or idle."""
        from rq import Worker

        found = []
        for w in Worker.all(connection=self.redis):
            if w.name in self.media:
                job = w.get_current_job()
                found.append(job.origin if job is not None and w.get_state() == "busy" else "idle")
        return sorted(found)

    def wait_busy(self, timeout: float = 300) -> list[str] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doing = self.media_busy()
            if doing and "idle" not in doing:
                return doing
            time.sleep(0.2)
        return None

    def event_launch(self, event_id: str) -> tuple[float, float]:
        """An instance launched by the intruder, its RunInstances event POSTed to the web:
        seconds until EC2 says stopping, and until the web answered."""
        from security import simcloud

        ec2 = self.ec2
        instance_id = simcloud.instance_launch(ec2)  # compliant: only the principal gives it away
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.web_port}/security/events/ec2/", data=run_instances_event(instance_id, event_id=event_id),
            method="POST", headers={"Content-Type": "application/json", "Authorization": f"Bearer {EVENTS_TOKEN}"},
        )  # fmt: skip
        answered: dict = {}
        started = time.monotonic()

        def post() -> None:
            with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - our own web
                answered["status"] = resp.status
            answered["s"] = time.monotonic() - started

        poster = Thread(target=post)
        poster.start()
        took = wait_stopped(ec2, instance_id, started, 60)
        poster.join()
        if took is None or answered.get("status") != 200:
            raise SystemExit(f"event path: {answered}, stopped after {took}")
        return took, answered["s"]


def launch_one(platform: Platform, m: dict, kind: str, index: int, doing: list[str], rng: random.Random) -> None:
    """One launch of ``kind`` while the media workers do ``doing``, recorded in ``m``."""
    from security import simcloud

    if kind == "sweep":
        time.sleep(rng.uniform(0, m["interval"]))  # a random phase of the sweep's interval
        instance_id = simcloud.instance_launch(platform.ec2, image_id=UNAPPROVED_AMI)
        started = time.monotonic()
        timeout = platform.args.sweep_timeout
        took = wait_stopped(platform.ec2, instance_id, started, timeout)
        m["sweeps"].append(took if took is not None else float("inf"))
        shown = f"{took:.1f} s" if took is not None else f"not within {timeout:g} s"
        print(f"  sweep path, media workers on {'+'.join(doing)}: launch -> stopping {shown}", flush=True)
    else:
        took, answered_s = platform.event_launch(f"lanes-{index}")
        m["event_s"].append(took)
        m["handled_s"].append(answered_s)
        print(f"  event path, media workers on {'+'.join(doing)}: POST -> stopping {took:.2f} s "
              f"(answered after {answered_s:.2f} s)", flush=True)  # fmt: skip


def measure(platform: Platform, args) -> dict:
    """The idle baseline, the upload, then the launches while the media workers are busy."""
    from django.conf import settings

    # Baseline in the same run: the event path with nothing encoding (the machine's own load).
    idle_s = []
    for index in range(args.idle_events):
        idle_s.append(platform.event_launch(f"idle-{index}")[0])
    if idle_s:
        print("event path, media workers idle: POST -> stopping "
              + ", ".join(f"{t:.2f}" for t in idle_s) + " s", flush=True)  # fmt: skip

    platform.upload()
    if platform.wait_busy() is None:
        raise SystemExit("the media workers never got busy (logs in " + str(platform.logs) + ")")
    m = {"idle_s": idle_s, "t_start": time.time(), "interval": settings.SECURITY_SWEEP_SECONDS,
         "sweeps": [], "event_s": [], "handled_s": [], "busy_at": []}  # fmt: skip
    rng = random.Random(7)
    plan = ["sweep"] * args.sweeps + ["event"] * args.events
    rng.shuffle(plan)
    # The planned launches, then more (alternating) until one of each kind lands while the media
    # workers measure quality, which comes after the encode (their queue order puts it last).
    index, during_quality = 0, set()
    while index < len(plan) or during_quality != {"sweep", "event"}:
        kind = plan[index] if index < len(plan) else ("sweep", "event")[index % 2]
        index += 1
        doing = platform.wait_busy(300 if index <= len(plan) else 5)
        if doing is None:
            if index <= len(plan):
                raise SystemExit("the media workers were not both busy (logs in " + str(platform.logs) + ")")
            print("  the media workers finished before a launch during the quality measurement", flush=True)
            break
        m["busy_at"].append(doing)
        if "quality" in doing:
            during_quality.add(kind)
        launch_one(platform, m, kind, index, doing, rng)
    return m


def sweep_jobs(redis, t_start: float) -> tuple[list[float], list[float]]:
    """The sweeps the scheduler queued during the measurements: queue wait and run time."""
    from rq.cron import get_cron_job_ids
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    waits, runs = [], []
    for job_id in get_cron_job_ids("security-sweep", redis):
        try:
            job = Job.fetch(job_id, connection=redis)
        except NoSuchJobError:  # its result expired
            continue
        if job.enqueued_at is None or job.enqueued_at.timestamp() < t_start:
            continue
        if job.started_at is not None:
            waits.append((job.started_at - job.enqueued_at).total_seconds())
        if job.started_at is not None and job.ended_at is not None:
            runs.append((job.ended_at - job.started_at).total_seconds())
    return waits, runs


def python_rss(proc: subprocess.Popen) -> int:
    """MiB of the Python process a Procfile line runs (not the shell, the respawner or ffmpeg)."""
    import psutil

    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    ours = [p for p in tree if any(w in " ".join(p.cmdline()) for w in ("manage.py", "daphne"))]
    return round(max(p.memory_info().rss for p in ours) / 2**20) if ours else 0


def results_of(platform: Platform, m: dict) -> dict:
    """The sweeps' queue waits, memory and the two paths' figures, printed; the figures returned."""
    sweeps, event_s, idle_s, interval = m["sweeps"], m["event_s"], m["idle_s"], m["interval"]
    waits, runs = sweep_jobs(platform.redis, m["t_start"])
    rss = {name: python_rss(p) for name, p in platform.procs.items()}
    still_busy = platform.media_busy()
    print(f"sweeps queued during the run: {len(waits)} started, queue wait max "
          f"{max(waits, default=float('nan')):.1f} s, run p50 {statistics.median(runs) if runs else float('nan'):.2f} s; "
          f"media workers at the end: {', '.join(still_busy)}", flush=True)  # fmt: skip
    print("memory (RSS MiB): " + ", ".join(f"{n} {v}" for n, v in rss.items()), flush=True)
    detect_sweep, detect_event = max(sweeps), max(event_s)
    print(f"(a) sweep path: worst {detect_sweep:.1f} s, median {statistics.median(sweeps):.1f} s over "
          f"{len(sweeps)} launches (interval {interval} s)   goal <= {SWEEP_GOAL_S:g} s: "
          f"{'met' if detect_sweep <= SWEEP_GOAL_S else 'MISSED'}", flush=True)
    print(f"(b) event path: worst {detect_event:.2f} s, median {statistics.median(event_s):.2f} s over "
          f"{len(event_s)} launches   goal <= {EVENT_GOAL_S:g} s: "
          f"{'met' if detect_event <= EVENT_GOAL_S else 'MISSED'}", flush=True)
    return {
        "detect_sweep_s": round(detect_sweep, 2),
        "detect_event_s": round(detect_event, 2),
        "benchmark": "lanes",
        "layout": platform.args.layout,
        "sweep_median_s": round(statistics.median(sweeps), 2),
        "event_median_s": round(statistics.median(event_s), 2),
        "event_answered_max_s": round(max(m["handled_s"]), 2),
        "event_idle_median_s": round(statistics.median(idle_s), 2) if idle_s else None,
        "sweep_interval_s": interval,
        "sweep_queue_wait_max_s": round(max(waits), 2) if waits else None,
        "sweep_run_p50_s": round(statistics.median(runs), 2) if runs else None,
        "media_busy_at_launches": m["busy_at"],
        "rss_mib": rss,
        "load_average": os.getloadavg()[0],
    }


def main() -> int:
    args = parse_args()
    with Platform(args) as platform:
        results = results_of(platform, measure(platform, args))
        platform.done = bool(results)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
