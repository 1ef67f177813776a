"""The probe step: what a source is, and whether Reelflow can make something of it. Size
limits first (an empty or oversized object never reaches ffprobe), then ffprobe through a
presigned URL, the source's limits, and the chunk plan. Every refusal is a
``PermanentMediaError`` whose reason a publisher can act on.

The chunk plan is sized to the encode slots (``chunking.plan_for_fleet``), then each boundary
with room to move goes to a scene change near it (``scenes``, ``chunking.refine_cuts``). Scene
analysis never fails or holds up a job: an error or a timeout keeps the plain plan, with the
reason in the plan's lineage (``EncodeJob.chunk_plan``).
"""

import logging
import tempfile
from fractions import Fraction
from pathlib import Path

from django.conf import settings

from core.s3 import redact_presigned
from pipeline import chunking, ffmpeg, media, scenes, scheduling
from pipeline.ffmpeg import timeline
from pipeline.models import EncodeJob
from pipeline.steps.common import media_url, mib, upload, upload_url, work_dir

logger = logging.getLogger(__name__)


class StoredInfo:
    """A MediaInfo with ``as_dict()`` for ``services.planning.job_plan`` (which stores it on
    the asset and knows no ffmpeg types)."""

    def __init__(self, info: ffmpeg.MediaInfo, *, read_from: str = "") -> None:
        self._info = info
        self._read_from = read_from

    def __getattr__(self, name):
        return getattr(self._info, name)

    def as_dict(self) -> dict:
        stored = media.media_info_json(self._info)
        if self._read_from:
            stored[media.READ_FROM] = self._read_from
        return stored


def _size_check(size: int | None) -> None:
    if size == 0:
        # S3 answers a ranged read of an empty object with 416, which reads as a glitch.
        raise ffmpeg.PermanentMediaError("not a media file: the file is empty (0 bytes); upload it again")
    limit = settings.REELFLOW_MAX_UPLOAD_BYTES
    if size and size > limit:
        # The studio refuses such uploads up front; a file put straight into the bucket
        # (aws s3 cp, the SQS path) is only seen here.
        raise ffmpeg.PermanentMediaError(f"the file is {mib(size)}, over the {mib(limit)} upload limit")


def source_probe(job: EncodeJob) -> tuple[StoredInfo, list[chunking.Chunk], dict]:
    """Probe the job's source and plan its chunks: (probe, chunks, the plan's lineage). Raises
    PermanentMediaError for a source that cannot be encoded, with the reason."""
    _size_check(job.asset.source_size)
    url = upload_url(job.asset)  # never an earlier attempt's rebased copy
    info = ffmpeg.probe(url)
    _validate(info)
    info, read_from, timeline_note = decoded_source(job, info, url)
    url = media_url(read_from) if read_from else url
    fps = media.planned_fps(info.video)
    duration = media.plan_duration(info, fps)
    slots, slots_from = encode_slots()
    window = max(0, settings.REELFLOW_SCENE_WINDOW_SEGMENTS)
    try:
        plan = chunking.plan_for_fleet(
            duration_s=duration, fps=fps, segment_seconds=job.segment_seconds, max_chunk_seconds=job.chunk_seconds,
            min_segments=settings.REELFLOW_MIN_CHUNK_SEGMENTS, slots=slots,
            chunks_per_slot=settings.REELFLOW_CHUNKS_PER_SLOT, scene_window=window,
        )  # fmt: skip
    except ValueError as exc:
        raise ffmpeg.PermanentMediaError(f"cannot plan this source: {exc}") from exc
    boundaries, scene = _scene_boundaries(url, job, info.video, plan, window=window)
    cuts = tuple(b.chosen for b in boundaries)
    lineage = {
        "summary": chunking.plan_summary(plan, cuts),
        "rule": plan.rule,
        "inputs": {
            "duration_s": round(duration, 6),
            "fps": _rate(fps),
            "frames": plan.total_frames,
            "segment_frames": plan.segment_frames,
            "segment_s": round(float(plan.segment_frames / fps), 6),
            "segments": plan.segments,
            "slots": plan.slots,
            "slots_from": slots_from,
            "chunks_per_slot": plan.chunks_per_slot,
            "min_segments": plan.min_segments,
            "max_segments": plan.max_segments,
            "max_chunk_s": job.chunk_seconds,
        },
        "planned_cuts": list(plan.cuts),
        "cuts": list(cuts),
        "scene": scene,
        "timeline": timeline_note,
        "boundaries": [
            {
                "planned_s": round(plan.seconds_at(b.planned), 6),
                "at_s": round(plan.seconds_at(b.chosen), 6),
                "moved_segments": b.chosen - b.planned,
                "score": None if b.change is None else round(b.change.score, 4),
                "scene_at_s": None if b.change is None else round(float(b.change.frame / fps), 6),
                "note": b.note,
            }
            for b in boundaries
        ],
    }
    return StoredInfo(info, read_from=read_from), plan.chunks(cuts), lineage


def _validate(info: ffmpeg.MediaInfo) -> None:
    ffmpeg.validate_source(
        info, max_duration_s=settings.REELFLOW_MAX_DURATION_SECONDS, max_pixels=settings.REELFLOW_MAX_PIXELS
    )


