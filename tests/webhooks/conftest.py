"""Real receivers on 127.0.0.1 and real burst workers for the webhook tests."""

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings

from core.roles import Role
from tests.conftest import ROOT, worker_env

# The pipeline's fixtures, for the end-to-end test that encodes a real clip.
from tests.pipeline.conftest import ladders, publisher, run_workers, upload  # noqa: F401


class Receiver:
    """A threaded HTTP server that records every request and answers with the next scripted
    status (then `default_status`)."""

    def __init__(self, statuses=(), default_status: int = 200, reply: bytes = b"thanks") -> None:
        self.requests: list[dict] = []
        self.statuses = list(statuses)
        self.default_status = default_status
        self.reply = reply
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.requests.append(
                        {
                            "received_at": time.time(),
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": body,
                        }
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.default_status
                reply = receiver.reply if 200 <= status < 300 else b"boom: " + str(status).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/reelflow"

    def json_bodies(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(*statuses: int, **kwargs) -> Receiver:
        server = Receiver(statuses, **kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def run_default_worker(redis_conn):
    """run_default_worker(env=...) runs one burst worker on the deliveries' queue to the end."""

    def run(*, env: dict | None = None, timeout: float = 120) -> None:
        proc = subprocess.run(
            [sys.executable, "manage.py", "rqworker", settings.WEBHOOKS_QUEUE, "--burst"],
            cwd=ROOT,
            env=worker_env(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]

    return run


@pytest.fixture
def pub(transactional_db, make_user):
    return make_user(f"pub{uuid.uuid4().hex[:6]}", role=Role.PUBLISHER)


@pytest.fixture
def endpoint_for():
    """endpoint_for(owner, url, types=None) -> (endpoint, secret), made by the real service."""
    from webhooks import services

    def make(owner, url: str, types: list[str] | None = None):
        return services.endpoint_create(owner=owner, url=url, types=types)

    return make
