"""The encode step: one unit, a chunk of one rung (or the whole file for an audio rendition),
encoded by one ffmpeg run and uploaded to its deterministic key. A chunk is decoded once per
machine: its first unit keeps the decoded frames (``decoded_cache``) for the chunk's other
rungs. Permanent media errors fail the job at once; transient ones raise for RQ's retry.
"""

import dataclasses
import errno
import functools
import logging
import os
import socket
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

from botocore.exceptions import ClientError
from django.conf import settings
from rq.command import send_shutdown_command

from core import s3
from pipeline import decoded_cache, failures, ffmpeg, progress, scheduling
from pipeline.media import audio_rendition, chunk_plan, planned_fps, video_info_from_json, video_rendition
from pipeline.models import Artifact, Asset, RenditionKind, Unit, UnitState
from pipeline.services.common import artifact_record
from pipeline.services.units import unit_fail, unit_finish, unit_start
from pipeline.steps.common import source_url, upload, work_dir

logger = logging.getLogger(__name__)

# A unit whose output has the wrong frame count is re-encoded this many times in place
# before it counts as a failure.
VALIDATION_RETRIES = 2


def _output_is_valid(key: str, frames: int | None) -> bool:
    """A unit's output already in S3 with the planned frame count (written by a finished
    attempt that died before recording it): the unit has nothing left to do."""
    try:
        head = s3.client().head_object(Bucket=settings.S3_BUCKET_MEDIA, Key=key)
    except ClientError:
        return False
    stored = head.get("Metadata", {}).get("frames")
    return frames is None or stored == str(frames)


class _ProgressForwarder:
    """Sends a unit's ffmpeg progress to its job's group and watches the job's cancel flag."""

    def __init__(self, unit: Unit, cancel_event: threading.Event) -> None:
        self.unit = unit
        self.cancel_event = cancel_event
        self.throttle = progress.Throttle(settings.REELFLOW_PROGRESS_INTERVAL_MS / 1000)

    def __call__(self, report: ffmpeg.Progress) -> None:
        if progress.cancel_flag_is_set(self.unit.job_id):
            self.cancel_event.set()
            return
        if not (self.throttle.ready() or report.done):
            return
        progress.publish_rollback_unsafe(
            self.unit.job_id,
            {
                "kind": "progress",
                "unit": self.unit.pk,
                "rendition": self.unit.rendition.name,
                "rendition_id": self.unit.rendition_id,
                "chunk": self.unit.chunk.index if self.unit.chunk else None,
                "percent": None if report.percent is None else round(report.percent, 1),
                "fps": round(report.fps, 1),
                "speed": report.speed,
                "eta_s": None if report.eta_s is None else round(report.eta_s, 1),
                "frame": report.frame,
            },
        )


@dataclasses.dataclass
class _Frames:
    """Where a video unit reads its frames: the chunk's decoded copy (``cached``), the source
    while keeping a decoded copy for the chunk's other rungs (``reservation``), or the source."""

    build: functools.partial
    entry: decoded_cache.Entry | None = None
    frame_size: int | None = None
    cached: str | None = None
    reservation: decoded_cache.Reservation | None = None
    waited_s: float = 0.0
    decoded: str = "source"

    def args(self) -> list[str]:
        if self.cached:
            self.decoded = "cache"
            return self.build(cached_input=self.cached)
        if self.reservation:
            self.decoded = "source, cached"
            return self.build(cache_output=self.reservation.part_path)
        self.decoded = "source"
        return self.build()

    def from_source(self) -> list[str]:
        """Decode the source from now on: the cached frames were at fault, or keeping them was."""
        if self.cached:
            decoded_cache.discard(self.entry)
            self.cached = None
        if self.decoded == "source, cached":
            self.reservation.abort()
        self.decoded = "source"
        return self.build()

    def settle(self, *, valid: bool) -> None:
        if self.reservation and valid and self.decoded == "source, cached":
            self.reservation.commit(ffmpeg.count_frames, frame_size=self.frame_size)
        elif self.reservation:
            self.reservation.abort()


