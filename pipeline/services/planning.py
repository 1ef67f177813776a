"""Planning a probed job: its renditions (the profile's rungs that fit the source), one unit per
chunk and rung and one per audio rendition, each priced for the queue order, and queued.
"""

import hashlib
import json

from django.conf import settings
from django.db import transaction

from pipeline import decoded_cache, scheduling
from pipeline.ffmpeg import rendition_size
from pipeline.ladders import AUDIO_COST_PER_S, CODEC_COST
from pipeline.models import (
    AudioRenditionSpec,
    Chunk,
    EncodeJob,
    JobState,
    Rendition,
    RenditionKind,
    Unit,
    VideoRenditionSpec,
)
from pipeline.services.common import job_event, job_state_message
from pipeline.services.units import units_enqueue


def params_digest(params: dict) -> str:
    """Eight hex digits naming a rendition's parameters: outputs of different parameters never
    share a key, so a changed rung can never be mistaken for a valid earlier output."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]


def unit_output_key(job: EncodeJob, rendition: Rendition, chunk: Chunk | None) -> str:
    tag = f"{rendition.name}-{params_digest(rendition.params)}"
    if chunk is None:
        return f"{job.output_prefix}/audio/{tag}.mp4"
    return f"{job.output_prefix}/units/{tag}/{chunk.index:05d}.mp4"


def unit_rows(job: EncodeJob, rendition: Rendition, chunks: list[Chunk], *, duration_s: float) -> list[Unit]:
    """The unsaved units of a rendition: one per chunk for video, priced by its pixels and the
    codec's cost; one for the whole file for audio, priced per second (ladders.AUDIO_COST_PER_S)."""
    if rendition.kind == RenditionKind.AUDIO:
        return [Unit(job=job, rendition=rendition, chunk=None, cost=duration_s * AUDIO_COST_PER_S,
                     output_key=unit_output_key(job, rendition, None))]
    pixels = rendition.width * rendition.height * CODEC_COST.get(rendition.params["codec"], 1.0)
    return [
        Unit(job=job, rendition=rendition, chunk=chunk, cost=pixels * chunk.frame_count,
             output_key=unit_output_key(job, rendition, chunk))
        for chunk in chunks
    ]


def rendition_plan(job: EncodeJob, info) -> tuple[list[tuple[dict, int, int]], list[dict]]:
    """(video params, width, height) per rung that fits the source, and the audio params."""
    video = info.video
    src_h = video.display_height
    specs = list(VideoRenditionSpec.objects.filter(profile=job.profile).order_by("height", "name"))
    fitting = [s for s in specs if s.height <= src_h]
    if not fitting and specs:
        # A source smaller than every rung still gets one rendition, at its own height.
        smallest = specs[0]
        fitting = [smallest]
        smallest.height = src_h - src_h % 2
    rungs = []
    for spec in fitting:
        width, height = rendition_size(source=video, height=spec.height)
        rungs.append(({**spec.params(), "height": height}, width, height))
    audio = []
    if info.audio:
        audio = [s.params() for s in AudioRenditionSpec.objects.filter(profile=job.profile)]
    return rungs, audio


