"""A per-machine cache of decoded source chunks, so a ladder decodes each chunk once per machine.

Every encode unit is one (chunk, rendition); without sharing, a ladder of N video rungs decodes
every chunk of the source N times. The first unit of a chunk on a machine therefore writes the
chunk's frames — exactly as the encoder sees them before scaling (deinterlaced, on the planned
frame grid, rotated, the last frame cloned where the source ends early) — uncompressed to a local
file beside its encode, and the other rungs of that chunk on the same machine read them back:
reading raw frames costs a memory copy where decoding H.264 costs milliseconds per frame.

* Uncompressed Matroska keeps the pixel format and the colour tags (primaries, transfer,
  matrix, range), so an encode from the cache carries the same VUI as one from the source.
  Only 8-bit 4:2:0 sources are cached (what Matroska stores raw and nearly every upload is).
* A file is written under a name ending in ``.part`` while one producer holds an exclusive
  ``flock`` on its lock file (released by the kernel if the producer dies), checked (its size
  must hold exactly the planned frames) and renamed: a reader only ever opens complete files.
* A unit whose chunk is being written by another unit on the machine waits for it
  (:func:`await_writer`) when the writer will be done within ``REELFLOW_DECODED_CACHE_WAIT_S``,
  judged by how fast its file grows: waiting costs no CPU and leaves the writer's threads the
  core, where decoding again would cost the whole decode. A writer that stalls or dies ends
  the wait at once, and the unit decodes for itself.
* Space is bounded: ``REELFLOW_DECODED_CACHE_MB`` (0 turns the cache off; in memory, at
  most an eighth of the RAM) and never below a free-space reserve. Each read is counted (a
  ``.reads`` file beside the entry); an entry read by all the readers its writer expected is
  *spent*. Room is made from spent entries and entries idle for ``REELFLOW_DECODED_CACHE_TTL_S``
  first, then the least recently read ones, but never from an entry whose readers are still to
  come (younger than the TTL): when a chunk does not fit beside those, it is not cached, and its
  units decode for themselves. Evicting them instead made every unit of a long source rewrite
  a chunk that the next writer evicted again before its readers came (measured: a 120 s 720p
  source in 20 s chunks, 6 x 660 MiB against a 3 GiB budget, ran at 1.74 x one ffmpeg). A job's
  entries go when it is packaged. A chunk too big for the budget is decoded by each unit, as
  without a cache.

Nothing here is shared between machines: a worker elsewhere decodes for itself.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

# Bytes per pixel of the pixel formats cached (Matroska stores these raw, by FourCC).
_BYTES_PER_PIXEL = {"yuv420p": 1.5, "yuvj420p": 1.5}
# Never fill the disk: keep this much free beside the budget.
FREE_RESERVE_BYTES = 1024**3
SUFFIX = ".mkv"
PART = ".part"
READS = ".reads"
EXPECTED = ".expected"


SHM = Path("/dev/shm")  # noqa: S108 - a private 0700 folder of ours in it, checked by _usable_root
# In memory (tmpfs) the cache takes at most this share of the machine's RAM.
RAM_SHARE = 1 / 8


def root() -> Path:
    """REELFLOW_DECODED_CACHE_DIR, else memory (/dev/shm) where the machine has it, else the
    temp folder. Memory, because the frames are written once and read a few times within
    minutes: on a disk file system the writes cost the producing unit about as much CPU as
    the readers save (measured: docs/benchmarks.md)."""
    configured = settings.REELFLOW_DECODED_CACHE_DIR
    if configured:
        return Path(configured)
    base = SHM if SHM.is_dir() and os.access(SHM, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"reelflow-decoded-{os.getuid()}"


def _file_system_type(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts), or ""."""
    best, kind = "", ""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    target = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def _usable_root() -> Path | None:
    """The cache folder, created private (0700) if missing; None if it is not a real folder
    of ours that only we can write (in a shared place like /dev/shm another local user could
    have made it first, or made it a symbolic link)."""
    base = root()
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(base)
    except OSError as exc:
        logger.info("decoded-chunk cache unavailable (%s): decoding from the source", exc)
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        logger.warning("decoded-chunk cache off: %s is not a private folder of this user", base)
        return None
    return base


def budget_bytes() -> int:
    budget = max(0, settings.REELFLOW_DECODED_CACHE_MB) * 1024**2
    if budget and _file_system_type(root()) == "tmpfs":
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        budget = min(budget, int(ram * RAM_SHARE))
    return budget


def frame_bytes(*, pix_fmt: str | None, width: int, height: int) -> int | None:
    """Bytes of one raw frame, or None when frames of this pixel format are not cached."""
    per_pixel = _BYTES_PER_PIXEL.get(pix_fmt or "")
    if per_pixel is None or width <= 0 or height <= 0:
        return None
    return int(width * height * per_pixel)