def _frames_for(unit: Unit, asset: Asset, video: ffmpeg.VideoInfo, fps: Fraction, chunk, build, mark) -> _Frames:
    frames = _Frames(build)
    frames.entry, frames.frame_size = _decoded_entry(unit, asset, video, fps, chunk)
    if frames.entry is None:
        return frames
    # The chunk's frames, or another unit of it decoding them right now: waiting for its
    # frames costs no CPU, decoding them again costs the whole decode.
    wait_started = time.monotonic()
    frames.cached = decoded_cache.await_writer(
        frames.entry, max_wait_s=settings.REELFLOW_DECODED_CACHE_WAIT_S,
        cancelled=lambda: progress.cancel_flag_is_set(unit.job_id),
    )
    frames.waited_s = time.monotonic() - wait_started
    mark("wait")
    if frames.cached is None:
        frames.reservation = decoded_cache.reserve(dataclasses.replace(frames.entry, readers=_chunk_readers(unit)))
    return frames


def _run_until_valid(unit: Unit, chunk, output: Path, frames: _Frames, forward: _ProgressForwarder):
    """Run the encode until the output has the planned frame count; returns (last run, frames
    written, ffmpeg seconds, CPU seconds over every run)."""
    args, ffmpeg_s, cpu_s, written = frames.args(), 0.0, 0.0, None
    for attempt in range(VALIDATION_RETRIES + 1):
        try:
            result = ffmpeg.run_ffmpeg(
                args, on_progress=forward, total_frames=chunk.frame_count, cancel_event=forward.cancel_event
            )
        except ffmpeg.MediaCancelledError:
            raise
        except ffmpeg.MediaError as exc:
            if frames.decoded == "source, cached":
                # Writing the decoded frames may be what failed (memory full, say): the
                # cache must never fail a unit, or make a worker think its disk is full.
                logger.warning("unit %s: encode with the decoded-chunk copy failed (%s): without it", unit.pk, exc.reason)
            elif not frames.cached or not isinstance(exc, ffmpeg.PermanentMediaError):
                raise
            else:
                # The cached frames, not the source, may be at fault: forget them, decode.
                logger.warning("unit %s could not read decoded chunk %s: decoding the source", unit.pk, frames.cached)
            args = frames.from_source()
            continue
        ffmpeg_s += result.wall_s
        cpu_s += result.cpu_s
        # ffmpeg's own count of the frames it wrote; a second ffprobe pass would cost a
        # process start (~150 ms) per unit. The assemble step re-counts the joined file.
        written = result.frames if result.frames is not None else ffmpeg.count_frames(output)
        if written == chunk.frame_count:
            return result, written, ffmpeg_s, cpu_s
        logger.warning("unit %s gave %s frames, planned %s (attempt %s)", unit.pk, written, chunk.frame_count, attempt + 1)
        if frames.cached:
            args = frames.from_source()
    raise ffmpeg.PermanentMediaError(
        f"chunk {chunk.index} encoded to {written} frames instead of {chunk.frame_count}, "
        f"{VALIDATION_RETRIES + 1} times; the source may be damaged near {chunk.start_s:.1f} s"
    )


def _encode_video_unit(unit: Unit, asset: Asset, workdir: Path, forward: _ProgressForwarder, mark) -> dict:
    video = video_info_from_json(asset.probe["video"])
    fps = planned_fps(video)
    chunk = chunk_plan(unit.chunk)
    output = workdir / f"unit-{unit.pk}.mp4"
    build = functools.partial(
        ffmpeg.build_unit_command, input_url=source_url(asset), output_path=output, chunk=chunk,
        rendition=video_rendition(unit.rendition.params), fps=fps, segment_seconds=unit.job.segment_seconds,
        source=video, threads=_encoder_threads(),
    )
    frames = _frames_for(unit, asset, video, fps, chunk, build, mark)
    mark("command")
    valid = False
    try:
        result, written, ffmpeg_s, cpu_s = _run_until_valid(unit, chunk, output, frames, forward)
        valid = True
    finally:
        frames.settle(valid=valid)
    mark("ffmpeg")
    size = upload(output, unit.output_key, metadata={"frames": written})
    mark("upload")
    return {
        "frames": written, "ffmpeg_s": ffmpeg_s, "cpu_s": cpu_s, "command": result.command, "size": size,
        "decoded_from": frames.decoded, "decoded_wait_s": round(frames.waited_s, 3),
    }


_THREADS_TTL_S = 60.0


