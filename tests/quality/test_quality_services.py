"""Planning, state and fan-in of measurements, on database rows and the real Redis queue (no
ffmpeg): a chunk is queued (one RQ job for a batch of its renditions) once its video units are
done, a unit encoded again is measured again, the "off" mode, failures that stay with the
measurement, lost or dead RQ jobs put back, and what the pages show while measuring."""

import django_rq
import pytest
from django.urls import reverse
from rq.job import Job

from core.models import Event
from pipeline.models import (
    EncodeJob,
    JobState,
    QualityState,
    QualityTask,
    QualityTaskState,
    Rendition,
    RenditionQuality,
    RenditionState,
    Unit,
    UnitState,
)
from pipeline.quality import metrics
from pipeline.quality import services as quality_services
from pipeline.quality.selectors import job_quality_state, rendition_scores
from pipeline.services.packaging import rendition_ready
from pipeline.services.units import unit_finish, unit_start
from tests.factories import ChunkFactory, EncodeJobFactory, RenditionFactory, UnitFactory


def make_job(publisher, *, chunks: int = 2, heights=(240, 360), encoded: bool = True) -> EncodeJob:
    """A job planned with a unit per chunk and rung (and one audio unit): rows only. With
    ``encoded`` every unit is DONE and the renditions ASSEMBLING (their units finished before
    they could plan anything: :func:`ready` plans them); otherwise all wait to be encoded."""
    job = EncodeJobFactory(
        asset__publisher=publisher,
        asset__duration_s=2.0 * chunks,
        asset__width=640,
        asset__height=360,
        chunk_seconds=2,
    )
    chunk_rows = [ChunkFactory(job=job, index=i, frame_count=50) for i in range(chunks)]
    state = UnitState.DONE if encoded else UnitState.QUEUED
    for height in heights:
        name = f"h264-{height}p"
        rendition = RenditionFactory(
            job=job,
            name=name,
            params={"name": name, "codec": "libx264", "height": height, "crf": 23},
            state=RenditionState.ASSEMBLING if encoded else RenditionState.ENCODING,
            units_total=chunks,
            units_done=chunks if encoded else 0,
        )
        for chunk in chunk_rows:
            UnitFactory(rendition=rendition, chunk=chunk, state=state, output_key=f"u/{name}/{chunk.index}.mp4")
    audio = RenditionFactory(
        job=job, name="aac-96k", state=RenditionState.ASSEMBLING if encoded else RenditionState.ENCODING,
        units_total=1, units_done=1 if encoded else 0,
    )  # fmt: skip
    UnitFactory(rendition=audio, state=state, output_key="u/aac.mp4")
    return job


def ready(rendition: Rendition) -> None:
    rendition_ready(
        rendition_id=rendition.pk, output_key=f"r/{rendition.name}.mp4",
        stats={"frame_count": 100, "duration_s": 4.0, "bitrate_kbps": 300},
    )  # fmt: skip


def encode(unit: Unit) -> None:
    """A worker encodes the unit: started, then finished (the services a real unit calls)."""
    unit_start(unit_id=unit.pk, worker="w1", rq_id="")
    unit_finish(unit_id=unit.pk, result={"frames": 50, "wall_s": 1.0, "ffmpeg_s": 1.0, "cpu_s": 1.0})


def unit_of(job, height: int, chunk: int) -> Unit:
    return Unit.objects.get(job=job, rendition__height=height, chunk__index=chunk)


@pytest.fixture
def quality_queue(redis_conn):
    return django_rq.get_queue("quality")


def queued_batches(queue) -> list[list[int]]:
    return [Job.fetch(job_id, connection=queue.connection).args[0] for job_id in queue.job_ids]


