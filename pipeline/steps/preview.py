"""The preview: HLS over the renditions ready so far, written while the rest of the job still
encodes, so that a publisher watches the first rung minutes before the job is packaged and its
publish rules decide. It is written by the assemble step of each rendition once a video rung
and, when the ladder has audio, an audio rendition are ready.

Each preview is a new folder, ``<job>/preview/<n>/`` (n: the renditions in it), whose media
playlists address the stored renditions by byte range (``../../renditions/...``): no media
byte is copied, and a player holding an older preview keeps a consistent one. The public
publish still follows the rules; the preview is only shown to those who may see the asset.
"""

import json
import logging
import posixpath
import tempfile
from pathlib import Path

from botocore.exceptions import ClientError
from django.conf import settings

from core import s3
from pipeline import chunking, manifests, packaging_cmds
from pipeline.media import planned_fps, video_info_from_json
from pipeline.models import EncodeJob, JobState, Rendition, RenditionKind, RenditionState
from pipeline.steps.common import layout_key, upload, work_dir

logger = logging.getLogger(__name__)


def _stored_layout(rendition_key: str) -> dict | None:
    try:
        body = s3.client().get_object(Bucket=settings.S3_BUCKET_MEDIA, Key=layout_key(rendition_key))["Body"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return json.loads(body.read())


def _members(job: EncodeJob, rendition: Rendition, *, key: str, layout: dict) -> list[tuple[Rendition, str, dict]]:
    """(rendition, stored key, layout) of every rendition the preview can show: the one just
    assembled and the READY ones whose layout is stored."""
    members = [(rendition, key, layout)]
    for other in Rendition.objects.filter(job=job, state=RenditionState.READY).exclude(pk=rendition.pk):
        stored = _stored_layout(other.output_key)
        if stored is not None:
            members.append((other, stored.get("source_key", other.output_key), stored))
    return members


def preview_write(job: EncodeJob, rendition: Rendition, *, key: str, layout: dict) -> str:
    """Write a preview over ``rendition`` (just assembled, stored at ``key``) and the job's
    READY renditions; returns its master playlist's key, or "" when there is nothing to watch
    yet (no video ready, or audio planned and none ready) or nothing a preview would add (this
    is the job's last rendition: the package follows at once)."""
    if job.state != JobState.ENCODING:
        return ""
    planned = dict(Rendition.objects.filter(job=job).values_list("pk", "kind"))
    members = _members(job, rendition, key=key, layout=layout)
    kinds = {member.kind for member, _, _ in members}
    if RenditionKind.VIDEO not in kinds or (RenditionKind.AUDIO in planned.values() and RenditionKind.AUDIO not in kinds):
        return ""
    if len(members) >= len(planned):
        return ""
    folder = f"{job.output_prefix}/preview/{len(members)}"
    fps = planned_fps(video_info_from_json(job.asset.probe["video"]))
    segment_s = chunking.segment_duration_s(fps=fps, segment_seconds=job.segment_seconds)
    with tempfile.TemporaryDirectory(prefix="reelflow-preview-", dir=work_dir()) as tmp:
        out = Path(tmp)
        manifests.write_package(
            out_dir=out, renditions=[(member.name, lay) for member, _, lay in members],
            duration_s=float(sum(job.chunks.values_list("frame_count", flat=True)) / fps), segment_s=segment_s,
            frame_rate=fps,
        )  # fmt: skip
        for member, stored_key, lay in members:
            # The stored rendition itself, by byte range, from inside the preview's folder.
            uri = posixpath.relpath(stored_key, folder)
            (out / f"{member.name}.m3u8").write_text(manifests.media_playlist(lay, uri=uri), encoding="utf-8")
            upload(out / f"{member.name}.m3u8", f"{folder}/{member.name}.m3u8")
        # The master last: a preview is never reachable before its playlists are stored.
        upload(out / packaging_cmds.MASTER_NAME, f"{folder}/{packaging_cmds.MASTER_NAME}")
    logger.info("job %s: preview over %s", job.pk, ", ".join(member.name for member, _, _ in members))
    return f"{folder}/{packaging_cmds.MASTER_NAME}"
