"""Rows of one encode job in a chosen state, built directly (no encoding), for the action tests."""

from django.conf import settings
from django.utils import timezone

from pipeline.models import (
    Asset,
    Chunk,
    EncodeJob,
    JobState,
    Profile,
    Rendition,
    RenditionKind,
    RenditionState,
    Unit,
    UnitState,
)


def job_with_units(
    publisher, *, state: str = JobState.ENCODING, unit_states: dict[str, list[str]] | None = None,
    rendition_states: dict[str, str] | None = None, chunks: int = 2,
) -> EncodeJob:
    """A job of the "fast" profile; `unit_states` maps a rendition name to its units' states
    (one per chunk), "aac-96k" to its one audio unit's. Without it: no chunks, no units."""
    asset = Asset.objects.create(publisher=publisher, title="Clip", source_bucket=settings.S3_BUCKET_INGEST,
                                 source_key=f"uploads/{publisher.username}/clip.mp4", duration_s=chunks * 4.0)
    job = EncodeJob.objects.create(asset=asset, profile=Profile.objects.get(slug="fast"), state=state,
                                   chunk_seconds=4, segment_seconds=2, output_prefix=f"assets/{asset.pk}/jobs/x",
                                   started_at=timezone.now())
    if not unit_states:
        return job
    chunk_rows = [Chunk.objects.create(job=job, index=i, start_s=4.0 * i, end_s=4.0 * (i + 1), start_frame=100 * i,
                                       frame_count=100) for i in range(chunks)]
    for name, states in unit_states.items():
        audio = name.startswith("aac")
        height = None if audio else int(name.split("-")[1].rstrip("p"))
        done = sum(1 for s in states if s == UnitState.DONE)
        rendition = Rendition.objects.create(
            job=job, kind=RenditionKind.AUDIO if audio else RenditionKind.VIDEO, name=name, height=height,
            width=None if audio else height * 16 // 9, units_total=len(states), units_done=done,
            state=(rendition_states or {}).get(name, RenditionState.ENCODING),
            params={"name": name, "codec": "aac" if audio else "libx264", "height": height},
        )
        if rendition.state == RenditionState.READY:
            rendition.output_key = f"{job.output_prefix}/renditions/{name}.mp4"
            rendition.frame_count = None if audio else 100 * len(states)
            rendition.save(update_fields=["output_key", "frame_count"])
        for i, unit_state in enumerate(states):
            Unit.objects.create(job=job, rendition=rendition, chunk=None if audio else chunk_rows[i], state=unit_state,
                                cost=(height or 1) * 1000 + i, output_key=f"{job.output_prefix}/{name}/{i}.mp4",
                                error="boom" if unit_state == UnitState.FAILED else "")
    return job


def outputs_store(job: EncodeJob, s3) -> None:
    """Put the outputs the job's rows say exist (DONE units, READY renditions) into S3, with
    the frame count in their metadata, as the workers write them: a restart checks them."""
    for unit in Unit.objects.filter(job=job, state=UnitState.DONE).select_related("chunk"):
        meta = {"frames": str(unit.chunk.frame_count)} if unit.chunk else {}
        s3.put_object(Bucket=settings.S3_BUCKET_MEDIA, Key=unit.output_key, Body=b"unit", Metadata=meta)
    for rendition in Rendition.objects.filter(job=job, state=RenditionState.READY):
        meta = {"frames": str(rendition.frame_count)} if rendition.frame_count else {}
        s3.put_object(Bucket=settings.S3_BUCKET_MEDIA, Key=rendition.output_key, Body=b"rendition", Metadata=meta)
