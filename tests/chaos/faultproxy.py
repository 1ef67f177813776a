"""A fault-injecting HTTP reverse proxy for S3, on loopback (stdlib asyncio only).

Sits between workers and SeaweedFS. Per request it may answer 500/503 itself (S3's error XML,
which boto3's retry mode and ffmpeg's error handling see as the real thing), add latency, or
reset the connection once. Everything else is forwarded byte for byte; the Host header is kept
as the client sent it, so SigV4 signatures (headers and presigned URLs) stay valid.

    proxy = FaultProxy("127.0.0.1", 8333, error_rate=0.05, max_latency_s=0.03, resets=1, seed=1)
    proxy.start()   # proxy.url -> point S3_ENDPOINT_URL at it
    ...
    proxy.stop(); proxy.stats
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass, field

ERROR_BODIES = {
    500: b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code>"
    b"<Message>injected by the chaos proxy</Message></Error>",
    503: b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
    b"<Message>injected by the chaos proxy</Message></Error>",
}


@dataclass
class Stats:
    requests: int = 0
    forwarded: int = 0
    errors: dict[int, int] = field(default_factory=lambda: {500: 0, 503: 0})
    resets: int = 0
    latency_s: float = 0.0


class FaultProxy:
    def __init__(
        self, upstream_host: str, upstream_port: int, *, error_rate: float = 0.05, max_latency_s: float = 0.03,
        resets: int = 1, reset_after: int = 15, seed: int = 0, listen_host: str = "127.0.0.1",
    ) -> None:  # fmt: skip
        self.upstream = (upstream_host, upstream_port)
        self.error_rate, self.max_latency_s = error_rate, max_latency_s
        self.resets_left, self.reset_after = resets, reset_after
        self.rng = random.Random(seed)
        self.listen_host = listen_host
        self.stats = Stats()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.listen_host}:{self.port}"

    def start(self) -> FaultProxy:
        threading.Thread(target=self._run, name="fault-proxy", daemon=True).start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)  # the shutdown below gathers tasks in this thread
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, self.listen_host, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        # Stopped: close the server and let open connections end before the loop closes.
        self._server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                body += size_line + chunk
                if size == 0:
                    break
        elif b"content-length" in headers:
            body = await reader.readexactly(int(headers[b"content-length"]))
        # One request per upstream connection: ask the server to close when it has answered.
        lines = [line for line in head[:-4].split(b"\r\n") if not line.lower().startswith(b"connection:")]
        return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    return
                self.stats.requests += 1
                if self.resets_left and self.stats.requests >= self.reset_after:
                    self.resets_left -= 1
                    self.stats.resets += 1
                    writer.transport.abort()  # RST: "connection reset by peer" for the client
                    return
                if self.rng.random() < self.error_rate:
                    status = self.rng.choice((500, 503))
                    self.stats.errors[status] += 1
                    body = ERROR_BODIES[status]
                    reason = b"Internal Server Error" if status == 500 else b"Service Unavailable"
                    writer.write(
                        b"HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n%s"
                        % (status, reason, len(body), body)
                    )
                    await writer.drain()
                    continue
                delay = self.rng.uniform(0, self.max_latency_s)
                self.stats.latency_s += delay
                await asyncio.sleep(delay)
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
                up_writer.write(request)
                await up_writer.drain()
                response = await up_reader.read()  # the upstream closes after its answer
                up_writer.close()
                self.stats.forwarded += 1
                writer.write(response)
                await writer.drain()
                if b"\r\nconnection: close" in response.split(b"\r\n\r\n", 1)[0].lower():
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
