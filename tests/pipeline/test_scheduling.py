"""The encode queue's order: longest first, and no rung taken while its chunk is still decoded
when another unit could run instead."""

import heapq

from pipeline.ladders import AUDIO_COST_PER_S
from pipeline.scheduling import Work, queue_order

RUNGS = {720: 1280, 480: 854, 360: 640, 240: 426}


def ladder(chunks: int, *, frames: int = 500) -> list[Work]:
    """A 720p source in ``chunks`` chunks, four H.264 rungs and two audio units (as job_plan
    costs them)."""
    work, key = [], 0
    for height, width in RUNGS.items():
        for chunk in range(chunks):
            key += 1
            work.append(Work(key=key, cost=width * height * frames, chunk=chunk, decode_cost=1280 * 720 * frames * 0.2))
    audio = 60 * AUDIO_COST_PER_S  # a 60 s source
    work += [Work(key=key + 1, cost=audio), Work(key=key + 2, cost=audio)]
    return work


def fifo(order: list[int], work: list[Work], workers: int) -> tuple[float, float]:
    """Workers taking units from a FIFO queue in ``order``: (seconds idle waiting for a chunk's
    decoder, makespan). The decoder of a chunk is its first unit taken."""
    by_key = {w.key: w for w in work}
    lanes = [(0.0, n) for n in range(workers)]
    decoded: dict[int, float] = {}
    waited = end = 0.0
    for key in order:
        free_at, lane = heapq.heappop(lanes)
        w = by_key[key]
        if w.chunk is None:
            finish = free_at + w.cost
        elif w.chunk not in decoded:
            finish = decoded[w.chunk] = free_at + w.cost + w.decode_cost
        else:
            start = max(free_at, decoded[w.chunk])
            waited += start - free_at
            finish = start + w.cost
        end = max(end, finish)
        heapq.heappush(lanes, (finish, lane))
    return waited, end


def longest_first(work: list[Work]) -> list[int]:
    return [w.key for w in sorted(work, key=lambda w: (-w.cost, w.key))]


def test_without_a_shared_decode_it_is_longest_first():
    work = ladder(3)
    assert queue_order(work, workers=2, shared_decode=False) == longest_first(work)


def test_every_unit_is_queued_once_and_decoders_lead():
    work = ladder(4)
    order = queue_order(work, workers=3)
    assert sorted(order) == sorted(w.key for w in work)
    by_key = {w.key: w for w in work}
    seen: set[int] = set()
    for key in order:
        chunk = by_key[key].chunk
        if chunk is not None and chunk not in seen:
            assert by_key[key].cost == RUNGS[720] * 720 * 500  # the chunk's costliest rung decodes it
            seen.add(chunk)


def test_two_workers_three_chunks_never_wait_where_longest_first_does():
    work = ladder(3)
    waited, makespan = fifo(queue_order(work, workers=2), work, workers=2)
    plain_waited, plain_makespan = fifo(longest_first(work), work, workers=2)
    assert plain_waited > 0
    assert waited == 0
    assert makespan < plain_makespan


def test_spare_workers_take_audio_rather_than_wait():
    work = ladder(2)
    order = queue_order(work, workers=4)
    audio = {w.key for w in work if w.chunk is None}
    assert set(order[2:4]) == audio  # two decoders, then the audio units: nothing else can start
    assert fifo(order, work, workers=4)[0] <= fifo(longest_first(work), work, workers=4)[0]


def test_longer_sources_do_not_wait_more_than_longest_first():
    for chunks in (1, 2, 5, 9):
        for workers in (1, 2, 3, 8):
            work = ladder(chunks)
            assert fifo(queue_order(work, workers=workers), work, workers)[0] <= fifo(
                longest_first(work), work, workers
            )[0] + 1e-9, (chunks, workers)
