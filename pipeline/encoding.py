"""The heavy work of each step, run inside RQ workers: probe, encode a unit, assemble a
rendition, package a job. Bytes only move through S3 (presigned URLs for ffmpeg's reads,
uploads for its outputs); nothing here assumes a disk shared with any other process.

State changes are delegated to pipeline.services, which decide under row locks.
"""

import dataclasses
import errno
import functools
import json
import logging
import mimetypes
import os
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

from botocore.exceptions import ClientError
from django.conf import settings

from core import s3
from pipeline import chunking, decoded_cache, ffmpeg, manifests, packaging_cmds, progress, services
from pipeline.models import (
    Artifact,
    Asset,
    EncodeJob,
    JobState,
    Rendition,
    RenditionKind,
    RenditionState,
    Unit,
    UnitState,
)

logger = logging.getLogger(__name__)

# A unit whose output has the wrong frame count is re-encoded this many times in place
# before it counts as a failure.
VALIDATION_RETRIES = 2
SOURCE_URL_SECONDS = 12 * 3600

mimetypes.add_type("application/vnd.apple.mpegurl", ".m3u8")
mimetypes.add_type("application/dash+xml", ".mpd")
mimetypes.add_type("video/iso.segment", ".m4s")
mimetypes.add_type("text/vtt", ".vtt")


def _work_dir() -> str | None:
    return os.environ.get("REELFLOW_WORK_DIR") or None


def _source_url(asset: Asset) -> str:
    return s3.presign_get(asset.source_bucket, asset.source_key, expires=SOURCE_URL_SECONDS, public=False)


def _media_url(key: str) -> str:
    return s3.presign_get(settings.S3_BUCKET_MEDIA, key, expires=SOURCE_URL_SECONDS, public=False)


# --- Probe results stored on the asset ------------------------------------------------------


def _jsonable(value):
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "raw"}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def media_info_json(info: ffmpeg.MediaInfo) -> dict:
    return _jsonable(asdict(info))


def video_info_from_json(data: dict) -> ffmpeg.VideoInfo:
    fields = dict(data)
    for key in ("fps", "avg_fps", "sar"):
        fields[key] = Fraction(fields[key])
    return ffmpeg.VideoInfo(**fields)


def video_rendition(params: dict) -> ffmpeg.VideoRendition:
    """The encoder settings of a video rung, from its stored params."""
    return ffmpeg.VideoRendition(
        name=params["name"], codec=params["codec"], height=params["height"], crf=params.get("crf"),
        bitrate_kbps=params.get("bitrate_kbps"), maxrate_kbps=params.get("maxrate_kbps"),
        bufsize_kbps=params.get("bufsize_kbps"), preset=params.get("preset") or None,
    )


def audio_rendition(params: dict) -> ffmpeg.AudioRendition:
    """The encoder settings of an audio rendition, from its stored params."""
    return ffmpeg.AudioRendition(
        name=params["name"], codec=params["codec"], bitrate_kbps=params["bitrate_kbps"], channels=params["channels"]
    )


def chunk_plan(row) -> chunking.Chunk:
    """The planned range of a chunk row (pipeline.models.Chunk)."""
    return chunking.Chunk(
        index=row.index, start_s=row.start_s, end_s=row.end_s, start_frame=row.start_frame, frame_count=row.frame_count
    )


def planned_fps(video: ffmpeg.VideoInfo) -> Fraction:
    return chunking.planning_fps(fps=video.fps, avg_fps=video.avg_fps, vfr=video.vfr)


def _plan_duration(info: ffmpeg.MediaInfo, fps: Fraction) -> float:
    """The duration the chunk plan covers: the video stream's, exact from its frame count
    when the source is constant-rate and indexed."""
    video = info.video
    if video.frame_count and not video.vfr:
        return float(Fraction(video.frame_count) / fps)
    return video.duration_s or info.duration


def _alive_while_running(rq_id_for):
    """Keep the step's liveness key fresh while it runs, so the reconciler can tell a long
    step from a lost one (see progress.step_heartbeat). Keyed by the step's RQ id."""

    def decorate(step):
        @functools.wraps(step)
        def wrapped(**kwargs):
            with progress.step_heartbeat(rq_id_for(kwargs)):
                return step(**kwargs)

        return wrapped

    return decorate


# --- Ingest: probe and plan -----------------------------------------------------------------


