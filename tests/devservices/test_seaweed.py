"""devservices.seaweed against a real `weed mini`, real boto3 and real HTTP.

No Django needed. Run alone with: .venv/bin/python -m pytest tests/devservices -p no:django
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
import requests
from botocore.exceptions import ClientError

from devservices import seaweed, weed_command
from devservices.seaweed import SeaweedServer, ensure_buckets, start_seaweed, wait_ready
from devservices.weed_command import dev_ports, free_ports
from pipeline.filer_events import parse_filer_event  # noqa: E402
from tests.conftest import process_running

pytestmark = []

ACCESS_KEY = "reelflow-test-ak"
SECRET_KEY = "reelflow-test-secret-0123456789"
TOKEN = "hook-token-" + "x" * 20
SITE = "http://127.0.0.1:8000"
ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- fixtures


class Receiver:
    """A tiny webhook receiver: records every POST (headers + JSON body)."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.cond:
                    receiver.posts.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": json.loads(body or b"null"),
                        }
                    )
                    receiver.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events/s3/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, predicate, timeout: float = 15) -> dict:
        """The first recorded POST for which predicate(post) is true."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for post in self.posts:
                    if predicate(post):
                        return post
                left = deadline - time.monotonic()
                if left <= 0:
                    keys = [p["body"].get("key") for p in self.posts if isinstance(p["body"], dict)]
                    raise AssertionError(f"no matching webhook POST within {timeout} s; got keys {keys}")
                self.cond.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="session")
def s3(tmp_path_factory, receiver):
    server = start_seaweed(
        data_dir=tmp_path_factory.mktemp("seaweed"),
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        webhook_url=receiver.url,
        webhook_token=TOKEN,
        timeout=30,
    )
    rss = server.rss_bytes()
    print(f"\nweed mini ready in {server.startup_seconds:.2f} s, RSS {rss and rss / 2**20:.0f} MiB")
    yield server
    server.stop()
    assert server.process.poll() is not None


@pytest.fixture(scope="session")
def client(s3):
    return s3.client()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _free_port_block() -> int:
    """An S3 port P whose development ports (dev_ports(P): P..P+8, and the admin gRPC port at
    P+10008) are all free on 127.0.0.1 and below the ephemeral range.

    Ports the kernel hands out for outgoing connections (the ephemeral range) can be taken by
    any client on a busy machine between our check and weed's bind, and weed then quietly
    listens on the next port up (seen for the admin gRPC port while other test processes ran
    beside this one); ports below that range are only ever taken by another server that chose
    them on purpose.
    """
    import random

    low_ephemeral, _ = _ephemeral_range()
    span = max(dev_ports(20000).values()) - 20000
    low, high = 20000, max(20000 + 1000, low_ephemeral - span)
    for _ in range(200):
        base = random.randrange(low, high)
        held = []
        try:
            for port in dev_ports(base).values():
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                held.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free block of ports")


def _listening_ports(pid: int) -> set[tuple[str, int]]:
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }


# --------------------------------------------------------------------------- command line


def test_listens_only_on_loopback_on_the_configured_ports(s3):
    expected = {("127.0.0.1", p) for p in s3.ports.values()}
    deadline = time.monotonic() + 10  # the admin server comes up last, after S3
    while (listening := _listening_ports(s3.process.pid)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert listening == expected
    assert len(s3.ports) == 10
    assert s3.endpoint_url == f"http://127.0.0.1:{s3.s3_port}"
    assert (s3.data_dir / "run" / "filer.sock").exists()
    assert (s3.data_dir / "store" / "filerldb2").is_dir()


def test_credentials_are_enforced(s3, client):
    ensure_buckets(client, ["private-bucket"], [])
    client.put_object(Bucket="private-bucket", Key="secret.txt", Body=b"top secret")

    anonymous = seaweed._s3_client(s3.endpoint_url, None, None)
    with pytest.raises(ClientError) as err:
        anonymous.list_buckets()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as err:
        anonymous.get_object(Bucket="private-bucket", Key="secret.txt")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert requests.get(f"{s3.endpoint_url}/private-bucket/secret.txt", timeout=5).status_code == 403

    wrong_secret = seaweed._s3_client(s3.endpoint_url, ACCESS_KEY, "not-the-secret")
    with pytest.raises(ClientError) as err:
        wrong_secret.get_object(Bucket="private-bucket", Key="secret.txt")
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    wrong_key = seaweed._s3_client(s3.endpoint_url, "someone-else", SECRET_KEY)
    with pytest.raises(ClientError) as err:
        wrong_key.list_buckets()
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"

    assert client.get_object(Bucket="private-bucket", Key="secret.txt")["Body"].read() == b"top secret"
    with pytest.raises(ClientError) as err:  # no bucket auto-creation on upload
        client.put_object(Bucket="no-such-bucket", Key="x", Body=b"x")
    assert err.value.response["Error"]["Code"] == "NoSuchBucket"


def test_cors_preflight_for_presigned_put_and_multipart_part(client):
    ensure_buckets(client, ["ingest", "media"], [SITE])
    ensure_buckets(client, ["ingest", "media"], [SITE])  # idempotent
    names = {b["Name"] for b in client.list_buckets()["Buckets"]}
    assert {"ingest", "media"} <= names
    rules = client.get_bucket_cors(Bucket="ingest")["CORSRules"]
    assert rules[0]["AllowedOrigins"] == [SITE] and rules[0]["ExposeHeaders"] == ["ETag"]

    put_url = client.generate_presigned_url(
        "put_object", Params={"Bucket": "ingest", "Key": "uploads/bob/a.mp4"}, ExpiresIn=600
    )
    upload = client.create_multipart_upload(Bucket="ingest", Key="uploads/bob/big.mp4")
    part_url = client.generate_presigned_url(
        "upload_part",
        Params={
            "Bucket": "ingest",
            "Key": "uploads/bob/big.mp4",
            "UploadId": upload["UploadId"],
            "PartNumber": 1,
        },
        ExpiresIn=600,
    )
    try:
        for url in (put_url, part_url):
            preflight = requests.options(
                url,
                headers={
                    "Origin": SITE,
                    "Access-Control-Request-Method": "PUT",
                    "Access-Control-Request-Headers": "content-type",
                },
                timeout=5,
            )
            assert preflight.status_code == 200
            assert preflight.headers["Access-Control-Allow-Origin"] == SITE
            assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]
            assert "ETag" in preflight.headers["Access-Control-Expose-Headers"]

            other = requests.options(
                url,
                headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "PUT"},
                timeout=5,
            )
            assert "Access-Control-Allow-Origin" not in other.headers

        # The browser's actual request: the part's ETag must be readable cross-origin.
        put = requests.put(part_url, data=b"p" * 1024, headers={"Origin": SITE}, timeout=10)
        assert put.status_code == 200
        assert put.headers["Access-Control-Allow-Origin"] == SITE
        assert put.headers["ETag"].strip('"')
    finally:
        client.abort_multipart_upload(Bucket="ingest", Key="uploads/bob/big.mp4", UploadId=upload["UploadId"])

    ensure_buckets(client, ["media"], [])  # no origins: CORS removed, preflights refused
    media_url = client.generate_presigned_url(
        "put_object", Params={"Bucket": "media", "Key": "k"}, ExpiresIn=60
    )
    refused = requests.options(
        media_url, headers={"Origin": SITE, "Access-Control-Request-Method": "PUT"}, timeout=5
    )
    assert "Access-Control-Allow-Origin" not in refused.headers


def _events_for(receiver, bucket, key, event):
    def match(post):
        return any(
            e["bucket"] == bucket and e["key"] == key and e["event"] == event
            for e in parse_filer_event(post["body"])
        )

    post = receiver.wait_for(match)
    return post, next(e for e in parse_filer_event(post["body"]) if e["key"] == key and e["event"] == event)


def test_filer_webhook_put_multipart_and_delete(client, receiver):
    ensure_buckets(client, ["ingest"], [SITE])
    body = b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000)
    put = client.put_object(Bucket="ingest", Key="uploads/alice/clip.mp4", Body=body)

    post, event = _events_for(receiver, "ingest", "uploads/alice/clip.mp4", "created")
    assert post["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["path"] == "/events/s3/"
    assert post["body"]["event_type"] == "create"
    assert post["body"]["key"] == "/buckets/ingest/uploads/alice/clip.mp4"
    assert event["size"] == len(body)
    assert event["etag"] == put["ETag"].strip('"')
    assert abs(event["mtime"] - time.time()) < 60

    part1, part2 = os.urandom(5 * 1024 * 1024), os.urandom(1000)
    key = "uploads/alice/long.mp4"
    upload_id = client.create_multipart_upload(Bucket="ingest", Key=key)["UploadId"]
    etags = [
        client.upload_part(Bucket="ingest", Key=key, UploadId=upload_id, PartNumber=n, Body=data)["ETag"]
        for n, data in ((1, part1), (2, part2))
    ]
    done = client.complete_multipart_upload(
        Bucket="ingest",
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    post, event = _events_for(receiver, "ingest", key, "created")
    assert post["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert event["size"] == len(part1) + len(part2)
    assert event["etag"] == done["ETag"].strip('"')
    assert event["etag"].endswith("-2")

    client.delete_object(Bucket="ingest", Key="uploads/alice/clip.mp4")
    _, event = _events_for(receiver, "ingest", "uploads/alice/clip.mp4", "deleted")
    assert event["size"] == len(body)

    # Raw events did include the multipart staging files and directories; normalized ones do not.
    raw_keys = {p["body"]["key"] for p in receiver.posts}
    assert any("/.uploads/" in k for k in raw_keys)
    assert "/buckets/ingest/uploads/alice" in raw_keys
    normalized = [e for p in receiver.posts for e in parse_filer_event(p["body"])]
    assert all(not e["key"].startswith(".uploads/") and e["bucket"][0] != "." for e in normalized)
    assert not [e for e in normalized if e["key"] == "uploads/alice"]


def test_two_servers_side_by_side(tmp_path, s3, client):
    second = start_seaweed(
        data_dir=tmp_path / "backup", access_key="backup-ak", secret_key="backup-sk-123456"
    )
    try:
        assert not set(second.ports.values()) & set(s3.ports.values())
        other = second.client()
        ensure_buckets(other, ["backup-target"], [])
        other.put_object(Bucket="backup-target", Key="copy.bin", Body=b"copy")
        assert "backup-target" not in {b["Name"] for b in client.list_buckets()["Buckets"]}
        assert other.get_object(Bucket="backup-target", Key="copy.bin")["Body"].read() == b"copy"
        with pytest.raises(ClientError):  # each server has its own identity
            seaweed._s3_client(second.endpoint_url, ACCESS_KEY, SECRET_KEY).list_buckets()
    finally:
        second.stop(timeout=10)
    assert second.process.returncode is not None
    for name, port in second.ports.items():  # weed's hard-coded /tmp gRPC sockets are cleaned up
        if name.endswith("_grpc"):
            assert not Path(weed_command.GRPC_SOCKET_TEMPLATE.format(service=name[:-5], port=port)).exists()
    assert not (second.data_dir / "run" / "s3.sock").exists()
    with socket.socket() as probe:  # its S3 port is released (TIME_WAIT left aside, as servers do)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", second.s3_port))


def test_start_failure_raises_with_log_tail(tmp_path):
    with socket.socket() as taken:  # bound, not listening: weed cannot bind it, probes are refused
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(RuntimeError) as err:
            start_seaweed(data_dir=tmp_path, access_key="a", secret_key="b", s3_port=port, timeout=20)
    assert time.monotonic() - started < 15
    message = str(err.value)
    assert "weed mini exited" in message
    assert str(port) in message and "not available" in message


def test_wait_ready_times_out_on_a_dead_port():
    port = free_ports(1)[0]
    with pytest.raises(TimeoutError):
        wait_ready(f"http://127.0.0.1:{port}", "a", "b", timeout=0.5)


def test_weed_dies_with_the_process_that_started_it(tmp_path):
    script = textwrap.dedent(
        f"""
        import json, os
        from devservices.seaweed import start_seaweed
        s = start_seaweed(data_dir={str(tmp_path)!r}, access_key="a-key", secret_key="a-secret")
        print(json.dumps(s.ports), s.process.pid, flush=True)
        os._exit(0)  # no cleanup at all
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    ports_json, pid = out.stdout.strip().rsplit(" ", 1)
    pid = int(pid)
    deadline = time.monotonic() + 15
    while process_running(pid):
        assert time.monotonic() < deadline, "weed outlived its parent"
        time.sleep(0.1)
    # Nobody called stop(): clear weed's leftover /tmp sockets like stop() would.
    leftovers = weed_command.leftover_sockets(tmp_path, json.loads(ports_json))
    deadline = time.monotonic() + 20  # weed's helpers may take a moment to let go on a busy machine
    while True:
        weed_command.remove_stale_sockets(leftovers)
        remaining = [p for p in leftovers if p.exists()]
        if not remaining or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not remaining