def test_a_chunk_is_measured_once_its_video_units_are_done(publisher, s3, quality_queue, client):
    job = make_job(publisher, encoded=False)
    small, large = job.renditions.filter(kind="video").order_by("height")
    assert job_quality_state(job) == "pending", "QC is on and nothing is measured yet"

    encode(unit_of(job, 240, 0))
    task = QualityTask.objects.get(job=job)
    assert (task.rendition_id, task.chunk.index, task.state, task.rq_id) == (small.pk, 0, QualityTaskState.QUEUED, "")
    assert quality_queue.count == 0, "the chunk's 360p unit is still to come"
    assert RenditionQuality.objects.get(rendition=small).state == QualityState.PENDING
    encode(Unit.objects.get(job=job, rendition__kind="audio"))
    assert QualityTask.objects.filter(job=job).count() == 1, "audio is not measured"

    client.force_login(publisher)
    page = client.get(reverse("studio:asset", args=[job.asset_id])).content.decode()
    assert "0 of 4 chunk measurements done" in page, "every chunk counts, planned or not"

    encode(unit_of(job, 360, 0))
    chunk0 = list(QualityTask.objects.filter(job=job, chunk__index=0).order_by("pk"))
    assert len(chunk0) == 2 and len({t.rq_id for t in chunk0}) == 1 and chunk0[0].rq_id.startswith(f"qc-{chunk0[0].pk}-")
    assert queued_batches(quality_queue) == [[t.pk for t in chunk0]], "one RQ job reads the chunk's source once"
    assert rendition_scores(small) == {}

    # Chunk 1 is queued while nothing is assembled yet: measuring overlaps the encode.
    encode(unit_of(job, 360, 1))
    encode(unit_of(job, 240, 1))
    assert quality_queue.count == 2 and QualityTask.objects.filter(job=job).count() == 4
    assert Rendition.objects.get(pk=small.pk).state == RenditionState.ASSEMBLING
    ready(small)
    ready(large)
    assert QualityTask.objects.filter(job=job).count() == 4 and quality_queue.count == 2, (
        "a ready rendition whose chunks are planned plans nothing twice"
    )


def test_batches_hold_at_most_the_configured_renditions(publisher, s3, quality_queue, settings):
    settings.REELFLOW_QC_BATCH = 2
    job = make_job(publisher, chunks=1, heights=(240, 360, 480), encoded=False)
    for height in (240, 360, 480):
        encode(unit_of(job, height, 0))
    assert sorted(len(b) for b in queued_batches(quality_queue)) == [1, 2]


def test_a_rendition_ready_plans_chunks_its_units_never_planned(publisher, s3, quality_queue):
    job = make_job(publisher)  # units DONE without unit_finish: nothing planned yet
    small, large = job.renditions.filter(kind="video").order_by("height")
    ready(small)
    ready(job.renditions.get(kind="audio"))

    tasks = list(QualityTask.objects.filter(job=job).order_by("chunk__index"))
    assert [(t.rendition_id, t.chunk.index, t.state) for t in tasks] == [
        (small.pk, 0, QualityTaskState.QUEUED), (small.pk, 1, QualityTaskState.QUEUED)
    ]  # fmt: skip
    assert sorted(quality_queue.job_ids) == sorted({t.rq_id for t in tasks})
    assert RenditionQuality.objects.get(rendition=small).state == QualityState.PENDING
    ready(large)
    assert QualityTask.objects.filter(job=job).count() == 4 and quality_queue.count == 4


def test_a_unit_encoded_again_is_measured_again(publisher, s3, quality_queue):
    job = make_job(publisher, chunks=1, heights=(240,), encoded=False)
    unit = unit_of(job, 240, 0)
    encode(unit)
    task = QualityTask.objects.get(job=job)
    finish(task, [80.0] * 10)
    assert job_quality_state(job) == "done"

    Unit.objects.filter(pk=unit.pk).update(state=UnitState.QUEUED)  # a restart found its output bad
    assert quality_services.task_start(task_id=task.pk, worker="w2", rq_id=task.rq_id) is None
    encode(unit)
    task.refresh_from_db()
    assert task.state == QualityTaskState.QUEUED and task.scores == {} and task.rq_id
    assert job_quality_state(job) == "pending"
    assert RenditionQuality.objects.get(rendition=unit.rendition).state == QualityState.PENDING


def test_off_mode_measures_nothing_and_says_so(publisher, s3, quality_queue, client, settings):
    settings.REELFLOW_QC_MODE = "off"
    job = make_job(publisher, encoded=False)
    for unit in Unit.objects.filter(job=job):
        encode(unit)
    for rendition in job.renditions.all():
        ready(rendition)
    assert not QualityTask.objects.filter(job=job).exists() and quality_queue.count == 0
    assert job_quality_state(job) == "off"
    settings.REELFLOW_QC_MODE = "always"
    assert job_quality_state(job) == "off", "the job keeps the mode it was planned with"
    client.force_login(publisher)
    page = client.get(reverse("studio:asset", args=[job.asset_id])).content.decode()
    assert "Quality measurement is off for this job" in page and 'class="qc-heatmap"' not in page