@_alive_while_running(lambda kwargs: f"ingest-{kwargs['job_id']}")
def job_ingest_run(*, job_id: int) -> None:
    job = services.job_probe_start(job_id=job_id)
    if job is None:
        return
    try:
        if job.asset.source_size == 0:
            # S3 answers a ranged read of an empty object with 416, which reads as a glitch.
            raise ffmpeg.PermanentMediaError("not a media file: the file is empty (0 bytes); upload it again")
        limit = settings.REELFLOW_MAX_UPLOAD_BYTES
        if job.asset.source_size and job.asset.source_size > limit:
            # The studio refuses such uploads up front; a file put straight into the bucket
            # (aws s3 cp, the SQS path) is only seen here.
            raise ffmpeg.PermanentMediaError(
                f"the file is {_mib(job.asset.source_size)}, over the {_mib(limit)} upload limit"
            )
        info = ffmpeg.probe(_source_url(job.asset))
        ffmpeg.validate_source(
            info, max_duration_s=settings.REELFLOW_MAX_DURATION_SECONDS, max_pixels=settings.REELFLOW_MAX_PIXELS
        )
        fps = planned_fps(info.video)
        chunks = chunking.plan_chunks(
            duration_s=_plan_duration(info, fps),
            fps=fps,
            chunk_seconds=job.chunk_seconds,
            segment_seconds=job.segment_seconds,
        )
    except ffmpeg.PermanentMediaError as exc:
        services.job_fail(job_id=job_id, reason=exc.reason)
        return
    except ValueError as exc:
        services.job_fail(job_id=job_id, reason=f"cannot plan this source: {exc}")
        return
    services.job_plan(job_id=job_id, info=_StoredInfo(info), chunks=chunks)


def _mib(size: int) -> str:
    return f"{size / 1024**2:,.1f} MiB"


class _StoredInfo:
    """A MediaInfo with `as_dict()` for services.job_plan (which knows no ffmpeg types)."""

    def __init__(self, info: ffmpeg.MediaInfo) -> None:
        self._info = info

    def __getattr__(self, name):
        return getattr(self._info, name)

    def as_dict(self) -> dict:
        return media_info_json(self._info)


# --- Encode units ---------------------------------------------------------------------------


def _output_is_valid(key: str, frames: int | None) -> bool:
    """A unit's output already in S3 with the planned frame count (written by a finished
    attempt that died before recording it): the unit has nothing left to do."""
    try:
        head = s3.client().head_object(Bucket=settings.S3_BUCKET_MEDIA, Key=key)
    except ClientError:
        return False
    stored = head.get("Metadata", {}).get("frames")
    return frames is None or stored == str(frames)


# Below this size one PUT beats upload_file's transfer manager (its thread pool alone costs
# ~30 ms to set up, per unit); above it, parallel multipart parts win.
SINGLE_PUT_MAX_BYTES = 32 * 1024 * 1024
# Parallel PUTs (package upload) and server-side copies (publish) of a package's ~100 small
# files. 16 instead of 8 was measured and changed nothing on a 2-core machine (364-372 against
# 385 ms for 109 files): the S3 server, not the round trips, bounds it there.
PACKAGE_TRANSFERS = 8


def _upload(path: Path, key: str, *, metadata: dict | None = None) -> int:
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    size = path.stat().st_size
    if size <= SINGLE_PUT_MAX_BYTES:
        with path.open("rb") as body:
            s3.client().put_object(
                Bucket=settings.S3_BUCKET_MEDIA, Key=key, Body=body, ContentType=content_type, Metadata=meta
            )
    else:
        s3.client().upload_file(
            str(path), settings.S3_BUCKET_MEDIA, key, ExtraArgs={"ContentType": content_type, "Metadata": meta}
        )
    return size


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


