"""The order a job's units go on the encode queue, and the encode workers there are to run them.

Longest work first, so the short units fill the gaps at the end. With the decoded-chunk cache
(:mod:`pipeline.decoded_cache`) a chunk's first unit decodes it and the chunk's other rungs
read its frames: one of those taken while its chunk's decoder still runs waits for it, and a
worker waiting is a core idle. So the order comes from a short simulation of the workers
taking units from the FIFO queue: each free worker takes the costliest unit it could start
now (a decoder, an audio unit, or a rung whose chunk is decoded by then), and only when none
is left, the one whose frames come soonest. On 2 workers and a 60 s 720p source in 20 s
chunks, plain longest-first made one rung per job wait 0.3-0.9 s for its chunk; this order
starts it once its chunk is done.

Work marked ``first`` (the rung the first preview plays and the audio: see
:func:`pipeline.services.planning.first_playable`) goes ahead of the rest whatever its cost,
and its units decode their chunks for the other rungs: the publisher watches a preview after
about a fifth of the encode instead of at its end (``bench/publish.py``).
"""

from __future__ import annotations

import heapq
import logging
import socket
from dataclasses import dataclass

import django_rq
from redis.exceptions import RedisError
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

logger = logging.getLogger(__name__)

# Decoding a chunk of the source, per pixel, against encoding it with x264 veryfast: the
# decoding unit's extra time (measured 1.2 of 7.2 CPU-s for a 20 s 720p chunk).
DECODE_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class Work:
    """One unit as the planner sees it: its id, relative cost, the chunk whose decoded frames
    it shares (None for audio), the decode cost its chunk's first unit adds, and whether it
    belongs to the first playable set (queued ahead of everything else)."""

    key: int
    cost: float
    chunk: int | None = None
    decode_cost: float = 0.0
    first: bool = False


def queue_order(work: list[Work], *, workers: int, shared_decode: bool = True) -> list[int]:
    """Unit ids in queue order for ``workers`` workers (see the module's docstring): the
    ``first`` work ahead, each part longest first.

    Without ``shared_decode`` (the cache off) nothing depends on anything: longest first."""
    ranked = sorted(work, key=lambda w: (not w.first, -w.cost, w.key))
    if not shared_decode or workers < 1:
        return [w.key for w in ranked]
    decoder: dict[int, int] = {}
    for w in ranked:
        if w.chunk is not None:
            decoder.setdefault(w.chunk, w.key)  # a chunk's first rung (else its costliest) decodes it
    decoded_at: dict[int, float] = {}  # chunk -> when its decoder is done
    lanes = [(0.0, lane) for lane in range(workers)]
    heapq.heapify(lanes)
    left = list(ranked)
    order: list[int] = []

    def decodes(w: Work) -> bool:
        return w.chunk is not None and decoder[w.chunk] == w.key

    def ready(w: Work, at: float) -> bool:
        return w.chunk is None or decodes(w) or decoded_at.get(w.chunk, float("inf")) <= at

    while left:
        free_at, lane = heapq.heappop(lanes)
        pick = next((w for w in left if ready(w, free_at)), None)
        if pick is None:
            # Only rungs of chunks still being decoded are left (their decoders were all taken,
            # being always ready): the one whose frames come first.
            pick = min(left, key=lambda w: (decoded_at[w.chunk], -w.cost, w.key))
        left.remove(pick)
        if decodes(pick):
            end = free_at + pick.cost + pick.decode_cost
            decoded_at[pick.chunk] = end
        else:
            end = (free_at if pick.chunk is None else max(free_at, decoded_at[pick.chunk])) + pick.cost
        order.append(pick.key)
        heapq.heappush(lanes, (end, lane))
    return order


def encode_workers(*, host: str | None = None) -> int:
    """Workers registered on the ``encode`` queue (on ``host`` only, when given); 0 if Redis
    cannot say.

    Two round trips whatever the size of the fleet: RQ's set of the queue's workers, then one
    pipelined read of each one's host and last heartbeat. (``rq.Worker.all`` read every worker
    of every queue, control workers included, at two round trips each.) A worker counts while
    RQ keeps its key: RQ lets the key lapse when the heartbeats stop (``worker_ttl``, 420 s by
    default, or a running job's timeout). Not "a heartbeat in the last minute": an idle RQ
    worker blocks on the queue and heartbeats only every ``worker_ttl`` - 15 s, so that test
    would miss every idle worker.
    """
    try:
        connection = django_rq.get_connection("encode")
        keys = sorted(connection.smembers(WORKERS_BY_QUEUE_KEY % "encode"))
        if not keys:
            return 0
        with connection.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, "hostname", "last_heartbeat")
            rows = pipe.execute()
    except RedisError:
        logger.warning("could not count the encode workers", exc_info=True)
        return 0
    return sum(1 for hostname, beat in rows if beat is not None and (host is None or _text(hostname) == host))


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def this_host() -> str:
    return socket.gethostname()