def test_pages_show_measuring_while_tasks_wait(publisher, s3, quality_queue, client):
    job = make_job(publisher)
    small = job.renditions.filter(kind="video").order_by("height").first()
    ready(small)
    task = QualityTask.objects.filter(rendition=small).order_by("chunk__index").first()
    quality_services.task_start(task_id=task.pk, worker="w1", rq_id=task.rq_id)
    client.force_login(publisher)
    page = client.get(reverse("studio:asset", args=[job.asset_id])).content.decode()
    assert "Measuring…" in page and "0 of 4 chunk measurements done" in page
    # Two cells measuring (one queued, one running), two waiting for their chunk to be encoded.
    assert page.count('<g class="qc-cell qc-pending"') == 4
    assert page.count("measuring… (queued)") == 2 and page.count("waiting for the chunk to be encoded") == 4
    assert 'class="qc-chart"' not in page and "the chart appears once a whole rendition is measured" in page


def finish(task: QualityTask, vmaf: list[float], *, step: int = 1) -> None:
    """What a worker reports for a measured chunk (values given, not measured: no ffmpeg here):
    every ``step``-th frame scored."""
    task.refresh_from_db()
    quality_services.task_start(task_id=task.pk, worker="w1", rq_id=task.rq_id)
    quality_services.task_finish(task_id=task.pk, rq_id=task.rq_id, result={
        "scores": {"vmaf": metrics.summarize(vmaf)},
        "frame_scores": {"vmaf": metrics.frames_pack(vmaf), "index": metrics.index_pack(range(0, step * len(vmaf), step)),
                         "step": step},
        "frames": len(vmaf), "compared_width": 640, "compared_height": 360, "tool": "test", "command": "ffmpeg",
        "wall_s": 1.0, "cpu_s": 1.0,
    })  # fmt: skip


def test_last_chunk_aggregates_over_all_frames_and_last_task_ends_the_job(publisher, s3, quality_queue):
    job = make_job(publisher, heights=(240,))
    rendition = job.renditions.get(kind="video")
    ready(rendition)
    first, second = QualityTask.objects.filter(job=job).order_by("chunk__index")
    finish(first, [90.0] * 45 + [10.0] * 5)
    assert rendition_scores(rendition) == {}, "one chunk of two is not the rendition"
    assert job_quality_state(job) == "pending"
    finish(second, [100.0] * 50)
    scores = rendition_scores(rendition)
    # Over 100 frames: the mean of all, and a 5th percentile that sees the 5 bad frames (the
    # mean of per-chunk 5th percentiles would say 55).
    assert scores["vmaf"]["mean"] == pytest.approx((45 * 90 + 5 * 10 + 50 * 100) / 100)
    assert scores["vmaf"]["p5"] == pytest.approx(10.0 + 0.95 * 80)
    assert job_quality_state(job) == "done"
    event = Event.objects.get(type="rendition.quality_measured", subject_id=str(job.pk))
    assert event.payload["vmaf"]["mean"] == pytest.approx(scores["vmaf"]["mean"], abs=1e-3)
    assert event.owner == publisher
    finish(second, [0.0] * 50)  # a late duplicate report changes nothing
    assert rendition_scores(rendition) == scores


def test_failures_stay_with_the_measurement(publisher, s3, quality_queue):
    job = make_job(publisher, chunks=1, heights=(240,))
    rendition = job.renditions.get(kind="video")
    ready(rendition)
    task = QualityTask.objects.get(job=job)
    quality_services.task_start(task_id=task.pk, worker="w1", rq_id=task.rq_id)

    quality_services.task_fail(
        task_id=task.pk, reason="the storage server timed out", permanent=False, rq_id=task.rq_id
    )
    task.refresh_from_db()
    assert task.state == QualityTaskState.QUEUED and task.error == "the storage server timed out"
    assert job_quality_state(job) == "pending"
    quality_services.task_fail(task_id=task.pk, reason="old news", permanent=True, rq_id="qc-stale-attempt")
    task.refresh_from_db()
    assert task.state == QualityTaskState.QUEUED, "a replaced attempt's failure changes nothing"

    quality_services.task_fail(task_id=task.pk, reason="gave up", permanent=True, rq_id=task.rq_id)
    task.refresh_from_db()
    assert task.state == QualityTaskState.FAILED and task.error == "gave up"
    assert job_quality_state(job) == "failed"
    assert RenditionQuality.objects.get(rendition=rendition).state == QualityState.FAILED
    job.refresh_from_db()
    assert job.state == JobState.ENCODING and job.failure_reason == "", "the encode job is untouched"