@dataclass(frozen=True, slots=True)
class Entry:
    """One chunk's decoded frames on this machine."""

    path: Path
    frames: int
    size_estimate: int
    readers: int = 0  # reads expected (the chunk's other rungs); 0: unknown, never protected

    @property
    def part_path(self) -> Path:
        return self.path.with_name(self.path.name + PART)

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @property
    def reads_path(self) -> Path:
        return _reads_path(self.path)


def _reads_path(path: Path) -> Path:
    """Beside an entry: one byte per read so far (``.expected`` holds how many reads its writer
    expected)."""
    return path.with_name(path.name + READS)


def entry_for(
    *, job_id: int, chunk_index: int, frames: int, frame_size: int, identity: dict, readers: int = 0
) -> Entry:
    """The entry of one chunk; ``identity`` holds everything that decides its frames (source
    object and version, range, frame grid, filters), so a changed plan never reads stale ones.
    ``readers``: how many units are expected to read it (the chunk's other rungs)."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = root() / f"job-{job_id}" / f"chunk-{chunk_index}-{digest}{SUFFIX}"
    return Entry(path=path, frames=frames, size_estimate=frames * frame_size + 64 * 1024, readers=max(0, readers))


def lookup(entry: Entry) -> Path | None:
    """The complete file of ``entry``, marked as just used and counted as read, or None."""
    if not entry.path.exists() or _usable_root() is None:
        return None
    try:
        os.utime(entry.path)  # least recently *read* goes first
        fd = os.open(entry.reads_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"r")  # one append: atomic beside other readers
        finally:
            os.close(fd)
    except OSError:
        return None
    return entry.path


def discard(entry: Entry) -> None:
    """Forget an entry that turned out unusable (its reader failed on it)."""
    _remove(entry.path)


def _expected_path(path: Path) -> Path:
    return path.with_name(path.name + EXPECTED)


def _remove(path: Path) -> bool:
    """Unlink an entry's file (finished or ``.part``) and, for a finished one, its read
    counts; whether the file itself went."""
    try:
        path.unlink()
        gone = True
    except OSError:
        gone = False
    if path.name.endswith(SUFFIX):
        for side in (_reads_path(path), _expected_path(path)):
            with contextlib.suppress(OSError):
                side.unlink()
    return gone


def _pending_readers(path: Path) -> bool:
    """Whether the entry at ``path`` still has readers to come (fewer reads than expected)."""
    try:
        expected = int(_expected_path(path).read_text() or 0)
    except (OSError, ValueError):
        return False
    try:
        reads = _reads_path(path).stat().st_size
    except OSError:
        reads = 0
    return reads < expected


class Reservation:
    """The right to write ``entry``: held while the producing unit's ffmpeg runs."""

    def __init__(self, entry: Entry, lock_fd: int) -> None:
        self.entry = entry
        self._lock_fd = lock_fd
        self.done = False

    @property
    def part_path(self) -> Path:
        return self.entry.part_path

    def commit(self, count_packets, *, frame_size: int | None = None) -> bool:
        """Publish the written file if it holds exactly the planned frames.

        With ``frame_size`` (bytes of one raw frame) the count comes from the file's size,
        without reading it: Matroska adds under ``container_overhead`` bytes, so while that
        is smaller than a frame, one frame more or less is a size out of bounds. Otherwise
        ``count_packets`` (an ffprobe packet count) reads the whole file."""
        try:
            if frame_size and container_overhead(self.entry.frames) < frame_size:
                frames = frames_by_size(self.part_path.stat().st_size, frames=self.entry.frames, frame_size=frame_size)
            else:
                frames = count_packets(self.part_path)
        except Exception as exc:  # noqa: BLE001 - a bad cache file is dropped, never fatal
            logger.warning("decoded chunk %s unreadable, dropped: %s", self.part_path, exc)
            frames = None
        ok = frames == self.entry.frames
        if ok:
            if self.entry.readers:
                _expected_path(self.entry.path).write_text(str(self.entry.readers))
            os.replace(self.part_path, self.entry.path)
        else:
            if frames is not None:
                logger.warning("decoded chunk %s has %s frames, planned %s: dropped", self.part_path, frames, self.entry.frames)
            with contextlib.suppress(OSError):
                self.part_path.unlink()
        self._release()
        return ok

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.part_path.unlink()
        self._release()

    def _release(self) -> None:
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self.entry.lock_path.unlink()
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)


def container_overhead(frames: int) -> int:
    """An upper bound of what raw-video Matroska adds to the frames: headers, cluster and
    block headers, cues. Measured: 23 KB for 500 frames (46 bytes a frame)."""
    return 16 * 1024 + 128 * frames


def frames_by_size(size: int, *, frames: int, frame_size: int) -> int | None:
    """``frames`` if a file of ``size`` bytes holds exactly that many raw frames, else the
    count the size suggests (None if no count fits)."""
    if frames * frame_size <= size <= frames * frame_size + container_overhead(frames):
        return frames
    whole = size // frame_size
    return whole if whole * frame_size + container_overhead(whole) >= size else None


