"""The assemble step: a rendition's units joined, in one read, into the single fragmented MP4
that is stored and packaged by byte range (``pipeline.manifests``), checked from its own boxes
(frame count, duration, segment lengths), stored with its layout beside it, and the rendition
made READY. When pictures are cut from this rendition, they are cut here, while other units
still encode.
"""

import json
import logging
import tempfile
import time
from pathlib import Path

from botocore.exceptions import ClientError
from django.conf import settings

from core import s3
from pipeline import chunking, ffmpeg, manifests, packaging_cmds
from pipeline.media import planned_fps, video_info_from_json
from pipeline.models import (
    Artifact,
    EncodeJob,
    JobState,
    Rendition,
    RenditionKind,
    RenditionState,
    Unit,
    UnitState,
)
from pipeline.services.common import artifact_record
from pipeline.services.packaging import rendition_ready
from pipeline.services.planning import params_digest
from pipeline.steps.common import (
    alive_while_running,
    failures_classified,
    layout_key,
    media_url,
    upload,
    work_dir,
)
from pipeline.steps.pictures import picture_sources, pictures_from_assembled
from pipeline.steps.preview import preview_write

logger = logging.getLogger(__name__)


def fragment_facts(path: Path) -> manifests.FragmentFacts:
    try:
        return manifests.fragment_facts(path)
    except (manifests.LayoutError, OSError) as exc:
        raise ffmpeg.PermanentMediaError(f"reading {path.name} back: {exc}") from exc


def layout_of(packed: Path, file_name: str) -> dict:
    try:
        return manifests.rendition_layout(out_dir=packed, file_name=file_name)
    except (manifests.LayoutError, OSError) as exc:
        raise ffmpeg.PermanentMediaError(f"packaging {file_name}: {exc}") from exc


def layout_upload(rendition_key: str, layout: dict) -> None:
    s3.client().put_object(
        Bucket=settings.S3_BUCKET_MEDIA, Key=layout_key(rendition_key), Body=json.dumps(layout).encode(),
        ContentType="application/json",
    )


def layout_segments_check(layout: dict, segment_s: float, *, name: str) -> None:
    """No segment of a rendition longer than 1.5 segments (the merged tail is the only one
    allowed past one segment)."""
    for duration, _, _ in layout["segments"]:
        # Compared in whole milliseconds: stored times are rounded to the container's timescale.
        if round(duration, 3) > round(segment_s * 1.5, 3) + 0.05:
            raise ffmpeg.PermanentMediaError(f"{name}: a {duration:.3f} s segment exceeds 1.5 segments of {segment_s:.3f} s")


def _record(job: EncodeJob, rendition: Rendition, *, key: str, size: int, units: list[Unit], stats: dict,
            layout: dict) -> None:
    artifact_record(
        job_id=job.pk, kind=Artifact.Kind.RENDITION, key=key, size=size, step=f"assemble:{rendition.name}",
        inputs={"units": [u.output_key for u in units], "ffmpeg": ffmpeg.ffmpeg_version()},
        parent_keys=[u.output_key for u in units],
    )
    try:
        preview = preview_write(job, rendition, key=key, layout=layout)
    except (ClientError, OSError, manifests.LayoutError) as exc:
        # A preview is a convenience: the rendition is ready, and the package follows anyway.
        logger.warning("job %s: no preview with %s: %s", job.pk, rendition.name, exc)
        preview = ""
    rendition_ready(rendition_id=rendition.pk, output_key=key, stats=stats, preview_key=preview)


def _assemble_audio(job: EncodeJob, rendition: Rendition, unit: Unit, *, key: str, segment_s: float) -> None:
    file_name = f"{rendition.name}.mp4"
    with tempfile.TemporaryDirectory(prefix="reelflow-asm-", dir=work_dir()) as tmp:
        packed = Path(tmp)
        ffmpeg.run_ffmpeg(["-i", media_url(unit.output_key), *packaging_cmds.rendition_package_args(
            out_dir=packed, file_name=file_name, segment_seconds=segment_s, stream="0:a:0")])  # fmt: skip
        facts = fragment_facts(packed / file_name)
        layout = layout_of(packed, file_name)
        layout_segments_check(layout, segment_s, name=rendition.name)
        size = upload(packed / file_name, key)
        layout_upload(key, layout)
    stats = {"duration_s": facts.duration_s, "bitrate_kbps": rendition.params.get("bitrate_kbps")}
    _record(job, rendition, key=key, size=size, units=[unit], stats=stats, layout=layout)


def _joined_check(rendition: Rendition, facts: manifests.FragmentFacts, *, planned_frames: int, fps) -> None:
    expected = planned_frames / fps
    if facts.samples != planned_frames:
        # Every unit was checked for its frame count when it was made, so a short join
        # means a unit could not be read back (ffmpeg's concat demuxer logs "Impossible to
        # open" for an S3 5xx or reset and carries on, exiting 0): retry, do not fail.
        raise ffmpeg.TransientMediaError(
            f"joined {rendition.name} has {facts.samples} frames, planned {planned_frames}: a unit could not be "
            "read back from storage"
        )
    if abs(facts.duration_s - float(expected)) > float(1 / fps) + 1e-6:
        raise ffmpeg.PermanentMediaError(
            f"joined {rendition.name} lasts {facts.duration_s} s, planned {float(expected):.3f} s (more than one frame off)"
        )


def _assemble_video(job: EncodeJob, rendition: Rendition, units: list[Unit], *, key: str, segment_s: float, mark) -> None:
    fps = planned_fps(video_info_from_json(job.asset.probe["video"]))
    file_name = f"{rendition.name}.mp4"
    pictures = [name for name, source in picture_sources(job).items() if source.pk == rendition.pk]
    with tempfile.TemporaryDirectory(prefix="reelflow-asm-", dir=work_dir()) as tmp:
        list_file = Path(tmp) / "units.txt"
        ffmpeg.write_concat_list(paths=[media_url(u.output_key) for u in units], list_file=list_file)
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
        facts = fragment_facts(packed / file_name)
        mark("probe")
        _joined_check(rendition, facts, planned_frames=sum(u.chunk.frame_count for u in units), fps=fps)
        layout = layout_of(packed, file_name)
        layout_segments_check(layout, segment_s, name=rendition.name)
        mark("layout")
        if pictures:
            pictures_from_assembled(job, rendition, pictures, plain, Path(tmp))
        mark("pictures")
        size = upload(packed / file_name, key, metadata={"frames": facts.samples})
        layout_upload(key, layout)
        mark("upload")
    # The stream's own rate (what maxrate bounds), not the file's: MP4 overhead is a large
    # share of a short, low-rate rung.
    stats = {"frame_count": facts.samples, "duration_s": facts.duration_s, "bitrate_kbps": facts.bitrate_kbps}
    _record(job, rendition, key=key, size=size, units=units, stats=stats, layout=layout)


@alive_while_running(lambda kwargs: f"assemble-{kwargs['rendition_id']}")
@failures_classified
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
    # Stored once, in the form the package addresses by byte range (pipeline.manifests).
    key = f"{job.output_prefix}/renditions/{rendition.name}-{params_digest(rendition.params)}.mp4"
    if rendition.kind == RenditionKind.AUDIO:
        _assemble_audio(job, rendition, units[0], key=key, segment_s=segment_s)
        return
    _assemble_video(job, rendition, units, key=key, segment_s=segment_s, mark=mark)
    mark("ready")
    logger.info("assembled %s: elapsed at each phase's end %s", rendition.name, {k: round(v * 1000) for k, v in marks.items()})