def test_whole_rendition_scores_come_from_every_chunks_sampled_frames(publisher, s3, quality_queue):
    job = make_job(publisher, heights=(240,))
    rendition = job.renditions.get(kind="video")
    ready(rendition)
    first, second = QualityTask.objects.filter(job=job).order_by("chunk__index")
    finish(first, [90.0] * 8 + [20.0] * 2, step=5)
    finish(second, [100.0] * 10, step=5)
    summary = RenditionQuality.objects.get(rendition=rendition)
    assert summary.frames == 20, "the frames scored"
    assert rendition_scores(rendition)["vmaf"]["mean"] == pytest.approx((8 * 90 + 2 * 20 + 10 * 100) / 20)
    event = Event.objects.get(type="rendition.quality_measured", subject_id=str(job.pk))
    assert (event.payload["frames"], event.payload["frames_total"], event.payload["step"]) == (20, 100, 5)
    first.refresh_from_db()
    assert metrics.index_unpack(first.frame_scores["index"]) == list(range(0, 50, 5))


def test_measurements_redis_forgot_are_queued_again(publisher, s3, quality_queue, redis_conn, settings):
    settings.REELFLOW_RECONCILE_GRACE_SECONDS = 0
    job = make_job(publisher, heights=(240, 360))
    for rendition in job.renditions.all():
        ready(rendition)
    before = dict(QualityTask.objects.filter(job=job).values_list("pk", "rq_id"))
    assert quality_services.reconcile_tasks() == [], "queued in Redis: nothing to do"
    redis_conn.flushdb()

    again = quality_services.reconcile_tasks()

    assert sorted(again) == sorted(before)
    after = dict(QualityTask.objects.filter(job=job).values_list("pk", "rq_id"))
    assert all(after[pk] != before[pk] for pk in before), "each gets a fresh RQ id"
    assert sorted(quality_queue.job_ids) == sorted(set(after.values()))
    assert sorted(len(b) for b in queued_batches(quality_queue)) == [2, 2], "a batch per chunk"
    EncodeJob.objects.filter(pk=job.pk).update(state=JobState.CANCELLED)
    redis_conn.flushdb()
    assert quality_services.reconcile_tasks() == [], "a cancelled job's measurements wait for a restart"


def test_a_measurement_whose_worker_died_is_queued_again(publisher, s3, quality_queue, redis_conn, settings):
    """A killed worker leaves its RQ job "started" until RQ's registry cleanup, minutes later;
    without the measurement's liveness key the sweep re-queues it at once."""
    settings.REELFLOW_RECONCILE_GRACE_SECONDS = 0
    job = make_job(publisher, chunks=1, heights=(240,))
    ready(job.renditions.get(kind="video"))
    task = QualityTask.objects.get(job=job)
    rq_job = Job.fetch(task.rq_id, connection=redis_conn)
    quality_queue.remove(rq_job)
    rq_job.set_status("started")  # taken by a worker, which then died: no liveness key
    quality_services.task_start(task_id=task.pk, worker="dead", rq_id=task.rq_id)

    assert quality_services.reconcile_tasks() == [task.pk]
    task.refresh_from_db()
    assert task.state == QualityTaskState.QUEUED and task.rq_id != rq_job.id
    assert quality_queue.job_ids == [task.rq_id]
    # The dead attempt's late news changes nothing.
    quality_services.task_fail(task_id=task.pk, reason="killed", permanent=True, rq_id=rq_job.id)
    task.refresh_from_db()
    assert task.state == QualityTaskState.QUEUED


def test_a_chunk_still_encoding_is_not_queued_by_the_sweep(publisher, s3, quality_queue, redis_conn, settings):
    settings.REELFLOW_RECONCILE_GRACE_SECONDS = 0
    job = make_job(publisher, chunks=1, heights=(240, 360), encoded=False)
    encode(unit_of(job, 240, 0))
    assert quality_services.reconcile_tasks() == [] and quality_queue.count == 0
