"""What a restart must redo: stored outputs that are gone or wrong, and renditions whose rung
changed in the profile since the job was planned.
"""

from botocore.exceptions import ClientError
from django.conf import settings

from core import s3
from pipeline import media
from pipeline.models import EncodeJob, Rendition, RenditionKind, RenditionState, Unit, UnitState
from pipeline.services.planning import rendition_plan, unit_rows


def stored_outputs_check(job_id: int) -> tuple[set[int], set[int]]:
    """(DONE units, READY renditions) of the job whose output is missing from S3 or is not
    what the row says (frame count kept in the object's metadata). Runs before any lock:
    it is a HEAD per output."""
    client, bucket = s3.client(), settings.S3_BUCKET_MEDIA

    def valid(key: str, frames: int | None) -> bool:
        if not key:
            return False
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError:
            return False
        stored = head.get("Metadata", {}).get("frames")
        return frames is None or stored is None or stored == str(frames)

    bad_units = {
        uid for uid, key, frames in Unit.objects.filter(job_id=job_id, state=UnitState.DONE)
        .values_list("pk", "output_key", "chunk__frame_count")
        if not valid(key, frames)
    }
    bad_renditions = {
        rid for rid, key, frames, kind in Rendition.objects.filter(job_id=job_id, state=RenditionState.READY)
        .values_list("pk", "output_key", "frame_count", "kind")
        if not valid(key, frames if kind == RenditionKind.VIDEO else None)
    }
    return bad_units, bad_renditions


def job_replan(job: EncodeJob) -> dict[str, list[str]]:
    """Bring the job's renditions in line with its profile as it is now: a rung whose
    parameters changed is reset (its units get new keys and run again), a new rung is added
    with its units, a removed one is dropped. Unchanged renditions are not touched."""
    probe = job.asset.probe or {}
    if not probe.get("video"):
        return {"changed": [], "added": [], "removed": []}
    info = type("_Probe", (), {"video": media.video_info_from_json(probe["video"]), "audio": probe.get("audio")})()
    rungs, audio = rendition_plan(job, info)
    wanted = {params["name"]: (RenditionKind.VIDEO, params, width, height) for params, width, height in rungs}
    wanted.update({params["name"]: (RenditionKind.AUDIO, params, None, None) for params in audio})
    chunks = list(job.chunks.order_by("index"))
    existing = {r.name: r for r in Rendition.objects.select_for_update().filter(job=job)}
    changes: dict[str, list[str]] = {"changed": [], "added": [], "removed": []}
    for name, rendition in existing.items():
        if name not in wanted:
            rendition.delete()
            changes["removed"].append(name)
    for name, (kind, params, width, height) in wanted.items():
        rendition = existing.get(name)
        if rendition is not None and rendition.params == params:
            continue
        if rendition is None:
            rendition = Rendition(job=job, kind=kind, name=name)
            changes["added"].append(name)
        else:
            changes["changed"].append(name)
        rendition.params, rendition.width, rendition.height = params, width, height
        rendition.state = RenditionState.ENCODING
        rendition.units_total = len(chunks) if kind == RenditionKind.VIDEO else 1
        rendition.units_done = 0
        rendition.output_key, rendition.frame_count, rendition.duration_s, rendition.bitrate_kbps = "", None, None, None
        rendition.failure_reason = ""
        rendition.save()
        Unit.objects.filter(rendition=rendition).delete()
        Unit.objects.bulk_create(unit_rows(job, rendition, chunks, duration_s=job.asset.duration_s or 0))
    return changes


