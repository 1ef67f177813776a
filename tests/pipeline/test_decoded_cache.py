"""The decoded-chunk cache: an encode from cached frames sees exactly the frames (and
timestamps, and colour tags) an encode from the source sees; the cache stays within its
budget, never hands out a half-written file and never lets two writers at one entry."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from pathlib import Path

import pytest

from pipeline import decoded_cache
from pipeline import ffmpeg as ff
from pipeline.chunking import plan_chunks, planning_fps
from tests.conftest import ENCODE_LANE_1
from tests.pipeline import clips
from tests.pipeline.test_ffmpeg import rendition


@pytest.fixture
def cache_root(tmp_path, settings):
    settings.REELFLOW_DECODED_CACHE_DIR = str(tmp_path / "decoded")
    settings.REELFLOW_DECODED_CACHE_MB = 64
    settings.REELFLOW_DECODED_CACHE_TTL_S = 1800
    return Path(settings.REELFLOW_DECODED_CACHE_DIR)


def _frames_md5(args: list[str], out: Path) -> list[str]:
    """Run a unit's command with the encoder swapped for framemd5: what the encoder would get."""
    cut = args.index("-c:v")
    frames_at = args.index("-frames:v", cut)
    argv = [*args[:cut], *args[frames_at : frames_at + 2], "-f", "framemd5", str(out)]
    ff.run_ffmpeg(argv)
    return [line for line in out.read_text().splitlines() if not line.startswith("#")]


SOURCES = {
    "plain": {"duration": 6, "audio": False},
    "rotated": {"duration": 6, "rotate": 90, "audio": False},
    "vfr": {"duration": 6, "vfr": True, "audio": False},
    "interlaced": {"duration": 4, "interlaced": True, "audio": False},
    "late_video": {"duration": 6, "video_delay": 0.2},
    "ntsc": {"duration": 6, "fps": "30000/1001", "audio": False},
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_frames_from_the_cache_are_the_frames_from_the_source(tmp_path, name):
    source = clips.make_clip(tmp_path / f"{name}.mp4", **SOURCES[name])
    video = ff.probe(source).video
    fps = planning_fps(fps=video.fps, avg_fps=video.avg_fps, vfr=video.vfr)
    chunk = plan_chunks(duration_s=video.duration_s, fps=fps, chunk_seconds=2, segment_seconds=1)[1]
    cache_file = tmp_path / "chunk.mkv"
    common = {"input_url": source, "chunk": chunk, "fps": fps, "segment_seconds": 1, "source": video}

    # The producing unit: its encode and the raw frames in one run.
    producer = ff.build_unit_command(
        **common, output_path=tmp_path / "made.mp4", rendition=rendition(height=90), cache_output=cache_file
    )
    result = ff.run_ffmpeg(producer, total_frames=chunk.frame_count)
    assert result.frames == chunk.frame_count
    assert ff.count_frames(cache_file) == chunk.frame_count

    # Another rung: the frames (and their timestamps) entering its encoder, either way.
    other = rendition(height=60)
    from_source = ff.build_unit_command(**common, output_path=tmp_path / "a.mp4", rendition=other)
    from_cache = ff.build_unit_command(
        **common, output_path=tmp_path / "b.mp4", rendition=other, cached_input=cache_file
    )
    expected = _frames_md5(from_source, tmp_path / "source.md5")
    assert len(expected) == chunk.frame_count
    assert _frames_md5(from_cache, tmp_path / "cache.md5") == expected

    encoded = ff.run_ffmpeg(from_cache, total_frames=chunk.frame_count)
    assert encoded.frames == chunk.frame_count
    out = ff.probe(tmp_path / "b.mp4").video
    assert out.fps == fps and out.rotation == 0 and out.sar == 1
    assert ff.keyframe_indices(tmp_path / "b.mp4")[:2] == [0, round(fps)]


def test_colour_tags_survive_the_cache(tmp_path):
    source = tmp_path / "tagged.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=4",
         "-vf", "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709", str(source)],
        check=True,
    )  # fmt: skip
    video = ff.probe(source).video
    chunk = plan_chunks(duration_s=video.duration_s, fps=video.fps, chunk_seconds=2, segment_seconds=1)[0]
    common = {"input_url": source, "chunk": chunk, "fps": video.fps, "segment_seconds": 1, "source": video}
    cache_file = tmp_path / "chunk.mkv"
    ff.run_ffmpeg(ff.build_unit_command(**common, output_path=tmp_path / "a.mp4", rendition=rendition(),
                                        cache_output=cache_file))  # fmt: skip
    ff.run_ffmpeg(ff.build_unit_command(**common, output_path=tmp_path / "b.mp4", rendition=rendition(),
                                        cached_input=cache_file))  # fmt: skip

    def tags(path: Path) -> str:
        return subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-of", "compact",
             "-show_entries", "stream=color_range,color_space,color_transfer,color_primaries", str(path)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    assert "bt709" in tags(tmp_path / "a.mp4")
    assert tags(tmp_path / "b.mp4") == tags(tmp_path / "a.mp4")