@transaction.atomic
def job_plan(*, job_id: int, info, chunks: list, plan: dict | None = None) -> EncodeJob | None:
    """PROBING -> ENCODING: store the probe and the chunk plan's lineage (``plan``, see
    ``steps.probe.source_probe``), create chunks, renditions and units, queue units."""
    job = EncodeJob.objects.select_for_update().select_related("asset", "profile").get(pk=job_id)
    if job.state != JobState.PROBING:
        return None
    asset = job.asset
    asset.duration_s = info.duration
    asset.width = info.video.display_width
    asset.height = info.video.display_height
    asset.probe = info.as_dict()
    asset.save(update_fields=["duration_s", "width", "height", "probe"])

    chunk_rows = Chunk.objects.bulk_create(
        [
            Chunk(job=job, index=c.index, start_s=c.start_s, end_s=c.end_s, start_frame=c.start_frame, frame_count=c.frame_count)
            for c in chunks
        ]
    )
    rungs, audio = rendition_plan(job, info)
    units: list[Unit] = []
    for params, width, height in rungs:
        rendition = Rendition.objects.create(
            job=job, kind=RenditionKind.VIDEO, name=params["name"], params=params,
            width=width, height=height, units_total=len(chunk_rows),
        )
        units += unit_rows(job, rendition, chunk_rows, duration_s=info.duration)
    for params in audio:
        rendition = Rendition.objects.create(
            job=job, kind=RenditionKind.AUDIO, name=params["name"], params=params, units_total=1
        )
        units += unit_rows(job, rendition, chunk_rows, duration_s=info.duration)
    Unit.objects.bulk_create(units)
    job.state = JobState.ENCODING
    job.chunk_plan = plan or {}
    job.save(update_fields=["state", "chunk_plan"])
    lineage = {}
    if plan:  # the event's short form; the page shows each boundary from job.chunk_plan
        moved = sum(1 for b in plan["boundaries"] if b["moved_segments"])
        lineage = {"plan": plan["summary"], "scene": plan["scene"]["text"], "moved": moved}
    job_event(
        job, "job.planned", chunks=len(chunk_rows), renditions=len(rungs) + len(audio), units=len(units), **lineage
    )
    job_state_message(job)
    unit_ids = _queue_order(job, info)
    transaction.on_commit(lambda: units_enqueue(unit_ids=unit_ids, at_front=job.priority > 0))
    return job


def first_playable(renditions: list[Rendition]) -> set[int]:
    """The renditions the first preview plays: the video rung nearest ``REELFLOW_PREVIEW_HEIGHT``
    from below (the smallest if none is that low) and every audio rendition; none when the
    setting is 0 (the plain order).

    As video sites do (a standard-definition stream while the HD ones still encode): a 360p
    rung costs about a seventh of a 720p ladder, so it is watchable long before the ladder."""
    video = sorted((r for r in renditions if r.kind == RenditionKind.VIDEO), key=lambda r: (r.height or 0, r.pk))
    if not video or settings.REELFLOW_PREVIEW_HEIGHT <= 0:
        return set()
    low = [r for r in video if (r.height or 0) <= settings.REELFLOW_PREVIEW_HEIGHT]
    first = low[-1] if low else video[0]
    return {first.pk} | {r.pk for r in renditions if r.kind == RenditionKind.AUDIO}


def _queue_order(job: EncodeJob, info) -> list[int]:
    """The first playable set (:func:`first_playable`) ahead, then longest first, each chunk's
    other rungs after the unit that decodes it (pipeline.scheduling), for the encode workers
    registered, or the slots of a fleet that scales out (``REELFLOW_ENCODE_SLOTS``, which the
    chunks were planned for too).

    The preview rung's units decode the chunks and keep the frames for the other rungs. Where
    the whole source does not fit in the decoded-chunk cache, the chunks past it are not kept,
    and each is decoded once more by its costliest rung, which keeps it for the others: about
    8 % more CPU for those chunks of a four-rung 720p ladder, for a preview after a quarter of
    the encode instead of at its end (docs/pipeline.md)."""
    video = info.video
    shared = settings.REELFLOW_DECODED_CACHE_MB > 0 and decoded_cache.frame_bytes(
        pix_fmt=video.pix_fmt, width=video.width, height=video.height
    ) is not None
    rows = Unit.objects.filter(job=job).values_list("pk", "cost", "chunk_id", "chunk__frame_count", "rendition_id")
    first = first_playable(list(job.renditions.all()))
    work = [
        scheduling.Work(
            key=pk, cost=cost, chunk=chunk_id, first=rendition_id in first,
            decode_cost=count * video.width * video.height * scheduling.DECODE_SHARE if chunk_id else 0.0,
        )
        for pk, cost, chunk_id, count, rendition_id in rows
    ]  # fmt: skip
    slots = settings.REELFLOW_ENCODE_SLOTS
    workers = slots if slots > 0 else scheduling.encode_workers()
    return scheduling.queue_order(work, workers=workers, shared_decode=shared)
