"""The package step: every READY rendition's stored file addressed by byte range from HLS
playlists and a DASH manifest (``pipeline.manifests``), with the pictures and the sprite's
WebVTT. When the publish rules can already be decided and pass, the package is written to the
published prefix directly; otherwise to the job's own, and the rules decide after.
"""

import json
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import m3u8
from botocore.exceptions import ClientError
from django.conf import settings

from core import s3
from pipeline import chunking, decoded_cache, ffmpeg, manifests, packaging_cmds
from pipeline.media import planned_fps, video_info_from_json
from pipeline.models import Artifact, EncodeJob, JobState, Rendition, RenditionKind, RenditionState
from pipeline.services.common import artifact_record
from pipeline.services.packaging import job_packaged
from pipeline.services.publishing import job_rules_decide_early
from pipeline.steps.assembly import layout_of, layout_upload
from pipeline.steps.common import (
    PACKAGE_TRANSFERS,
    alive_while_running,
    delete_prefix,
    failures_classified,
    layout_key,
    media_url,
    mib,
    stored,
    upload,
    work_dir,
)
from pipeline.steps.pictures import (
    package_prefix,
    picture_commands,
    picture_sources,
    pictures_check,
    run_at_once,
)

logger = logging.getLogger(__name__)
ENTRY_POINTS = {packaging_cmds.MASTER_NAME, packaging_cmds.MANIFEST_NAME}


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
    with tempfile.TemporaryDirectory(prefix="reelflow-pkg-", dir=work_dir()) as tmp:
        packed = Path(tmp)
        ffmpeg.run_ffmpeg(["-i", media_url(rendition.output_key), *packaging_cmds.rendition_package_args(
            out_dir=packed, file_name=file_name, segment_seconds=segment_s, stream=stream)])  # fmt: skip
        layout = {**layout_of(packed, file_name), "source_key": single_key}
        upload(packed / file_name, single_key)
        layout_upload(rendition.output_key, layout)
    return layout


def _segments_check(out_dir: Path, segment_s: float) -> None:
    """No HLS segment longer than its playlist's target duration, nor than 1.5 segments (the
    merged tail is the only one allowed past one segment; audio segments end on whole audio
    frames, so they run a few ms past the video's)."""
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


def _av_sync_check(video_durations: list[float], audio_durations: list[float]) -> None:
    # One AAC frame (1024 samples at 48 kHz); Opus frames are shorter.
    tolerance = 1024 / 48000 + 1e-3
    for audio in audio_durations:
        for video in video_durations:
            if abs(audio - video) > tolerance:
                raise ffmpeg.PermanentMediaError(
                    f"audio lasts {audio:.3f} s but video {video:.3f} s: they drift apart"
                )


def _write_package(job: EncodeJob, out: Path, layouts: list, *, segment_s: float, fps) -> tuple[set[str], object]:
    """Write the playlists, the manifest and the sprite's WebVTT into ``out``, with any picture
    the assemble steps did not leave in storage; returns the pictures cut here and the sprite
    layout."""
    asset = job.asset
    video_info = video_info_from_json(asset.probe["video"])
    staging = package_prefix(job)
    # The assemble steps cut the pictures; one missing (a restart that kept the renditions,
    # a failed upload) is cut here, from the rendition in storage.
    missing = {
        name: (media_url(source.output_key), source) for name, source in picture_sources(job).items()
        if not stored(f"{staging}/{name}")
    }  # fmt: skip
    if missing:
        run_at_once(picture_commands(job, missing, out))
    try:
        manifests.write_package(
            out_dir=out, renditions=layouts, duration_s=float(sum(job.chunks.values_list("frame_count", flat=True)) / fps),
            segment_s=segment_s, frame_rate=fps,
        )
    except manifests.LayoutError as exc:
        raise ffmpeg.PermanentMediaError(f"packaging: {exc}") from exc
    _segments_check(out, segment_s)
    sprite = packaging_cmds.sprite_layout(duration_s=asset.duration_s, source=video_info)
    (out / "sprite.vtt").write_text(packaging_cmds.sprite_vtt(layout=sprite, duration_s=asset.duration_s))
    pictures_check(out, missing)
    return set(missing), sprite


def _store_package(out: Path, *, prefix: str, copies: list[tuple[str, str]]) -> tuple[int, list[int]]:
    """Upload ``out`` under ``prefix`` and make the server-side ``copies`` (source, target);
    returns the files uploaded and their sizes."""
    client, bucket = s3.client(), settings.S3_BUCKET_MEDIA
    files = sorted(p for p in out.rglob("*") if p.is_file())

    def put(path: Path) -> int:
        return upload(path, f"{prefix}/{path.relative_to(out).as_posix()}")

    def copy(source_target: tuple[str, str]) -> None:
        client.copy_object(Bucket=bucket, Key=source_target[1], CopySource={"Bucket": bucket, "Key": source_target[0]})

    with ThreadPoolExecutor(max_workers=PACKAGE_TRANSFERS) as pool:
        # Each rendition's single file, by server-side copy (no byte of media passes here),
        # alongside the small files.
        copied = [pool.submit(copy, pair) for pair in copies]
        uploaded = [pool.submit(put, p) for p in files if p.name not in ENTRY_POINTS]
        for done in copied:
            done.result()
        sizes = [done.result() for done in uploaded]
        # The playlists that name every other file go last: a package is never reachable
        # before all of it is stored.
        sizes += list(pool.map(put, [p for p in files if p.name in ENTRY_POINTS]))
    return len(files), sizes