def decoded_source(job: EncodeJob, info: ffmpeg.MediaInfo, url: str) -> tuple[ffmpeg.MediaInfo, str, dict]:
    """Plan from what decodes, not from what the header declares: (the probe to plan from, the
    media-bucket key of a rebased copy to read instead of the source or "", what was found).

    A source none of whose frames decodes is refused here, at once. A container without a
    full index (TS, Matroska, WebM) or a variable-rate source has its packets counted; if its
    clock jumps back (recordings joined end to end) the job reads a copy with continuous
    timestamps, which the units can seek in."""
    video = info.video
    if not timeline.first_frame_decodes(url, stream_index=video.index):
        raise ffmpeg.PermanentMediaError(ffmpeg.UNDECODABLE_REASON)
    if info.container.startswith("mov,") and not video.vfr:
        return info, "", {"scanned": False, "reason": "the MP4/MOV index lists every frame"}
    found = timeline.scan(url, stream_index=video.index)
    note = {
        "scanned": True, "packets": found.packets, "declared_s": video.duration_s or info.duration,
        "decoded_s": round(found.duration_s, 6), "resets": found.resets,
    }  # fmt: skip
    if not found.resets:
        return timeline.with_timeline(info, found), "", note
    key = f"{job.output_prefix}/source/rebased.mkv"
    with tempfile.TemporaryDirectory(prefix="reelflow-rebase-", dir=work_dir()) as tmp:
        copy = Path(tmp) / "rebased.mkv"
        timeline.rebase_copy(url, copy, stream_index=video.index)
        rebased = ffmpeg.probe(copy)
        _validate(rebased)
        rebased = timeline.with_timeline(rebased, timeline.scan(copy, stream_index=rebased.video.index))
        upload(copy, key)
    note.update(
        read_from=key, decoded_s=rebased.video.duration_s,
        text=(f"the timestamps jump back {found.resets} time(s) (recordings joined end to end): planned and "
              f"encoded from a copy with continuous timestamps, {rebased.video.frame_count} frames"),
    )  # fmt: skip
    logger.info("job %s: %s", job.pk, note["text"])
    return rebased, key, note


def encode_slots() -> tuple[int, str]:
    """How many units can encode at once, and where that figure came from."""
    if settings.REELFLOW_ENCODE_SLOTS > 0:
        return settings.REELFLOW_ENCODE_SLOTS, "REELFLOW_ENCODE_SLOTS"
    workers = scheduling.encode_workers()
    if workers:
        return workers, "encode workers registered"
    return 1, "no encode worker registered: planned for one"


def _rate(fps: Fraction) -> str:
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


def _scene_boundaries(
    url: str,
    job: EncodeJob, video: ffmpeg.VideoInfo, plan: chunking.ChunkPlan, *, window: int
) -> tuple[list[chunking.Boundary], dict]:
    """The plan's boundaries after scene analysis, and what the analysis did (its lineage)."""
    scene = {
        "status": "skipped", "reason": "", "window_segments": window, "threshold": scenes.SCENE_THRESHOLD,
        "tolerance_frames": scenes.tolerance_frames(plan.fps),
    }  # fmt: skip
    candidates = chunking.scene_candidates(plan, window=window)
    movable = [options for options in candidates if len(options) > 1]
    skipped = (
        "one chunk, no boundary" if not plan.cuts
        else "REELFLOW_SCENE_WINDOW_SEGMENTS is 0" if window <= 0
        else "fixed plan" if plan.rule != "fleet"
        else "no boundary has room to move (the chunks are at their bounds)" if not movable
        else ""
    )  # fmt: skip
    if skipped:
        scene["reason"] = skipped
        scene["text"] = f"skipped: {skipped}"
        return chunking.kept_boundaries(plan, reason=f"plain plan ({skipped})"), scene
    seg = plan.segment_frames
    try:
        scan = scenes.scan_boundaries(
            input_url=url, source=video, fps=plan.fps,
            groups=[[k * seg for k in options] for options in movable], total_frames=plan.total_frames,
            timeout_s=settings.REELFLOW_SCENE_TIMEOUT_S,
        )  # fmt: skip
    except (ffmpeg.MediaError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, ffmpeg.MediaError) else f"{type(exc).__name__}: {exc}"
        logger.warning("job %s: scene analysis failed, plain plan kept: %s", job.pk, reason)
        scene.update(status="failed", reason=reason, text=f"failed, plain plan kept: {reason}")
        return chunking.kept_boundaries(plan, reason="plain plan (scene analysis failed)"), scene
    changes = {frame // seg: change for frame, change in scan.changes.items()}
    boundaries = chunking.refine_cuts(
        plan, candidates=candidates, changes=changes, threshold=scenes.SCENE_THRESHOLD, window=window
    )
    moved = sum(1 for b in boundaries if b.chosen != b.planned)
    scene.update(
        status="analysed", boundaries_scanned=len(scan.changes), cpu_s=round(scan.cpu_s, 3),
        wall_s=round(scan.wall_s, 3), command=redact_presigned(scan.command),
        text=(f"{len(scan.changes)} boundaries scanned around {len(movable)} cuts in {scan.wall_s:.1f} s "
              f"({scan.cpu_s:.1f} CPU-s); {moved} moved"),
    )  # fmt: skip
    return boundaries, scene