def _encode_video_unit(unit: Unit, asset: Asset, workdir: Path, forward: _ProgressForwarder, mark) -> dict:
    video = video_info_from_json(asset.probe["video"])
    fps = planned_fps(video)
    rendition = video_rendition(unit.rendition.params)
    chunk = chunk_plan(unit.chunk)
    output = workdir / f"unit-{unit.pk}.mp4"
    build = functools.partial(
        ffmpeg.build_unit_command, input_url=_source_url(asset), output_path=output, chunk=chunk,
        rendition=rendition, fps=fps, segment_seconds=unit.job.segment_seconds, source=video,
        threads=_encoder_threads(),
    )
    entry, frame_size = _decoded_entry(unit, asset, video, fps, chunk)
    cached, waited_s, reservation = None, 0.0, None
    if entry is not None:
        # The chunk's frames, or another unit of it decoding them right now: waiting for its
        # frames costs no CPU, decoding them again costs the whole decode.
        wait_started = time.monotonic()
        cached = decoded_cache.await_writer(
            entry, max_wait_s=settings.REELFLOW_DECODED_CACHE_WAIT_S,
            cancelled=lambda: progress.cancel_flag_is_set(unit.job_id),
        )
        waited_s = time.monotonic() - wait_started
        mark("wait")
        if cached is None:
            reservation = decoded_cache.reserve(dataclasses.replace(entry, readers=_chunk_readers(unit)))
    if cached:
        args, decoded = build(cached_input=cached), "cache"
    elif reservation:
        args, decoded = build(cache_output=reservation.part_path), "source, cached"
    else:
        args, decoded = build(), "source"
    ffmpeg_s = cpu_s = 0.0
    frames, valid = None, False
    mark("command")
    try:
        for attempt in range(VALIDATION_RETRIES + 1):
            try:
                result = ffmpeg.run_ffmpeg(
                    args, on_progress=forward, total_frames=chunk.frame_count, cancel_event=forward.cancel_event
                )
            except ffmpeg.MediaCancelledError:
                raise
            except ffmpeg.MediaError as exc:
                if decoded == "source, cached":
                    # Writing the decoded frames may be what failed (memory full, say): the
                    # cache must never fail a unit, or make a worker think its disk is full.
                    logger.warning("unit %s: encode with the decoded-chunk copy failed (%s): without it", unit.pk, exc.reason)
                    reservation.abort()
                    args, decoded = build(), "source"
                    continue
                if not cached or not isinstance(exc, ffmpeg.PermanentMediaError):
                    raise
                # The cached frames, not the source, may be at fault: forget them, decode.
                logger.warning("unit %s could not read decoded chunk %s: decoding the source", unit.pk, cached)
                decoded_cache.discard(entry)
                cached, args, decoded = None, build(), "source"
                continue
            ffmpeg_s += result.wall_s
            cpu_s += result.cpu_s
            # ffmpeg's own count of the frames it wrote; a second ffprobe pass would cost a
            # process start (~150 ms) per unit. The assemble step re-counts the joined file.
            frames = result.frames if result.frames is not None else ffmpeg.count_frames(output)
            if frames == chunk.frame_count:
                valid = True
                break
            logger.warning(
                "unit %s gave %s frames, planned %s (attempt %s)", unit.pk, frames, chunk.frame_count, attempt + 1
            )
            if cached:
                decoded_cache.discard(entry)
                cached, args, decoded = None, build(), "source"
        else:
            raise ffmpeg.PermanentMediaError(
                f"chunk {chunk.index} encoded to {frames} frames instead of {chunk.frame_count}, "
                f"{VALIDATION_RETRIES + 1} times; the source may be damaged near {chunk.start_s:.1f} s"
            )
    finally:
        if reservation and valid and decoded == "source, cached":
            reservation.commit(ffmpeg.count_frames, frame_size=frame_size)
        elif reservation:
            reservation.abort()
    mark("ffmpeg")
    size = _upload(output, unit.output_key, metadata={"frames": frames})
    mark("upload")
    return {
        "frames": frames, "ffmpeg_s": ffmpeg_s, "cpu_s": cpu_s, "command": result.command, "size": size,
        "decoded_from": decoded, "decoded_wait_s": round(waited_s, 3),
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
        from pipeline import scheduling

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
        input_url=_source_url(asset), output_path=output, rendition=rendition,
        stream_index=(asset.probe.get("audio") or [{}])[0].get("index"),
        video_start_offset_s=video.get("start_offset_s", 0.0),
        duration_s=float(frames / fps),
    )
    result = ffmpeg.run_ffmpeg(args, on_progress=forward, duration_s=asset.duration_s, cancel_event=forward.cancel_event)
    size = _upload(output, unit.output_key)
    return {"frames": None, "ffmpeg_s": result.wall_s, "cpu_s": result.cpu_s, "command": result.command, "size": size}


def _looks_like_a_bad_read(exc: ffmpeg.MediaError) -> bool:
    return any(sign in exc.reason for sign in ("Invalid data found", "moov atom not found"))


def _stop_taking_work(worker: str, reason: str) -> None:
    """A worker whose disk is full would fail every unit it takes and burn their retries:
    it finishes this job (the unit is retried, elsewhere) and then shuts down."""
    logger.error("worker %s stops taking units: %s", worker or os.getpid(), reason)
    if worker:
        from rq.command import send_shutdown_command

        send_shutdown_command(progress.redis_conn(), worker)


