"""One channel-layer subscription per web process and job, fanned out to that process's sockets.

Why: with channels_redis's RedisChannelLayer every socket is a channel, and a group message
reaches each of them through the layer's shared receive lock and per-channel buffers. With a
few hundred sockets on one job that costs more than sending the frames: bench/progress_ws.py
measured p50 ~9 s at 500 sockets and 10 messages a second with one group member per socket
(docs/benchmarks.md). Here the first socket of a job in a process subscribes a relay channel
to the job's group; each message is received once, encoded once, and handed to the local
sockets by a direct call. When the last socket leaves, the relay unsubscribes.

Details that matter with channels_redis:
- Relays use their own layer instance, so their receive() does not queue behind hundreds of
  idle socket receives for the instance's one receive lock (in the benchmark, a relay sharing
  the sockets' instance at 100 sockets received nothing).
- A relay is never cancelled inside receive() (in the benchmark, the next relay after one was
  cancelled there heard nothing): it is told to stop by a message on its own channel.
- It renews its group membership every minute: channels_redis drops members after its
  group_expiry (a day), and Redis may restart empty.

Sockets get exactly what a group member would: every message, in the order the layer delivers
it. Deduplication against the snapshot stays with the consumer.
"""

import asyncio
import functools
import json
import logging
import weakref
from typing import Protocol

from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

from pipeline import progress

logger = logging.getLogger(__name__)

STOP = "studio.relay.stop"
STOP_WAIT_S = 5.0
REFRESH_S = 60.0


class Watcher(Protocol):
    async def relay_message(self, event: dict, text: str) -> None: ...


@functools.cache
def relay_layer():
    """The relays' own channel layer instance, one per process (see the module's docstring)."""
    return channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)


class _JobRelay:
    def __init__(self, job_id: int, relays: dict) -> None:
        self.layer = relay_layer()
        self.job_id = job_id
        self.relays = relays
        self.watchers: set[Watcher] = set()
        self.channel = ""
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.refresher: asyncio.Task | None = None

    async def start(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(progress.job_group(self.job_id), self.channel)
        self.task = asyncio.ensure_future(self._run())
        self.task.add_done_callback(self._ended)
        self.refresher = asyncio.ensure_future(self._refresh())
        self.ready.set()

    async def _refresh(self) -> None:
        # channels_redis forgets group members after its group_expiry (a day), and all of them
        # if Redis restarts empty; a relay lives as long as someone watches, so it renews.
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await self.layer.group_add(progress.job_group(self.job_id), self.channel)
            except Exception:  # noqa: BLE001 - Redis away for a moment: renew next time
                logger.warning(
                    "progress relay of job %s could not renew its subscription", self.job_id, exc_info=True
                )

    def _ended(self, task: asyncio.Task) -> None:
        self.stopped.set()
        if self.refresher is not None:
            self.refresher.cancel()  # cancelling a sleep is harmless (unlike a receive)
        if self.relays.get(self.job_id) is self:
            del self.relays[self.job_id]
        if not task.cancelled() and task.exception() is not None:
            logger.error("progress relay of job %s stopped", self.job_id, exc_info=task.exception())

    async def _run(self) -> None:
        while True:
            event = await self.layer.receive(self.channel)
            if event.get("type") == STOP:
                if self.watchers:
                    continue  # someone came back while the stop was on its way
                # Out of the registry before the await: a socket arriving now starts a new relay.
                del self.relays[self.job_id]
                await self.layer.group_discard(progress.job_group(self.job_id), self.channel)
                return
            if event.get("type") != "job.message":
                continue
            text = json.dumps({**event, "type": "message"})
            for watcher in list(self.watchers):
                await watcher.relay_message(event, text)

    async def request_stop(self) -> None:
        await self.layer.send(self.channel, {"type": STOP})
        try:
            await asyncio.wait_for(asyncio.shield(self.stopped.wait()), timeout=STOP_WAIT_S)
        except TimeoutError:
            if self.watchers:
                return  # a socket came back: the relay stays
            logger.warning("progress relay of job %s did not stop within %s s", self.job_id, STOP_WAIT_S)


# event loop -> job id -> relay: a relay belongs to the loop whose sockets it serves (one loop
# in daphne; tests run one per test).
_relays: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _JobRelay]]" = (
    weakref.WeakKeyDictionary()
)


def _loop_relays() -> dict[int, _JobRelay]:
    loop = asyncio.get_running_loop()
    if loop not in _relays:
        _relays[loop] = {}
    return _relays[loop]


async def watch(job_id: int, watcher: Watcher) -> None:
    """Start handing `watcher` the job's messages (subscribing this process if it is the first)."""
    relays = _loop_relays()
    relay = relays.get(job_id)
    if relay is None:
        relay = relays[job_id] = _JobRelay(job_id, relays)
        relay.watchers.add(watcher)
        try:
            await relay.start()
        except BaseException:
            relays.pop(job_id, None)
            relay.ready.set()
            raise
    else:
        relay.watchers.add(watcher)
        await relay.ready.wait()
        if relay.task is None:
            raise RuntimeError(f"the progress relay of job {job_id} could not subscribe")


async def unwatch(job_id: int, watcher: Watcher) -> None:
    """Stop handing `watcher` messages; the last watcher of a process unsubscribes it."""
    relay = _loop_relays().get(job_id)
    if relay is None or watcher not in relay.watchers:
        return
    relay.watchers.discard(watcher)
    if not relay.watchers:
        await relay.request_stop()


def watchers_count(job_id: int) -> int:
    """Sockets of this loop watching the job (for tests and the curious)."""
    relay = _loop_relays().get(job_id)
    return len(relay.watchers) if relay else 0
