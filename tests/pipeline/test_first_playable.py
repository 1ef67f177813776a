"""The first playable set goes first: the rung the preview plays (nearest REELFLOW_PREVIEW_HEIGHT
from below) and the audio are queued ahead of the other rungs, and their units decode the
chunks the other rungs then read (pipeline/services/planning.py, pipeline/scheduling.py)."""

from types import SimpleNamespace

import django_rq
import pytest

from pipeline import scheduling
from pipeline.media import video_info_from_json
from pipeline.models import EncodeJob, Rendition, RenditionKind, Unit
from pipeline.services.planning import _queue_order, first_playable
from pipeline.steps.pictures import picture_sources
from tests.factories import EncodeJobFactory, RenditionFactory
from tests.pipeline.clips import make_clip
from tests.pipeline.test_pipeline_e2e import announce
from tests.pipeline.test_publish_flow import run_queue
from tests.pipeline.test_scheduling import fifo, ladder

SLOW, TRANSACTIONAL = pytest.mark.slow, pytest.mark.django_db(transaction=True)


def _rungs(job: EncodeJob) -> dict[int, Rendition]:
    return {r.pk: r for r in job.renditions.all()}


@SLOW
@TRANSACTIONAL
def test_the_preview_rung_and_the_audio_are_queued_first(tmp_path, publisher, upload, s3):
    clip = make_clip(tmp_path / "first.mp4", duration=6, width=1280, height=720)
    job_id = announce(upload(clip, publisher, profile="standard")).job_id
    run_queue("ingest")
    job = EncodeJob.objects.get(pk=job_id)
    renditions = _rungs(job)
    first = first_playable(list(renditions.values()))
    assert {renditions[pk].name for pk in first if renditions[pk].kind == RenditionKind.VIDEO} == {"h264-360p"}

    by_rq = dict(Unit.objects.filter(job=job).values_list("rq_id", "rendition_id"))
    queued = [by_rq[rq_id] for rq_id in django_rq.get_queue("encode").job_ids if rq_id in by_rq]
    assert len(queued) == len(by_rq) and job.chunks.count() > 1
    ahead = Unit.objects.filter(job=job, rendition_id__in=first).count()
    assert set(queued[:ahead]) == first, [renditions[r].name for r in queued]
    assert not set(queued[ahead:]) & first


@SLOW
@TRANSACTIONAL
def test_the_preview_rung_leads_whatever_the_cache_and_the_setting_can_turn_it_off(
    tmp_path, publisher, upload, s3, settings
):
    clip = make_clip(tmp_path / "big.mp4", duration=6, width=1280, height=720)
    job_id = announce(upload(clip, publisher, profile="standard")).job_id
    run_queue("ingest")
    job = EncodeJob.objects.select_related("asset").get(pk=job_id)
    info = SimpleNamespace(video=video_info_from_json(job.asset.probe["video"]))
    renditions = _rungs(job)
    name = {u.pk: renditions[u.rendition_id].name for u in Unit.objects.filter(job=job)}

    settings.REELFLOW_ENCODE_SLOTS = 2
    assert name[_queue_order(job, info)[0]] == "h264-360p"
    settings.REELFLOW_DECODED_CACHE_MB = 0  # no cache: nothing to share, the preview rung still first
    assert name[_queue_order(job, info)[0]] == "h264-360p"
    settings.REELFLOW_PREVIEW_HEIGHT = 200  # below every rung: the smallest
    assert name[_queue_order(job, info)[0]] == "h264-240p"
    settings.REELFLOW_PREVIEW_HEIGHT = 0  # off: longest first
    assert name[_queue_order(job, info)[0]] == "h264-720p"


def test_a_preview_first_order_costs_nothing_on_two_workers():
    """The model's view: the 360p rung of three chunks first finishes the preview's video in a
    fifth of the time, with no worker waiting for a chunk and the same makespan as before."""
    plain = ladder(3)
    first = [scheduling.Work(key=w.key, cost=w.cost, chunk=w.chunk, decode_cost=w.decode_cost,
                             first=w.chunk is None or w.cost == 640 * 360 * 500) for w in plain]  # fmt: skip
    order = scheduling.queue_order(first, workers=2)
    waited, makespan = fifo(order, first, workers=2)
    _, plain_makespan = fifo(scheduling.queue_order(plain, workers=2), plain, workers=2)
    assert waited == 0
    assert makespan <= plain_makespan * 1.02
    ahead = [w.key for w in first if w.first]
    assert set(order[: len(ahead)]) == set(ahead)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("rungs", "sprite"),
    [
        (["h264-720p", "h264-480p", "h264-360p", "h264-240p"], "h264-480p"),  # the standard ladder
        (["h264-720p", "h264-360p", "h264-240p"], "h264-720p"),
        (["h264-360p", "h264-240p"], "h264-240p"),
        (["h264-480p"], "h264-480p"),
    ],
)
def test_the_sprite_is_cut_off_the_preview_and_the_tail(rungs, sprite):
    job = EncodeJobFactory()
    for name in [*rungs, "aac-128k"]:
        RenditionFactory(job=job, name=name)
    sources = picture_sources(job)
    assert sources["poster.jpg"].name == rungs[0]
    assert sources["sprite.jpg"].name == sprite