def unit_run(*, unit_id: int, worker: str = "", rq_job_id: str = "") -> None:
    """Encode one unit. Permanent media errors fail the job at once; transient ones raise."""
    started = time.monotonic()
    marks = {}
    unit = services.unit_start(unit_id=unit_id, worker=worker or f"{socket.gethostname()}:{os.getpid()}", rq_job_id=rq_job_id)
    if unit is None:
        return
    asset = unit.job.asset
    planned = unit.chunk.frame_count if unit.chunk else None
    if unit.attempts > 1 and _output_is_valid(unit.output_key, planned):
        services.unit_finish(unit_id=unit_id, result={"frames": planned, "wall_s": time.monotonic() - started})
        return
    cancel_event = threading.Event()
    forward = _ProgressForwarder(unit, cancel_event)
    marks["start"] = time.monotonic() - started
    try:
        with progress.UnitHeartbeat(unit_id), tempfile.TemporaryDirectory(prefix="reelflow-unit-", dir=_work_dir()) as tmp:
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
        services.unit_fail(unit_id=unit_id, reason=exc.reason, log_tail=exc.stderr_tail, permanent=True)
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
    services.artifact_record(
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
    services.unit_finish(unit_id=unit_id, result=result)
    marks["finish"] = time.monotonic() - started
    logger.info(
        "unit %s: %.0f ms total, ffmpeg %.0f ms, frames from %s; elapsed at each phase's end %s", unit_id,
        result["wall_s"] * 1000, result["ffmpeg_s"] * 1000, result.get("decoded_from", "source"),
        {k: round(v * 1000) for k, v in marks.items()},
    )


# --- Assemble -------------------------------------------------------------------------------


def _fail_on_permanent(step):
    """A permanent error in a step ends the job with its reason (and ffmpeg's last words)
    instead of being retried; transient ones propagate to RQ's retry."""

    def wrapped(**kwargs):
        try:
            return step(**kwargs)
        except ffmpeg.PermanentMediaError as exc:
            job_id = kwargs.get("job_id") or Rendition.objects.values_list("job_id", flat=True).get(
                pk=kwargs["rendition_id"]
            )
            logger.error("%s failed: %s\n%s\n%s", step.__name__, exc.reason, exc.command, exc.stderr_tail)
            detail = exc.stderr_tail.strip().splitlines()[-1:] if exc.stderr_tail else []
            services.job_fail(job_id=job_id, reason=" — ".join([exc.reason, *detail]))

    wrapped.__name__ = step.__name__
    return wrapped


@_alive_while_running(lambda kwargs: f"assemble-{kwargs['rendition_id']}")
@_fail_on_permanent
def rendition_assemble_run(*, rendition_id: int) -> None:
    started = time.monotonic()
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks[name] = time.monotonic() - started

    rendition = Rendition.objects.select_related("job__asset").get(pk=rendition_id)
    if rendition.state != RenditionState.ASSEMBLING or rendition.job.state != JobState.ENCODING:
        return
    job = rendition.job
    units = list(Unit.objects.filter(rendition=rendition).select_related("chunk").order_by("chunk__index"))
    if any(u.state != UnitState.DONE for u in units):
        raise ffmpeg.TransientMediaError(f"rendition {rendition.name} has unfinished units")
    segment_s = chunking.segment_duration_s(fps=planned_fps(video_info_from_json(job.asset.probe["video"])),
                                            segment_seconds=job.segment_seconds)
    key = f"{job.output_prefix}/renditions/{rendition.name}-{services.params_digest(rendition.params)}.mp4"
    # Stored once, in the form the package addresses by byte range (pipeline.manifests).
    file_name = f"{rendition.name}.mp4"
    if rendition.kind == RenditionKind.AUDIO:
        unit = units[0]
        with tempfile.TemporaryDirectory(prefix="reelflow-asm-", dir=_work_dir()) as tmp:
            packed = Path(tmp)
            ffmpeg.run_ffmpeg(["-i", _media_url(unit.output_key), *packaging_cmds.rendition_package_args(
                out_dir=packed, file_name=file_name, segment_seconds=segment_s, stream="0:a:0")])  # fmt: skip
            facts = _fragment_facts(packed / file_name)
            layout = _layout(packed, file_name)
            _check_layout_segments(layout, segment_s, name=rendition.name)
            size = _upload(packed / file_name, key)
            _upload_layout(key, layout)
        services.artifact_record(
            job_id=job.pk, kind=Artifact.Kind.RENDITION, key=key, size=size, step=f"assemble:{rendition.name}",
            inputs={"units": [unit.output_key], "ffmpeg": ffmpeg.ffmpeg_version()}, parent_keys=[unit.output_key],
        )
        services.rendition_ready(
            rendition_id=rendition_id, output_key=key,
            stats={"duration_s": facts.duration_s, "bitrate_kbps": rendition.params.get("bitrate_kbps")},
        )  # fmt: skip
        return

    video = video_info_from_json(job.asset.probe["video"])
    fps = planned_fps(video)
    planned_frames = sum(u.chunk.frame_count for u in units)
    pictures = [name for name, source in _picture_sources(job).items() if source.pk == rendition.pk]
    with tempfile.TemporaryDirectory(prefix="reelflow-asm-", dir=_work_dir()) as tmp:
        list_file = Path(tmp) / "units.txt"
        ffmpeg.write_concat_list(paths=[_media_url(u.output_key) for u in units], list_file=list_file)
        # One read of the units: the single fragmented file that is stored and packaged, and
        # beside it, when pictures are cut from this rendition, a plain MP4 to cut them from.
        packed = Path(tmp) / "package"
        packed.mkdir()
        plain = Path(tmp) / "joined.mp4"
        mark("start")
        ffmpeg.run_ffmpeg([
            *ffmpeg.concat_input_args(list_file=list_file),
            *packaging_cmds.rendition_package_args(out_dir=packed, file_name=file_name, segment_seconds=segment_s),
            *(["-map", "0:v:0", "-c", "copy", "-map_metadata", "-1", "-f", "mp4", str(plain)] if pictures else []),
        ])  # fmt: skip
        mark("join")
        # Checked is what is stored: the fragmented file's own boxes, read here.
        facts = _fragment_facts(packed / file_name)
        mark("probe")
        frames, duration = facts.samples, facts.duration_s
        expected = planned_frames / fps
        if frames != planned_frames:
            # Every unit was checked for its frame count when it was made, so a short join
            # means a unit could not be read back (ffmpeg's concat demuxer logs "Impossible to
            # open" for an S3 5xx or reset and carries on, exiting 0): retry, do not fail.
            raise ffmpeg.TransientMediaError(
                f"joined {rendition.name} has {frames} frames, planned {planned_frames}: a unit could not be "
                "read back from storage"
            )
        if abs(duration - float(expected)) > float(1 / fps) + 1e-6:
            raise ffmpeg.PermanentMediaError(
                f"joined {rendition.name} lasts {duration} s, planned {float(expected):.3f} s (more than one frame off)"
            )
        # The stream's own rate (what maxrate bounds), not the file's: MP4 overhead is a large
        # share of a short, low-rate rung.
        video_kbps = facts.bitrate_kbps
        layout = _layout(packed, file_name)
        _check_layout_segments(layout, segment_s, name=rendition.name)
        mark("layout")
        if pictures:
            _pictures_from_assembled(job, rendition, pictures, plain, Path(tmp))
        mark("pictures")
        size = _upload(packed / file_name, key, metadata={"frames": frames})
        _upload_layout(key, layout)
        mark("upload")
    services.artifact_record(
        job_id=job.pk, kind=Artifact.Kind.RENDITION, key=key, size=size, step=f"assemble:{rendition.name}",
        inputs={"units": [u.output_key for u in units], "ffmpeg": ffmpeg.ffmpeg_version()},
        parent_keys=[u.output_key for u in units],
    )
    services.rendition_ready(
        rendition_id=rendition_id, output_key=key,
        stats={"frame_count": frames, "duration_s": duration, "bitrate_kbps": video_kbps},
    )
    mark("ready")
    logger.info("assembled %s: elapsed at each phase's end %s", rendition.name, {k: round(v * 1000) for k, v in marks.items()})


def _fragment_facts(path: Path) -> manifests.FragmentFacts:
    try:
        return manifests.fragment_facts(path)
    except (manifests.LayoutError, OSError) as exc:
        raise ffmpeg.PermanentMediaError(f"reading {path.name} back: {exc}") from exc


def _layout(packed: Path, file_name: str) -> dict:
    try:
        return manifests.rendition_layout(out_dir=packed, file_name=file_name)
    except (manifests.LayoutError, OSError) as exc:
        raise ffmpeg.PermanentMediaError(f"packaging {file_name}: {exc}") from exc


def layout_key(rendition_key: str) -> str:
    """Beside each stored rendition: what its package needs of it (pipeline.manifests)."""
    return rendition_key.removesuffix(".mp4") + ".layout.json"


def _upload_layout(rendition_key: str, layout: dict) -> None:
    s3.client().put_object(
        Bucket=settings.S3_BUCKET_MEDIA, Key=layout_key(rendition_key), Body=json.dumps(layout).encode(),
        ContentType="application/json",
    )


def _rendition_layout(rendition: Rendition, segment_s: float) -> dict:
    """The stored layout of a rendition. One stored without (assembled before renditions were
    kept as single fragmented files, or its layout upload lost) is written in that form now,
    from the stored rendition, beside it: the rendition itself is never rewritten."""
    try:
        body = s3.client().get_object(Bucket=settings.S3_BUCKET_MEDIA, Key=layout_key(rendition.output_key))["Body"]
        return json.loads(body.read())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    file_name = f"{rendition.name}.mp4"
    single_key = rendition.output_key.removesuffix(".mp4") + ".single.mp4"
    stream = "0:v:0" if rendition.kind == RenditionKind.VIDEO else "0:a:0"
    with tempfile.TemporaryDirectory(prefix="reelflow-pkg-", dir=_work_dir()) as tmp:
        packed = Path(tmp)
        ffmpeg.run_ffmpeg(["-i", _media_url(rendition.output_key), *packaging_cmds.rendition_package_args(
            out_dir=packed, file_name=file_name, segment_seconds=segment_s, stream=stream)])  # fmt: skip
        layout = {**_layout(packed, file_name), "source_key": single_key}
        _upload(packed / file_name, single_key)
        _upload_layout(rendition.output_key, layout)
    return layout


# --- Package --------------------------------------------------------------------------------


def _check_segments(out_dir: Path, segment_s: float) -> None:
    """No HLS segment longer than its playlist's target duration, nor than 1.5 segments (the
    merged tail is the only one allowed past one segment; audio segments end on whole audio
    frames, so they run a few ms past the video's)."""
    import m3u8

    master = m3u8.load(str(out_dir / packaging_cmds.MASTER_NAME))
    uris = [p.uri for p in master.playlists] + [m.uri for m in master.media if m.uri]
    for uri in uris:
        playlist = m3u8.load(str(out_dir / uri))
        for segment in playlist.segments:
            # RFC 8216 4.3.3.1: each EXTINF, rounded to the nearest integer, <= the target.
            if round(segment.duration) > playlist.target_duration or segment.duration > segment_s * 1.5 + 0.05:
                raise ffmpeg.PermanentMediaError(
                    f"{uri}: a {segment.duration:.3f} s segment exceeds the {playlist.target_duration} s target"
                )


def _check_layout_segments(layout: dict, segment_s: float, *, name: str) -> None:
    """At assemble: no segment of a rendition longer than 1.5 segments (see _check_segments)."""
    for duration, _, _ in layout["segments"]:
        if duration > segment_s * 1.5 + 0.05:
            raise ffmpeg.PermanentMediaError(f"{name}: a {duration:.3f} s segment exceeds 1.5 segments of {segment_s:.3f} s")


def _check_av_sync(video_durations: list[float], audio_durations: list[float]) -> None:
    # One AAC frame (1024 samples at 48 kHz); Opus frames are shorter.
    tolerance = 1024 / 48000 + 1e-3
    for audio in audio_durations:
        for video in video_durations:
            if abs(audio - video) > tolerance:
                raise ffmpeg.PermanentMediaError(
                    f"audio lasts {audio:.3f} s but video {video:.3f} s: they drift apart"
                )


def _package_prefix(job: EncodeJob) -> str:
    return f"{job.output_prefix}/package"


def _picture_sources(job: EncodeJob) -> dict[str, Rendition]:
    """Which rendition each picture is cut from: the poster from the tallest video rung (at
    most 720 lines of it), the thumbnail sprite from the second smallest (cheap to decode, its
    keyframes at most). Not the smallest: longest work first queues its units last, so its
    assemble is the job's tail, and a sprite there would lengthen it."""
    videos = list(Rendition.objects.filter(job=job, kind=RenditionKind.VIDEO).order_by("-height", "pk"))
    return {"poster.jpg": videos[0], "sprite.jpg": videos[-2 if len(videos) > 1 else -1]} if videos else {}


def _picture_commands(job: EncodeJob, sources: dict[str, tuple[str, Rendition]], out: Path) -> list[list[str]]:
    """ffmpeg runs writing the named pictures into ``out``, each from (input, rendition)."""
    asset = job.asset
    video_info = video_info_from_json(asset.probe["video"])
    segment_s = chunking.segment_duration_s(fps=planned_fps(video_info), segment_seconds=job.segment_seconds)
    commands = []
    for name, (input_url, rendition) in sources.items():
        if name == "poster.jpg":
            commands.append(packaging_cmds.poster_command(
                input_url=input_url, output_path=out / name, duration_s=asset.duration_s, source=video_info,
                height=min(720, rendition.height),
            ))  # fmt: skip
        else:
            layout = packaging_cmds.sprite_layout(duration_s=asset.duration_s, source=video_info)
            commands.append(packaging_cmds.sprite_command(
                input_url=input_url, output_path=out / name, layout=layout,
                keyframes_only=layout.interval_s >= segment_s,
            ))  # fmt: skip
    return commands


def _run_at_once(commands: list[list[str]]) -> None:
    with ThreadPoolExecutor(max_workers=max(1, len(commands))) as pool:
        for done in [pool.submit(ffmpeg.run_ffmpeg, command) for command in commands]:
            done.result()


def _pictures_check(out: Path, names) -> None:
    for name in names:
        # ffmpeg exits 0 when a filter emits no frame; never publish a package naming a
        # picture that is not there.
        if not (out / name).is_file():
            raise ffmpeg.PermanentMediaError(f"packaging wrote no {name} (ffmpeg produced no frame for it)")


def _pictures_from_assembled(job: EncodeJob, rendition: Rendition, names: list[str], joined: Path, workdir: Path) -> None:
    """Cut the named pictures from this rendition's joined file, still on disk, into the
    package: while other units still encode, not in the job's tail."""
    out = workdir / "pictures"
    out.mkdir()
    _run_at_once(_picture_commands(job, {name: (str(joined), rendition) for name in names}, out))
    _pictures_check(out, names)
    for name in names:
        _upload(out / name, f"{_package_prefix(job)}/{name}")


def _stored(key: str) -> bool:
    try:
        s3.client().head_object(Bucket=settings.S3_BUCKET_MEDIA, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


@_alive_while_running(lambda kwargs: f"package-{kwargs['job_id']}")
@_fail_on_permanent
def job_package_run(*, job_id: int) -> None:
    job = EncodeJob.objects.select_related("asset").get(pk=job_id)
    if job.state != JobState.PACKAGING:
        return
    started = time.monotonic()
    asset = job.asset
    video_info = video_info_from_json(asset.probe["video"])
    fps = planned_fps(video_info)
    renditions = list(Rendition.objects.filter(job=job, state=RenditionState.READY))
    videos = sorted((r for r in renditions if r.kind == RenditionKind.VIDEO), key=lambda r: -(r.height or 0))
    audios = [r for r in renditions if r.kind == RenditionKind.AUDIO]
    _check_av_sync([r.duration_s for r in videos if r.duration_s], [r.duration_s for r in audios if r.duration_s])
    segment_s = chunking.segment_duration_s(fps=fps, segment_seconds=job.segment_seconds)
    # Rules already passed: straight to the published prefix, no copy after; else the job's own.
    published = services.job_rules_decide_early(job_id=job.pk)
    staging = _package_prefix(job)
    prefix = published or staging
    pictures = _picture_sources(job)
    client = s3.client()
    bucket = settings.S3_BUCKET_MEDIA
    with ThreadPoolExecutor(max_workers=PACKAGE_TRANSFERS) as pool:
        layouts = list(pool.map(lambda r: (r.name, _rendition_layout(r, segment_s)), [*videos, *audios]))
    with tempfile.TemporaryDirectory(prefix="reelflow-pkg-", dir=_work_dir()) as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        # The assemble steps cut the pictures; one missing (a restart that kept the renditions,
        # a failed upload) is cut here, from the rendition in storage.
        missing = {
            name: (_media_url(source.output_key), source) for name, source in pictures.items()
            if not _stored(f"{staging}/{name}")
        }  # fmt: skip
        if missing:
            _run_at_once(_picture_commands(job, missing, out))
        made = time.monotonic()
        try:
            manifests.write_package(
                out_dir=out, renditions=layouts, duration_s=float(sum(job.chunks.values_list("frame_count", flat=True)) / fps),
                segment_s=segment_s, frame_rate=fps,
            )
        except manifests.LayoutError as exc:
            raise ffmpeg.PermanentMediaError(f"packaging: {exc}") from exc
        _check_segments(out, segment_s)
        layout = packaging_cmds.sprite_layout(duration_s=asset.duration_s, source=video_info)
        (out / "sprite.vtt").write_text(packaging_cmds.sprite_vtt(layout=layout, duration_s=asset.duration_s))
        _pictures_check(out, missing)
        files = sorted(p for p in out.rglob("*") if p.is_file())
        entry_points = {packaging_cmds.MASTER_NAME, packaging_cmds.MANIFEST_NAME}
        media = {
            layout_.get("source_key", r.output_key): f"{prefix}/{layout_['file']}"
            for r, (_, layout_) in zip([*videos, *audios], layouts, strict=True)
        }

        def upload(path: Path) -> int:
            return _upload(path, f"{prefix}/{path.relative_to(out).as_posix()}")

        def copy(source_target: tuple[str, str]) -> None:
            client.copy_object(Bucket=bucket, Key=source_target[1], CopySource={"Bucket": bucket, "Key": source_target[0]})

        copies = list(media.items())
        if prefix != staging:
            copies += [(f"{staging}/{name}", f"{prefix}/{name}") for name in pictures if name not in missing]
        with ThreadPoolExecutor(max_workers=PACKAGE_TRANSFERS) as pool:
            # Each rendition's single file, by server-side copy (no byte of media passes here),
            # alongside the small files.
            copied = [pool.submit(copy, pair) for pair in copies]
            uploaded = [pool.submit(upload, p) for p in files if p.name not in entry_points]
            for done in copied:
                done.result()
            sizes = [done.result() for done in uploaded]
            # The playlists that name every other file go last: a package is never reachable
            # before all of it is stored.
            sizes += list(pool.map(upload, [p for p in files if p.name in entry_points]))
        sizes += [name_layout[1]["size"] for name_layout in layouts]
        logger.info(
            "job %s packaged: ffmpeg %.0f ms, upload of %s files and copies of %s media files (%s) %.0f ms", job.pk,
            (made - started) * 1000, len(files), len(media), _mib(sum(sizes)), (time.monotonic() - made) * 1000,
        )
    parent_keys = [r.output_key for r in renditions]
    services.artifact_record(
        job_id=job.pk, kind=Artifact.Kind.PUBLISHED if published else Artifact.Kind.PACKAGE,
        key=f"{prefix}/{packaging_cmds.MASTER_NAME}", size=sum(sizes), step="package",
        inputs={"renditions": parent_keys, "files": len(files) + len(media), "ffmpeg": ffmpeg.ffmpeg_version(),
                "written": "to the published prefix (the rules passed first)" if published else "to the job's prefix"},
        parent_keys=parent_keys,
    )
    services.artifact_record(
        job_id=job.pk, kind=Artifact.Kind.POSTER, key=f"{prefix}/poster.jpg", size=None, step="package",
        inputs={"rendition": pictures["poster.jpg"].output_key}, parent_keys=[pictures["poster.jpg"].output_key],
    )
    services.artifact_record(
        job_id=job.pk, kind=Artifact.Kind.SPRITE, key=f"{prefix}/sprite.jpg", size=None, step="package",
        inputs={"rendition": pictures["sprite.jpg"].output_key, "interval_s": layout.interval_s},
        parent_keys=[pictures["sprite.jpg"].output_key],
    )
    job = services.job_packaged(
        job_id=job.pk,
        master_key=f"{prefix}/{packaging_cmds.MASTER_NAME}",
        dash_key=f"{prefix}/{packaging_cmds.MANIFEST_NAME}",
        poster_key=f"{prefix}/poster.jpg",
        in_place=bool(published),
    )
    if published and job.state != JobState.PUBLISHED:
        # Cancelled or failed while the package was written: nothing of it stays published.
        logger.warning("job %s ended %s while packaging: its package leaves %s/", job.pk, job.state, published)
        _delete_prefix(published)
    # This machine's copy (other machines' expire), once the job has moved on: freeing
    # gigabytes of memory pages is no step of the job's own.
    decoded_cache.drop_job(job.pk)


# --- Publish --------------------------------------------------------------------------------


def _keys_under(prefix: str) -> list[str]:
    client = s3.client()
    return [
        obj["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.S3_BUCKET_MEDIA, Prefix=f"{prefix}/")
        for obj in page.get("Contents", [])
    ]


def _delete_prefix(prefix: str) -> None:
    keys = _keys_under(prefix)
    for start in range(0, len(keys), 1000):
        s3.client().delete_objects(
            Bucket=settings.S3_BUCKET_MEDIA, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]}
        )


@_fail_on_permanent
def job_promote_run(*, job_id: int) -> None:
    """Copy the package to the published prefix (server-side copies), then mark the job
    PUBLISHED. Idempotent: a re-run copies again and finds the job already published."""
    job = EncodeJob.objects.select_related("asset").get(pk=job_id)
    if job.state != JobState.PUBLISHING:
        return
    source = job.master_playlist_key.rsplit("/", 1)[0]
    target = services.published_prefix(job)
    client = s3.client()
    bucket = settings.S3_BUCKET_MEDIA
    keys = _keys_under(source)
    if not keys:
        raise ffmpeg.PermanentMediaError(f"the package under {source}/ is missing; restart the job to rebuild it")

    def copy(key: str) -> None:
        client.copy_object(Bucket=bucket, Key=f"{target}/{key[len(source) + 1:]}", CopySource={"Bucket": bucket, "Key": key})

    entry_points = {f"{source}/{packaging_cmds.MASTER_NAME}", f"{source}/{packaging_cmds.MANIFEST_NAME}"}
    with ThreadPoolExecutor(max_workers=PACKAGE_TRANSFERS) as pool:
        list(pool.map(copy, [k for k in keys if k not in entry_points]))
        list(pool.map(copy, [k for k in keys if k in entry_points]))  # last, as when packaging
    master = f"{target}/{job.master_playlist_key[len(source) + 1:]}"
    services.artifact_record(
        job_id=job.pk, kind=Artifact.Kind.PUBLISHED, key=master, size=None, step="publish",
        inputs={"package": job.master_playlist_key, "files": len(keys)}, parent_keys=[job.master_playlist_key],
    )
    services.job_publish(
        job_id=job.pk,
        master_key=master,
        dash_key=f"{target}/{job.dash_manifest_key[len(source) + 1:]}" if job.dash_manifest_key else "",
        poster_key=f"{target}/poster.jpg",
        published_prefix=target,
    )