def await_writer(
    entry: Entry,
    *,
    max_wait_s: float,
    cancelled=lambda: False,
    poll_s: float = 0.1,
    stall_s: float = 3.0,
) -> Path | None:
    """:func:`lookup`, and if the file is not there yet and another unit on this machine is
    writing it, the file once that writer is done. None at once when nobody is writing it or
    ``max_wait_s`` is 0, and as soon as waiting looks worse than decoding: the writer's file,
    growing at its recent rate, would not be complete within ``max_wait_s``, it stopped growing
    for ``stall_s``, its writer died, or ``cancelled()``."""
    found = lookup(entry)
    if found is not None or max_wait_s <= 0:
        return found
    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    while True:
        if not _writing(entry.part_path):
            return lookup(entry)  # committed between the two looks, or no (live) writer
        now = time.monotonic()
        try:
            size = entry.part_path.stat().st_size
        except OSError:
            size = samples[-1][1] if samples else 0  # renamed as we looked: the next look finds it
        if not samples or size != samples[-1][1]:
            samples.append((now, size))
        elif now - samples[-1][0] > stall_s:
            logger.info("decoded chunk %s stopped growing: decoding instead of waiting", entry.part_path)
            return None
        samples = [s for s in samples if now - s[0] <= 2.0] or samples[-1:]
        if len(samples) >= 2 and samples[-1][0] - samples[0][0] >= 0.3:
            rate = (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])
            left = max(0, entry.size_estimate - size) / rate if rate > 0 else float("inf")
            if now + left > started + max_wait_s:
                return None
        if now - started > max_wait_s or cancelled():
            return None
        time.sleep(poll_s)
        found = lookup(entry)
        if found is not None:
            return found


def reserve(entry: Entry) -> Reservation | None:
    """Take the right to write ``entry``, or None: another process is writing it, it does not
    fit the budget, or the disk lacks room. Makes room by dropping old entries first."""
    budget = budget_bytes()
    if budget <= 0 or entry.size_estimate > budget or _usable_root() is None:
        return None
    try:
        entry.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(entry.lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        logger.info("decoded-chunk cache unavailable (%s): decoding from the source", exc)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None  # another unit on this machine is writing it right now
        raise
    try:
        same = os.fstat(fd).st_ino == os.stat(entry.lock_path).st_ino
    except OSError:
        same = False
    if not same:  # a producer unlinked this lock file as we opened it: its file is done
        os.close(fd)
        return None
    reservation = Reservation(entry, fd)
    try:
        if entry.path.exists():  # written while we waited for the lock
            reservation.abort()
            return None
        if not _make_room(need=entry.size_estimate, budget=budget, keep=entry):
            logger.info("decoded chunk %s not cached: the budget is held by chunks whose readers are to come", entry.path)
            reservation.abort()
            return None
        if shutil.disk_usage(entry.path.parent).free < entry.size_estimate + FREE_RESERVE_BYTES:
            reservation.abort()
            return None
    except OSError as exc:
        logger.info("decoded-chunk cache unavailable (%s): decoding from the source", exc)
        reservation.abort()
        return None
    return reservation


def _entries() -> list[tuple[float, int, Path]]:
    found = []
    base = root()
    if not base.is_dir():
        return found
    for job_dir in base.iterdir():
        if not job_dir.is_dir():
            continue
        for path in job_dir.iterdir():
            if path.name.endswith(SUFFIX) or path.name.endswith(SUFFIX + PART):
                with contextlib.suppress(OSError):
                    stat = path.stat()
                    found.append((stat.st_mtime, stat.st_size, path))
    return found


def _writing(path: Path) -> bool:
    """A ``.part`` file whose producer is alive (its lock is held)."""
    lock = path.with_name(path.name.removesuffix(PART) + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _make_room(*, need: int, budget: int, keep: Entry) -> bool:
    """Make ``need`` more bytes fit the budget, or say they cannot: drop idle entries, then
    spent ones (all their readers came), then the least recently read; never a file a live
    producer is writing, nor an entry younger than the TTL whose readers are still to come.
    A reader that has a dropped file open keeps reading it after the unlink."""
    now = time.time()
    ttl = settings.REELFLOW_DECODED_CACHE_TTL_S
    entries = _entries()
    total = sum(size for _, size, _ in entries)

    def drop(size: int, path: Path) -> None:
        nonlocal total
        if _remove(path):
            total -= size

    candidates = []
    for mtime, size, path in entries:
        if path in (keep.path, keep.part_path):
            continue
        if path.name.endswith(PART):
            if not _writing(path):  # a dead producer's leftover
                drop(size, path)
            continue
        idle = now - mtime > ttl
        if idle:
            drop(size, path)
        elif not _pending_readers(path):
            candidates.append((mtime, size, path))
    for _, size, path in sorted(candidates):
        if total + need <= budget:
            break
        drop(size, path)
    for job_dir in root().iterdir():
        with contextlib.suppress(OSError):
            job_dir.rmdir()  # only empty ones go
    return total + need <= budget


def drop_job(job_id: int) -> None:
    """Remove a finished job's decoded chunks from this machine."""
    shutil.rmtree(root() / f"job-{job_id}", ignore_errors=True)
