"""Rows of one encode job in a chosen state, built directly (no encoding), for the action tests."""

from django.conf import settings

from pipeline.models import EncodeJob, JobState, Rendition, RenditionKind, RenditionState, Unit, UnitState
from tests.factories import ChunkFactory, EncodeJobFactory, RenditionFactory, UnitFactory


def job_with_units(
    publisher,
    *,
    state: str = JobState.ENCODING,
    unit_states: dict[str, list[str]] | None = None,
    rendition_states: dict[str, str] | None = None,
    chunks: int = 2,
) -> EncodeJob:
    """A job of the "fast" profile; `unit_states` maps a rendition name to its units' states
    (one per chunk), "aac-96k" to its one audio unit's. Without it: no chunks, no units."""
    job = EncodeJobFactory(asset__publisher=publisher, asset__duration_s=chunks * 4.0, state=state)
    if not unit_states:
        return job
    chunk_rows = [ChunkFactory(job=job, index=i) for i in range(chunks)]
    for name, states in unit_states.items():
        rendition = RenditionFactory(
            job=job,
            name=name,
            state=(rendition_states or {}).get(name, RenditionState.ENCODING),
            units_total=len(states),
            units_done=sum(1 for s in states if s == UnitState.DONE),
        )
        video = rendition.kind == RenditionKind.VIDEO
        if video and rendition.state == RenditionState.READY:
            rendition.frame_count = sum(chunk.frame_count for chunk in chunk_rows[: len(states)])
            rendition.save(update_fields=["frame_count"])
        for i, unit_state in enumerate(states):
            UnitFactory(rendition=rendition, chunk=chunk_rows[i] if video else None, state=unit_state)
    return job


def outputs_store(job: EncodeJob, s3) -> None:
    """Put the outputs the job's rows say exist (DONE units, READY renditions) into S3, with
    the frame count in their metadata, as the workers write them: a restart checks them."""
    for unit in Unit.objects.filter(job=job, state=UnitState.DONE).select_related("chunk"):
        meta = {"frames": str(unit.chunk.frame_count)} if unit.chunk else {}
        s3.put_object(Bucket=settings.S3_BUCKET_MEDIA, Key=unit.output_key, Body=b"unit", Metadata=meta)
    for rendition in Rendition.objects.filter(job=job, state=RenditionState.READY):
        meta = {"frames": str(rendition.frame_count)} if rendition.frame_count else {}
        s3.put_object(
            Bucket=settings.S3_BUCKET_MEDIA, Key=rendition.output_key, Body=b"rendition", Metadata=meta
        )
