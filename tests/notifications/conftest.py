"""Notification fixtures: receivers that are real servers on loopback (an SMTP server, a chat
webhook, SNS in moto_server)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from tests.conftest import free_port
from tests.security.conftest import moto_server  # noqa: F401 - fixture


@pytest.fixture
def smtp_server():
    """aiosmtpd on a free port; yields the list of messages it received (email.message)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received = []

    class Collect(Message):
        def handle_message(self, message) -> None:
            received.append(message)

    port = free_port()
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    yield SimpleNamespace(port=port, messages=received)
    controller.stop()


@pytest.fixture
def chat_receiver():
    """A Slack-style incoming webhook on loopback: records each JSON body; `status` sets the answer."""
    state = SimpleNamespace(bodies=[], status=200, headers=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            state.bodies.append(json.loads(self.rfile.read(length)))
            state.headers.append(dict(self.headers))
            self.send_response(state.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/ops"
    yield state
    server.shutdown()
    server.server_close()
