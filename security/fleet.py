"""What the fleet expects of a worker, and what a worker says about itself when it registers."""

import functools
import hashlib
import hmac
import json
import os
import platform
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import django
import rq
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def reelflow_version() -> str:
    """The version of the code this process runs (pyproject.toml)."""
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]["version"]


def configured_fleet_version() -> str:
    """The version this process would set as the fleet's: SECURITY_FLEET_VERSION, else its own."""
    return settings.SECURITY_FLEET_VERSION or reelflow_version()


def fleet_version() -> str:
    """The version every worker must run, from the fleet baseline (see FleetBaseline)."""
    from security.services.baseline import fleet_baseline_get

    return fleet_baseline_get().version


def worker_token() -> str:
    """The registration token: SECURITY_WORKER_TOKEN, else one derived from the secret key.

    Deriving it means a stack started by `make run` needs no new secret, and a process holding
    another secret key (not ours) presents another token.
    """
    if settings.SECURITY_WORKER_TOKEN:
        return settings.SECURITY_WORKER_TOKEN
    return hmac.new(settings.SECRET_KEY.encode(), b"reelflow-worker-registration", hashlib.sha256).hexdigest()


def token_digest(token: str) -> str:
    """What a registration carries instead of the token itself."""
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


def token_valid(digest: str) -> bool:
    """Checked against the baseline's digest, never the evaluating process's own token: a
    misconfigured worker judging others (or itself) must reach the fleet's verdict."""
    from security.services.baseline import fleet_baseline_get

    expected = fleet_baseline_get().token_sha256
    return bool(digest) and bool(expected) and hmac.compare_digest(digest, expected)


def registration_problems(document: dict) -> list[str]:
    """What keeps a worker out of the fleet, each as one sentence saying what to set, judged
    against the fleet baseline (what the worker rules check). A worker logs these itself: the
    person who started it reads its log, not the security pages."""
    problems = []
    if not token_valid(str(document.get("TokenSha256", ""))):
        problems.append(
            "this worker's registration token does not match the fleet's: set DJANGO_SECRET_KEY to the "
            "web machine's value (or SECURITY_WORKER_TOKEN to the fleet's, if the fleet sets one)"
        )
    expected = fleet_version()
    if document.get("Version") != expected:
        problems.append(
            f"this worker runs Reelflow {document.get('Version')} but the fleet runs {expected}: "
            "deploy the fleet's version on this machine"
        )
    if document.get("Debug"):
        problems.append("this worker runs with DEBUG on: set DJANGO_DEBUG=false")
    return problems


@functools.cache
def ffmpeg_version() -> str:
    try:
        out = subprocess.run(  # noqa: S603 - the binary comes from settings
            [settings.FFMPEG_BINARY, "-version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({type(exc).__name__})"
    return out.splitlines()[0] if out else "unknown"


def _endpoint(url: str) -> dict:
    """Where a URL points, never with its credentials."""
    parts = urlsplit(url)
    return {
        "Scheme": parts.scheme,
        "Host": parts.hostname or "",
        "Port": parts.port,
        "Path": parts.path.lstrip("/"),
        "Tls": parts.scheme in ("https", "rediss"),
        "Authenticated": bool(parts.password or parts.username),
    }


# Settings whose values shape behaviour and are safe to hash together (no secrets).
_DIGEST_SETTINGS = (
    "DEBUG", "ALLOWED_HOSTS", "RQ_QUEUE_NAMES", "RQ_DEFAULT_TIMEOUT", "S3_ENDPOINT_URL", "S3_REGION",
    "S3_BUCKET_INGEST", "S3_BUCKET_MEDIA", "S3_BUCKET_BACKUP", "REELFLOW_CHUNK_SECONDS",
    "REELFLOW_SEGMENT_SECONDS", "REELFLOW_MAX_DURATION_SECONDS", "FFMPEG_BINARY", "FFPROBE_BINARY",
    "TIME_ZONE", "USE_TZ",
)  # fmt: skip


def settings_digest() -> str:
    values = {name: getattr(settings, name, None) for name in _DIGEST_SETTINGS}
    values["DATABASE_ENGINE"] = settings.DATABASES["default"]["ENGINE"]
    values["REDIS"] = _endpoint(settings.REDIS_URL)
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def registration_document(
    *, worker_name: str, queues: list[str], pid: int | None = None, hostname: str = ""
) -> dict:
    """What a worker says about itself: the resource the worker policies are evaluated on."""
    db = settings.DATABASES["default"]
    return {
        "WorkerName": worker_name,
        "Hostname": hostname or socket.gethostname(),
        "Pid": pid or os.getpid(),
        "Queues": list(queues),
        "Version": reelflow_version(),
        "FfmpegVersion": ffmpeg_version(),
        "PythonVersion": platform.python_version(),
        "DjangoVersion": django.get_version(),
        "RqVersion": rq.VERSION,
        "SettingsModule": os.environ.get("DJANGO_SETTINGS_MODULE", ""),
        "SettingsDigest": settings_digest(),
        "Debug": bool(settings.DEBUG),
        "Redis": _endpoint(settings.REDIS_URL),
        "S3": _endpoint(settings.S3_ENDPOINT_URL),
        "Database": {"Vendor": connection.vendor, "Host": db.get("HOST") or "", "Engine": db["ENGINE"]},
        "Executable": sys.executable,
        "TokenSha256": token_digest(worker_token()),
    }
