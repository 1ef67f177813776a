"""A local SeaweedFS S3 server (`weed mini`) for development and tests.

Development (`make run`, a Procfile line under honcho, weed in the foreground)::

    S3_ACCESS_KEY=... S3_SECRET_KEY=... python -m devservices.seaweed \\
        --data-dir var/s3 --s3-port 8333 \\
        --webhook-url http://127.0.0.1:8000/events/s3/ --webhook-token-file var/s3-events-token

Tests (background, free ports, temp folder)::

    server = start_seaweed(data_dir=tmp, access_key="ak", secret_key="sk", webhook_url=url, webhook_token=tok)
    ...
    server.stop()

What weed is made to do, CORS and the filer events: docs/seaweedfs.md; the command line and
configuration: devservices/weed_command.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

from devservices.weed_command import (
    DEFAULT_IP,
    DEFAULT_S3_PORT,
    build_command,
    dev_ports,
    leftover_sockets,
    ports_from_argv,
    remove_stale_sockets,
    weed_env,
)

_LOG_TAIL_LINES = 40

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
            remove_stale_sockets(leftover_sockets(self.data_dir, self.ports))
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


def _spawn(*, data_dir: Path, log: Path, s3_port: int | None, access_key: str, secret_key: str,
           ports: dict[str, int] | None, ip: str, webhook_url: str | None, webhook_token: str | None) -> SeaweedServer:  # fmt: skip
    """Write the configuration and start `weed mini` in the background, its output appended to
    ``log``; not yet waited for."""
    argv, cwd = build_command(
        data_dir=data_dir, s3_port=s3_port, access_key=access_key, secret_key=secret_key, ports=ports, ip=ip,
        webhook_url=webhook_url, webhook_token=webhook_token,
    )  # fmt: skip
    all_ports = ports_from_argv(argv)
    log.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log, "ab")  # noqa: SIM115 - owned by the SeaweedServer, closed in stop()
    log_file.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
    log_file.flush()
    process = subprocess.Popen(
        argv, cwd=cwd, env=weed_env(), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent_hook(),  # noqa: PLW1509
    )  # fmt: skip
    return SeaweedServer(
        data_dir=data_dir, ip=ip, s3_port=all_ports["s3"], access_key=access_key, secret_key=secret_key,
        process=process, ports=all_ports, log_path=log, _log_file=log_file,
    )  # fmt: skip


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
        started = time.monotonic()
        server = _spawn(
            data_dir=data_dir, log=log, s3_port=s3_port, access_key=access_key, secret_key=secret_key,
            ports=ports, ip=ip, webhook_url=webhook_url, webhook_token=webhook_token,
        )  # fmt: skip
        try:
            _wait(server.endpoint_url, access_key, secret_key, timeout, server.process)
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
    remove_stale_sockets(leftover_sockets(args.data_dir.resolve(), ports))
    return 128 - returncode if returncode < 0 else returncode


if __name__ == "__main__":
    sys.exit(main())