def _lineage(job: EncodeJob, renditions: list[Rendition], pictures: dict, *, prefix: str, published: bool,
             files: int, size: int, sprite_interval_s: float) -> None:
    parent_keys = [r.output_key for r in renditions]
    artifact_record(
        job_id=job.pk, kind=Artifact.Kind.PUBLISHED if published else Artifact.Kind.PACKAGE,
        key=f"{prefix}/{packaging_cmds.MASTER_NAME}", size=size, step="package",
        inputs={"renditions": parent_keys, "files": files, "ffmpeg": ffmpeg.ffmpeg_version(),
                "written": "to the published prefix (the rules passed first)" if published else "to the job's prefix"},
        parent_keys=parent_keys,
    )
    for kind, name, extra in ((Artifact.Kind.POSTER, "poster.jpg", {}),
                              (Artifact.Kind.SPRITE, "sprite.jpg", {"interval_s": sprite_interval_s})):
        source_key = pictures[name].output_key
        artifact_record(
            job_id=job.pk, kind=kind, key=f"{prefix}/{name}", size=None, step="package",
            inputs={"rendition": source_key, **extra}, parent_keys=[source_key],
        )


@alive_while_running(lambda kwargs: f"package-{kwargs['job_id']}")
@failures_classified
def job_package_run(*, job_id: int) -> None:
    job = EncodeJob.objects.select_related("asset").get(pk=job_id)
    if job.state != JobState.PACKAGING:
        return
    started = time.monotonic()
    fps = planned_fps(video_info_from_json(job.asset.probe["video"]))
    renditions = list(Rendition.objects.filter(job=job, state=RenditionState.READY))
    videos = sorted((r for r in renditions if r.kind == RenditionKind.VIDEO), key=lambda r: -(r.height or 0))
    audios = [r for r in renditions if r.kind == RenditionKind.AUDIO]
    _av_sync_check([r.duration_s for r in videos if r.duration_s], [r.duration_s for r in audios if r.duration_s])
    segment_s = chunking.segment_duration_s(fps=fps, segment_seconds=job.segment_seconds)
    # Rules already passed: straight to the published prefix, no copy after; else the job's own.
    published = job_rules_decide_early(job_id=job.pk)
    staging = package_prefix(job)
    prefix = published or staging
    pictures = picture_sources(job)
    with ThreadPoolExecutor(max_workers=PACKAGE_TRANSFERS) as pool:
        layouts = list(pool.map(lambda r: (r.name, _rendition_layout(r, segment_s)), [*videos, *audios]))
    with tempfile.TemporaryDirectory(prefix="reelflow-pkg-", dir=work_dir()) as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        cut_here, sprite = _write_package(job, out, layouts, segment_s=segment_s, fps=fps)
        made = time.monotonic()
        media = {
            layout.get("source_key", r.output_key): f"{prefix}/{layout['file']}"
            for r, (_, layout) in zip([*videos, *audios], layouts, strict=True)
        }
        copies = list(media.items())
        if prefix != staging:
            copies += [(f"{staging}/{name}", f"{prefix}/{name}") for name in pictures if name not in cut_here]
        files, sizes = _store_package(out, prefix=prefix, copies=copies)
        sizes += [name_layout[1]["size"] for name_layout in layouts]
        logger.info(
            "job %s packaged: ffmpeg %.0f ms, upload of %s files and copies of %s media files (%s) %.0f ms", job.pk,
            (made - started) * 1000, files, len(media), mib(sum(sizes)), (time.monotonic() - made) * 1000,
        )
    _lineage(job, renditions, pictures, prefix=prefix, published=bool(published), files=files + len(media),
             size=sum(sizes), sprite_interval_s=sprite.interval_s)
    job = job_packaged(
        job_id=job.pk, master_key=f"{prefix}/{packaging_cmds.MASTER_NAME}",
        dash_key=f"{prefix}/{packaging_cmds.MANIFEST_NAME}", poster_key=f"{prefix}/poster.jpg", in_place=bool(published),
    )
    if published and job.state != JobState.PUBLISHED:
        # Cancelled or failed while the package was written: nothing of it stays published.
        logger.warning("job %s ended %s while packaging: its package leaves %s/", job.pk, job.state, published)
        delete_prefix(published)
    # This machine's copy (other machines' expire), once the job has moved on: freeing
    # gigabytes of memory pages is no step of the job's own.
    decoded_cache.drop_job(job.pk)