def _start_cli(tmp_path, receiver, env):
    """Start the CLI and wait until S3 answers; a fresh block when a port was taken meanwhile."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    for attempt in range(3):
        base = _free_port_block()
        cmd = [
            sys.executable, "-m", "devservices.seaweed",
            "--data-dir", str(tmp_path / f"s3-{attempt}"), "--s3-port", str(base),
            "--webhook-url", receiver.url, "--webhook-token-file", str(token_file),
            "--bucket", "ingest", "--cors-origin", SITE,
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        endpoint = f"http://127.0.0.1:{base}"
        try:
            # a loaded machine starts weed slowly; the CLI exiting ends the wait at once
            seaweed._wait(endpoint, "cli-ak", "cli-secret-123", 90, proc)
            return proc, endpoint
        except (seaweed._Died, TimeoutError) as exc:
            for child in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
                child.kill()
            proc.kill()
            output = proc.communicate(timeout=15)[0].decode(errors="replace")
            if isinstance(exc, seaweed._Died) and "specified by flag" in output and attempt < 2:
                continue  # another server took a port of the block between our check and weed's bind
            pytest.fail(f"the CLI's weed did not answer ({exc}); its output:\n{output[-4000:]}")
    raise AssertionError("unreachable")


def test_cli_runs_in_foreground_and_stops_on_sigterm(tmp_path, receiver):
    env = {
        **os.environ,
        "S3_ACCESS_KEY": "cli-ak",
        "S3_SECRET_KEY": "cli-secret-123",
        "AWS_ACCESS_KEY_ID": "leak",
    }
    proc, endpoint = _start_cli(tmp_path, receiver, env)
    try:
        weed = [c for c in psutil.Process(proc.pid).children() if c.name() == "weed"]
        assert len(weed) == 1
        assert "AWS_ACCESS_KEY_ID" not in weed[0].environ()
        s3_port = int(endpoint.rsplit(":", 1)[1])
        assert {port for _, port in _listening_ports(weed[0].pid)} <= set(dev_ports(s3_port).values())

        cli = seaweed._s3_client(endpoint, "cli-ak", "cli-secret-123")
        deadline = time.monotonic() + 10
        while True:  # --bucket runs right after readiness
            try:
                rules = cli.get_bucket_cors(Bucket="ingest")["CORSRules"]
                break
            except ClientError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert rules[0]["AllowedOrigins"] == [SITE]
        cli.put_object(Bucket="ingest", Key="uploads/cli/one.mp4", Body=b"1")
        post, _ = _events_for(receiver, "ingest", "uploads/cli/one.mp4", "created")
        assert post["headers"]["Authorization"] == f"Bearer {TOKEN}"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not weed[0].is_running() or weed[0].status() == psutil.STATUS_ZOMBIE
    finally:
        if proc.poll() is None:
            # weed is a child holding the same stdout pipe: stop it too, or read() never ends.
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()
        output = proc.communicate(timeout=15)[0].decode(errors="replace")
    assert f"seaweed: S3 at {endpoint}" in output
    assert "seaweed: ready in" in output


def test_cli_requires_credentials(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("S3_ACCESS_KEY", "S3_SECRET_KEY")}
    out = subprocess.run(
        [sys.executable, "-m", "devservices.seaweed", "--data-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert "S3_ACCESS_KEY" in out.stderr


def test_server_repr_hides_the_secret(s3):
    assert SECRET_KEY not in repr(s3)
    assert isinstance(s3, SeaweedServer)


# --------------------------------------------------------------------------- parse_filer_event