# --- The cache's bookkeeping ------------------------------------------------------------------


def _entry(index: int = 0, *, frames: int = 10, frame_size: int = 1024, job_id: int = 1) -> decoded_cache.Entry:
    return decoded_cache.entry_for(
        job_id=job_id, chunk_index=index, frames=frames, frame_size=frame_size, identity={"i": index}
    )


def _write(path: Path, size: int, *, age_s: float = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))


def test_only_eight_bit_420_is_cached():
    assert decoded_cache.frame_bytes(pix_fmt="yuv420p", width=1280, height=720) == 1382400
    assert decoded_cache.frame_bytes(pix_fmt="yuvj420p", width=2, height=2) == 6
    for pix_fmt in ("yuv420p10le", "yuv444p", "rgb24", None):
        assert decoded_cache.frame_bytes(pix_fmt=pix_fmt, width=1280, height=720) is None


def test_a_reader_gets_only_complete_files(cache_root):
    entry = _entry()
    assert decoded_cache.lookup(entry) is None
    reservation = decoded_cache.reserve(entry)
    assert reservation is not None
    reservation.part_path.write_bytes(b"frames")
    assert decoded_cache.lookup(entry) is None, "a file still being written is not handed out"
    assert reservation.commit(lambda path: entry.frames)
    assert decoded_cache.lookup(entry) == entry.path
    assert not entry.part_path.exists() and not entry.lock_path.exists()


def test_a_file_with_the_wrong_frame_count_is_dropped(cache_root):
    entry = _entry()
    reservation = decoded_cache.reserve(entry)
    reservation.part_path.write_bytes(b"frames")
    assert not reservation.commit(lambda path: entry.frames - 1)
    assert decoded_cache.lookup(entry) is None and not entry.part_path.exists()
    # and a reader that failed on a file forgets it
    _write(entry.path, 10)
    decoded_cache.discard(entry)
    assert decoded_cache.lookup(entry) is None