_threads_cache: tuple[float, int] | None = None


def encoder_threads(*, cpus: int, workers: int) -> int:
    """Encoder threads per unit for ``workers`` encode workers sharing ``cpus`` CPUs (0: the
    encoder decides, when no worker is known)."""
    return max(1, cpus // workers) if workers > 0 else 0


def _encoder_threads() -> int:
    """``REELFLOW_ENCODER_THREADS``, or by default the CPUs shared among the encode workers
    registered from this host (RQ's worker registry, looked up once a minute)."""
    global _threads_cache
    if settings.REELFLOW_ENCODER_THREADS > 0:
        return settings.REELFLOW_ENCODER_THREADS
    now = time.monotonic()
    if _threads_cache is None or _threads_cache[0] < now:
        workers = scheduling.encode_workers(host=scheduling.this_host())
        _threads_cache = (now + _THREADS_TTL_S, encoder_threads(cpus=os.cpu_count() or 1, workers=workers))
    return _threads_cache[1]


def _decoded_entry(
    unit: Unit, asset: Asset, video: ffmpeg.VideoInfo, fps: Fraction, chunk
) -> tuple[decoded_cache.Entry | None, int | None]:
    """This unit's chunk in the machine's decoded-chunk cache and the bytes of one of its
    frames, or (None, None) when it is not cacheable."""
    rotated = video.rotation in (90, 270)
    width, height = (video.height, video.width) if rotated else (video.width, video.height)
    frame_size = decoded_cache.frame_bytes(pix_fmt=video.pix_fmt, width=width, height=height)
    if frame_size is None:
        return None, None
    identity = {
        # The job's creation time too: ids start again in a new database, the disk stays.
        "job": [unit.job_id, unit.job.created_at.isoformat()],
        "source": [asset.pk, asset.source_bucket, asset.source_key, asset.source_version, asset.source_size],
        "stream": video.index, "start_frame": chunk.start_frame, "frames": chunk.frame_count,
        "fps": str(fps), "interlaced": video.interlaced, "rotation": video.rotation,
    }
    entry = decoded_cache.entry_for(
        job_id=unit.job_id, chunk_index=chunk.index, frames=chunk.frame_count, frame_size=frame_size,
        identity=identity,
    )
    return entry, frame_size


def _chunk_readers(unit: Unit) -> int:
    """The chunk's other rungs still to run: the reads its writer keeps room for. Units running
    elsewhere, or decoding for themselves, are counted too: too many keeps an entry until it
    idles out or the job is packaged; too few would let it go before its readers come."""
    return (
        Unit.objects.filter(chunk_id=unit.chunk_id)
        .exclude(pk=unit.pk)
        .exclude(state__in=[UnitState.DONE, UnitState.FAILED, UnitState.CANCELLED])
        .count()
    )


def _encode_audio_unit(unit: Unit, asset: Asset, workdir: Path, forward: _ProgressForwarder, mark) -> dict:
    rendition = audio_rendition(unit.rendition.params)
    output = workdir / f"audio-{unit.pk}.mp4"
    video = asset.probe.get("video") or {}
    fps = planned_fps(video_info_from_json(video))
    frames = sum(unit.job.chunks.values_list("frame_count", flat=True))
    args = ffmpeg.build_audio_command(
        input_url=source_url(asset), output_path=output, rendition=rendition,
        stream_index=(asset.probe.get("audio") or [{}])[0].get("index"),
        video_start_offset_s=video.get("start_offset_s", 0.0),
        duration_s=float(frames / fps),
    )
    result = ffmpeg.run_ffmpeg(args, on_progress=forward, duration_s=asset.duration_s, cancel_event=forward.cancel_event)
    size = upload(output, unit.output_key)
    return {"frames": None, "ffmpeg_s": result.wall_s, "cpu_s": result.cpu_s, "command": result.command, "size": size}


def _looks_like_a_bad_read(exc: ffmpeg.MediaError) -> bool:
    return any(sign in exc.reason for sign in ("Invalid data found", "moov atom not found"))


def _stop_taking_work(worker: str, reason: str) -> None:
    """A worker whose disk is full would fail every unit it takes and burn their retries:
    it finishes this job (the unit is retried, elsewhere) and then shuts down."""
    logger.error("worker %s stops taking units: %s", worker or os.getpid(), reason)
    if worker:
        send_shutdown_command(progress.redis_conn(), worker)


def unit_run(*, unit_id: int, worker: str = "", rq_id: str = "") -> None:
    """Encode one unit. Permanent media errors fail the job at once; transient ones raise."""
    started = time.monotonic()
    marks = {}
    unit = unit_start(unit_id=unit_id, worker=worker or f"{socket.gethostname()}:{os.getpid()}", rq_id=rq_id)
    if unit is None:
        return
    asset = unit.job.asset
    planned = unit.chunk.frame_count if unit.chunk else None
    if unit.attempts > 1 and _output_is_valid(unit.output_key, planned):
        unit_finish(unit_id=unit_id, result={"frames": planned, "wall_s": time.monotonic() - started})
        return
    cancel_event = threading.Event()
    forward = _ProgressForwarder(unit, cancel_event)
    marks["start"] = time.monotonic() - started
    try:
        with progress.UnitHeartbeat(unit_id), tempfile.TemporaryDirectory(prefix="reelflow-unit-", dir=work_dir()) as tmp:
            encode = _encode_video_unit if unit.rendition.kind == RenditionKind.VIDEO else _encode_audio_unit
            result = encode(unit, asset, Path(tmp), forward, lambda name: marks.__setitem__(name, time.monotonic() - started))
    except ffmpeg.MediaCancelledError:
        logger.info("unit %s stopped: job %s was cancelled", unit_id, unit.job_id)
        return
    except ffmpeg.PermanentMediaError as exc:
        if _looks_like_a_bad_read(exc) and unit.attempts <= settings.REELFLOW_UNIT_RETRIES:
            # The source passed the probe at ingest; "invalid data" now is far more often a
            # read cut short (an S3 5xx or reset mid-range) than bad media: retry before
            # failing the whole job. The last attempt still fails with this reason.
            raise ffmpeg.TransientMediaError(exc.reason, stderr_tail=exc.stderr_tail, command=exc.command) from exc
        unit_fail(
            unit_id=unit_id, reason=exc.reason, log_tail=exc.stderr_tail, permanent=True,
            failure_class=failures.classify(exc).kind,
        )
        return
    except ffmpeg.TransientMediaError as exc:
        if exc.reason.startswith(ffmpeg.DISK_FULL_REASON):
            _stop_taking_work(worker, exc.reason)
        raise
    except OSError as exc:
        # Disk full or unwritable temp folder on this worker: retry, possibly elsewhere.
        if exc.errno == errno.ENOSPC:
            _stop_taking_work(worker, str(exc))
        raise ffmpeg.TransientMediaError(f"worker {socket.gethostname()} could not write its temp files: {exc}") from exc
    artifact_record(
        job_id=unit.job_id, kind=Artifact.Kind.UNIT if unit.chunk else Artifact.Kind.AUDIO,
        key=unit.output_key, size=result["size"], step=f"encode_unit:{unit.pk}",
        inputs={
            "source": {"bucket": asset.source_bucket, "key": asset.source_key, "version": asset.source_version},
            "range": None if unit.chunk is None else {
                "start_frame": unit.chunk.start_frame, "frame_count": unit.chunk.frame_count,
                "start_s": unit.chunk.start_s, "end_s": unit.chunk.end_s},
            "rendition": unit.rendition.params,
            "ffmpeg": ffmpeg.ffmpeg_version(),
            "command": result["command"],
            "worker": unit.worker,
            # "cache": frames decoded by another unit of this chunk on the same machine.
            "decoded_from": result.get("decoded_from", "source"),
            # Seconds spent waiting for that unit to finish writing them.
            "decoded_wait_s": result.get("decoded_wait_s", 0.0),
        },
    )
    marks["artifact"] = time.monotonic() - started
    result["wall_s"] = time.monotonic() - started
    unit_finish(unit_id=unit_id, result=result)
    marks["finish"] = time.monotonic() - started
    logger.info(
        "unit %s: %.0f ms total, ffmpeg %.0f ms, frames from %s; elapsed at each phase's end %s", unit_id,
        result["wall_s"] * 1000, result["ffmpeg_s"] * 1000, result.get("decoded_from", "source"),
        {k: round(v * 1000) for k, v in marks.items()},
    )