def test_one_writer_per_entry_and_a_dead_writer_releases_it(cache_root):
    entry = _entry()
    first = decoded_cache.reserve(entry)
    assert first is not None
    assert decoded_cache.reserve(entry) is None, "a second writer while the first holds the lock"
    first.abort()
    assert decoded_cache.reserve(entry) is not None

    # A writer in another process that dies holding the lock: the kernel releases it.
    other = _entry(1)
    other.path.parent.mkdir(parents=True, exist_ok=True)
    code = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); os._exit(0) if sys.stdin.read() else None"
    )
    child = subprocess.Popen(
        ["python3", "-c", code, str(other.lock_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "locked"
    assert decoded_cache.reserve(other) is None
    child.kill()
    child.wait()
    assert decoded_cache.reserve(other) is not None


def test_a_chunk_over_the_budget_or_the_free_disk_is_not_cached(cache_root, settings, monkeypatch):
    assert decoded_cache.reserve(_entry(frames=100, frame_size=1024**2)) is None  # 100 MiB > 64 MiB
    settings.REELFLOW_DECODED_CACHE_MB = 0
    assert decoded_cache.reserve(_entry()) is None, "0 turns the cache off"
    settings.REELFLOW_DECODED_CACHE_MB = 64
    real = decoded_cache.shutil.disk_usage
    monkeypatch.setattr(
        decoded_cache.shutil, "disk_usage", lambda path: real(path)._replace(free=decoded_cache.FREE_RESERVE_BYTES)
    )
    assert decoded_cache.reserve(_entry()) is None, "the disk's free reserve is never used"


def test_room_is_made_least_recently_used_first_and_idle_entries_expire(cache_root, settings):
    mib = 1024**2
    old, recent = _entry(1, job_id=7), _entry(2, job_id=8)
    _write(old.path, 30 * mib, age_s=100)
    _write(recent.path, 30 * mib, age_s=10)
    wanted = _entry(3, frames=10, frame_size=mib)  # 10 MiB more: 70 > 64, the older one goes
    reservation = decoded_cache.reserve(wanted)
    assert reservation is not None
    assert not old.path.exists() and recent.path.exists()
    assert not old.path.parent.exists(), "an emptied job folder goes too"
    reservation.abort()

    # Idle entries expire even with room to spare; a live writer's part file stays however old.
    writing = decoded_cache.reserve(_entry(4))
    _write(writing.part_path, mib, age_s=5000)
    fresh = _entry(5, job_id=9)
    _write(fresh.path, mib, age_s=10)
    os.utime(recent.path, (time.time() - 120, time.time() - 120))
    settings.REELFLOW_DECODED_CACHE_TTL_S = 60
    assert decoded_cache.reserve(_entry(6)) is not None
    assert not recent.path.exists(), "idle for longer than the TTL"
    assert fresh.path.exists() and writing.part_path.exists()
    writing.abort()


def test_a_finished_job_drops_its_chunks(cache_root):
    entry = _entry(job_id=42)
    _write(entry.path, 10)
    decoded_cache.drop_job(42)
    assert not entry.path.parent.exists()


def test_the_lock_is_advisory_per_open_file(cache_root):
    """What the one-writer rule rests on: flock conflicts between two opens in one process."""
    lock = cache_root / "probe.lock"
    lock.parent.mkdir(parents=True)
    a = os.open(lock, os.O_CREAT | os.O_RDWR)
    b = os.open(lock, os.O_RDWR)
    fcntl.flock(a, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with pytest.raises(BlockingIOError):
        fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(a)
    os.close(b)


def test_the_default_place_is_memory_and_there_the_budget_is_an_eighth_of_the_ram(settings, tmp_path):
    if decoded_cache._file_system_type(decoded_cache.SHM) != "tmpfs":
        pytest.skip("this machine has no /dev/shm tmpfs")
    settings.REELFLOW_DECODED_CACHE_DIR = ""
    assert decoded_cache.root() == decoded_cache.SHM / f"reelflow-decoded-{os.getuid()}"
    settings.REELFLOW_DECODED_CACHE_MB = 10**7
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert decoded_cache.budget_bytes() == int(ram / 8)
    settings.REELFLOW_DECODED_CACHE_MB = 100
    assert decoded_cache.budget_bytes() == 100 * 1024**2
    # On a disk the configured budget stands, whatever the RAM.
    settings.REELFLOW_DECODED_CACHE_DIR = str(tmp_path)
    settings.REELFLOW_DECODED_CACHE_MB = 10**7
    assert decoded_cache._file_system_type(tmp_path) != "tmpfs"
    assert decoded_cache.budget_bytes() == 10**7 * 1024**2


def test_a_folder_someone_else_could_write_is_not_used(cache_root):
    cache_root.mkdir(mode=0o777)
    os.chmod(cache_root, 0o777)  # noqa: S103 - as if another local user had made it, open to all
    entry = _entry()
    assert decoded_cache.reserve(entry) is None
    _write(entry.path, 10)
    assert decoded_cache.lookup(entry) is None
    os.chmod(cache_root, 0o700)
    assert decoded_cache.lookup(entry) == entry.path
    # Nor a symbolic link planted where the folder would be.
    os.rename(cache_root, cache_root.with_name("elsewhere"))
    cache_root.symlink_to(cache_root.with_name("elsewhere"))
    assert decoded_cache.lookup(entry) is None and decoded_cache.reserve(_entry(1)) is None


@pytest.mark.slow
@ENCODE_LANE_1
def test_a_failing_cache_write_never_fails_the_unit(tmp_path, publisher, upload, run_workers, s3, settings):
    """Fault: the decoded frames cannot be written (a directory squats on every part file's
    name). Each producing unit falls back to a plain encode at once: the job publishes, no
    unit needed a retry, and no worker took it for a full disk."""
    from pipeline import media
    from pipeline.models import Artifact, EncodeJob, JobState, Unit
    from pipeline.steps import ingest
    from pipeline.steps import units as unit_step
    from tests.pipeline.test_pipeline_e2e import announce

    settings.REELFLOW_CHUNK_SECONDS = 2
    settings.REELFLOW_SEGMENT_SECONDS = 2
    clip = clips.make_clip(tmp_path / "clip.mp4", duration=4, width=640, height=360, fps=25, audio=False)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    ingest.job_ingest_run(job_id=job_id)  # probe and plan here; the units wait in the queue
    job = EncodeJob.objects.select_related("asset").get(pk=job_id)
    video = media.video_info_from_json(job.asset.probe["video"])
    fps = media.planned_fps(video)
    squatted = set()
    for unit in Unit.objects.filter(job=job, chunk__isnull=False).select_related("chunk", "job"):
        chunk = unit.chunk
        entry, _ = unit_step._decoded_entry(unit, job.asset, video, fps, chunk)
        entry.part_path.mkdir(parents=True, exist_ok=True)
        squatted.add(entry.part_path)
    assert len(squatted) == 2  # one per chunk

    assert run_workers(2) == [0, 0]
    job.refresh_from_db()
    assert job.state == JobState.PUBLISHED, job.failure_reason
    units = Unit.objects.filter(job=job, chunk__isnull=False)
    assert units.count() == 2 * 2  # 240p and 360p, 2 chunks
    assert all(u.attempts == 1 for u in units), "no RQ retry was needed"
    how = set(Artifact.objects.filter(job=job, kind=Artifact.Kind.UNIT).values_list("inputs__decoded_from", flat=True))
    assert how == {"source"}, how


# --- Waiting for a writer, and the frame count by size -----------------------------------------

_WRITER = """
import fcntl, os, sys, time
lock, part, final, step, steps, mode = sys.argv[1:7]
fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("writing", flush=True)
with open(part, "wb") as out:
    for i in range(int(steps)):
        out.write(b"\\0" * int(step))
        out.flush()
        if mode == "stall" and i == 1:
            time.sleep(60)
        time.sleep(0.05)
if mode == "finish":
    os.replace(part, final)
    os.unlink(lock)
"""


@contextlib.contextmanager
def _writer(entry: decoded_cache.Entry, *, step: int, steps: int, mode: str = "finish"):
    """Another unit's ffmpeg, as the cache sees it: holds the entry's lock and grows its file
    (stopped on leaving the block, if still running)."""
    entry.path.parent.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(
        ["python3", "-c", _WRITER, str(entry.lock_path), str(entry.part_path), str(entry.path), str(step), str(steps), mode],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "writing"
        yield child
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_a_unit_waits_for_the_writer_of_its_chunk(cache_root):
    entry = _entry(frames=10, frame_size=100_000)  # about 1.07 MB
    with _writer(entry, step=60_000, steps=18) as child:  # about 1 s
        started = time.monotonic()
        assert decoded_cache.await_writer(entry, max_wait_s=10) == entry.path
        assert 0.5 < time.monotonic() - started < 5
        child.wait()


def test_no_wait_without_a_writer_or_with_waiting_off(cache_root):
    entry = _entry()
    started = time.monotonic()
    assert decoded_cache.await_writer(entry, max_wait_s=10) is None
    assert time.monotonic() - started < 0.1
    with _writer(entry, step=1000, steps=100):
        assert decoded_cache.await_writer(entry, max_wait_s=0) is None


def test_a_writer_too_slow_for_the_wait_limit_is_not_waited_for(cache_root):
    entry = _entry(frames=10, frame_size=100_000)
    with _writer(entry, step=5_000, steps=400):  # 100 KB/s: about 10 s for the chunk
        started = time.monotonic()
        assert decoded_cache.await_writer(entry, max_wait_s=3) is None
        assert time.monotonic() - started < 2, "judged by the growth rate, not by running out the clock"


def test_a_stalled_or_dead_writer_ends_the_wait(cache_root):
    entry = _entry(frames=10, frame_size=100_000)
    with _writer(entry, step=10_000, steps=100, mode="stall"):
        started = time.monotonic()
        assert decoded_cache.await_writer(entry, max_wait_s=30, stall_s=0.5) is None
        assert time.monotonic() - started < 3

    other = _entry(1, frames=10, frame_size=100_000)
    with _writer(other, step=20_000, steps=1000) as child:
        killer = subprocess.Popen(["sh", "-c", f"sleep 0.5; kill -9 {child.pid}"])
        started = time.monotonic()
        assert decoded_cache.await_writer(other, max_wait_s=30) is None
        assert time.monotonic() - started < 2, "the kernel drops a dead writer's lock; the wait ends with it"
        killer.wait()


def test_a_cancelled_job_stops_waiting(cache_root):
    entry = _entry(frames=10, frame_size=100_000)
    with _writer(entry, step=20_000, steps=1000):
        started = time.monotonic()
        assert decoded_cache.await_writer(entry, max_wait_s=30, cancelled=lambda: time.monotonic() - started > 0.3) is None
        assert time.monotonic() - started < 1


def test_the_frame_count_of_a_written_chunk_comes_from_its_size():
    frame = 1280 * 720 * 3 // 2
    overhead = 23_176  # measured: 500 raw 720p frames in Matroska
    assert decoded_cache.frames_by_size(500 * frame + overhead, frames=500, frame_size=frame) == 500
    assert decoded_cache.frames_by_size(499 * frame + overhead, frames=500, frame_size=frame) == 499
    assert decoded_cache.frames_by_size(500 * frame - 1, frames=500, frame_size=frame) is None  # cut mid-frame
    assert decoded_cache.frames_by_size(501 * frame + overhead, frames=500, frame_size=frame) == 501


def test_commit_checks_the_size_without_reading_the_file(cache_root):
    entry = _entry(frames=10, frame_size=100_000)

    def must_not_read(path):
        raise AssertionError("the size decides; the file is not read")

    reservation = decoded_cache.reserve(entry)
    _write(reservation.part_path, 10 * 100_000 + 900)
    assert reservation.commit(must_not_read, frame_size=100_000)
    assert decoded_cache.lookup(entry) == entry.path

    short = _entry(1, frames=10, frame_size=100_000)
    reservation = decoded_cache.reserve(short)
    _write(reservation.part_path, 9 * 100_000 + 900)  # a frame short: ffmpeg stopped early
    assert not reservation.commit(must_not_read, frame_size=100_000)
    assert decoded_cache.lookup(short) is None and not short.part_path.exists()

    # Frames smaller than what Matroska adds cannot be told apart by size: counted instead.
    tiny = _entry(2, frames=10, frame_size=6)
    reservation = decoded_cache.reserve(tiny)
    _write(reservation.part_path, 1000)
    assert reservation.commit(lambda path: 10, frame_size=6)


def _written(entry: decoded_cache.Entry, size: int, *, age_s: float = 0) -> None:
    """A committed entry, as a writer leaves it: the file and how many reads it expects."""
    reservation = decoded_cache.reserve(entry)
    assert reservation is not None
    _write(reservation.part_path, size)
    assert reservation.commit(lambda path: entry.frames)
    stamp = time.time() - age_s
    os.utime(entry.path, (stamp, stamp))


def test_a_chunk_whose_readers_are_still_to_come_is_never_evicted(cache_root, settings):
    mib = 1024**2
    first = decoded_cache.entry_for(job_id=1, chunk_index=0, frames=30, frame_size=mib, identity={"c": 0}, readers=2)
    _written(first, 30 * mib, age_s=100)
    second = decoded_cache.entry_for(job_id=1, chunk_index=1, frames=30, frame_size=mib, identity={"c": 1}, readers=2)
    _written(second, 30 * mib, age_s=50)
    # A third chunk does not fit (90 > 64 MiB) beside two whose readers have not come: it is
    # not cached, and neither older chunk is thrown out for it.
    third = decoded_cache.entry_for(job_id=1, chunk_index=2, frames=30, frame_size=mib, identity={"c": 2}, readers=2)
    assert decoded_cache.reserve(third) is None
    assert first.path.exists() and second.path.exists()

    # One read of two: still protected. Both reads: spent, and the first to go.
    assert decoded_cache.lookup(first) == first.path
    assert decoded_cache.reserve(third) is None
    assert decoded_cache.lookup(first) == first.path
    reservation = decoded_cache.reserve(third)
    assert reservation is not None
    assert not first.path.exists() and not first.reads_path.exists(), "the spent chunk went, with its read count"
    assert second.path.exists()
    reservation.abort()

    # Protection ends when the entry idles out (a job cancelled, its readers gone elsewhere).
    os.utime(second.path, (time.time() - 120, time.time() - 120))
    settings.REELFLOW_DECODED_CACHE_TTL_S = 60
    assert decoded_cache.reserve(third) is not None
    assert not second.path.exists()


def test_a_dead_writers_leftover_is_dropped_at_once(cache_root):
    entry = _entry(1)
    _write(entry.part_path, 1024)  # no lock held: its producer died
    assert decoded_cache.reserve(_entry(2)) is not None
    assert not entry.part_path.exists()
