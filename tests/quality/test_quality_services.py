"""Planning, state and fan-in of measurements, on database rows and the real Redis queue (no
ffmpeg): what a READY rendition queues, the "off" mode, failures that stay with the
measurement, lost RQ jobs put back, and what the pages show while measuring."""

import django_rq
import pytest
from django.urls import reverse

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
)
from pipeline.quality import metrics
from pipeline.quality import services as quality_services
from pipeline.quality.selectors import job_quality_state, rendition_scores
from pipeline.services.packaging import rendition_ready
from tests.factories import ChunkFactory, EncodeJobFactory, RenditionFactory


def make_job(publisher, *, chunks: int = 2, heights=(240, 360)) -> EncodeJob:
    """A job planned and encoded, its renditions ASSEMBLING: rows only."""
    job = EncodeJobFactory(
        asset__publisher=publisher,
        asset__duration_s=2.0 * chunks,
        asset__width=640,
        asset__height=360,
        chunk_seconds=2,
    )
    for i in range(chunks):
        ChunkFactory(job=job, index=i, frame_count=50)
    for height in heights:
        name = f"h264-{height}p"
        RenditionFactory(
            job=job,
            name=name,
            params={"name": name, "codec": "libx264", "height": height, "crf": 23},
            state=RenditionState.ASSEMBLING,
            units_total=chunks,
            units_done=chunks,
        )
    RenditionFactory(job=job, name="aac-96k", state=RenditionState.ASSEMBLING)
    return job


def ready(rendition: Rendition) -> None:
    rendition_ready(
        rendition_id=rendition.pk, output_key=f"r/{rendition.name}.mp4",
        stats={"frame_count": 100, "duration_s": 4.0, "bitrate_kbps": 300},
    )  # fmt: skip


@pytest.fixture
def quality_queue(redis_conn):
    return django_rq.get_queue("quality")


def test_a_ready_video_rendition_queues_one_measurement_per_chunk(publisher, s3, quality_queue):
    job = make_job(publisher)
    small, large = job.renditions.filter(kind="video").order_by("height")
    assert job_quality_state(job) == "pending", "QC is on and nothing is measured yet"

    ready(small)
    ready(job.renditions.get(kind="audio"))

    tasks = list(QualityTask.objects.filter(job=job).order_by("chunk__index"))
    assert [(t.rendition_id, t.chunk.index, t.state) for t in tasks] == [
        (small.pk, 0, QualityTaskState.QUEUED), (small.pk, 1, QualityTaskState.QUEUED)
    ]  # fmt: skip
    assert sorted(quality_queue.job_ids) == sorted(t.rq_id for t in tasks)
    assert all(
        job_id.startswith(f"qc-{t.pk}-")
        for t, job_id in zip(tasks, [t.rq_id for t in tasks], strict=True)
    )
    assert RenditionQuality.objects.get(rendition=small).state == QualityState.PENDING
    assert rendition_scores(small) == {}
    ready(large)
    assert QualityTask.objects.filter(job=job).count() == 4 and quality_queue.count == 4
    ready(large)  # a rendition already READY plans nothing twice
    assert QualityTask.objects.filter(job=job).count() == 4 and quality_queue.count == 4


def test_off_mode_measures_nothing_and_says_so(publisher, s3, quality_queue, client, settings):
    settings.REELFLOW_QC_MODE = "off"
    job = make_job(publisher)
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
    # Two cells measuring (one queued, one running), two waiting for their rendition.
    assert page.count('<g class="qc-cell qc-pending"') == 4
    assert page.count("measuring… (queued)") == 2 and page.count("waiting for the rendition to be ready") == 4
    assert 'class="qc-chart"' not in page and "the chart appears once a whole rendition is measured" in page


def finish(task: QualityTask, vmaf: list[float]) -> None:
    """What a worker reports for a measured chunk (values given, not measured: no ffmpeg here)."""

    quality_services.task_start(task_id=task.pk, worker="w1", rq_id=task.rq_id)
    quality_services.task_finish(task_id=task.pk, result={
        "scores": {"vmaf": metrics.summarize(vmaf)}, "frame_scores": {"vmaf": metrics.frames_pack(vmaf)},
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


def test_measurements_redis_forgot_are_queued_again(publisher, s3, quality_queue, redis_conn, settings):
    settings.REELFLOW_RECONCILE_GRACE_SECONDS = 0
    job = make_job(publisher, heights=(240,))
    ready(job.renditions.get(kind="video"))
    before = dict(QualityTask.objects.filter(job=job).values_list("pk", "rq_id"))
    assert quality_services.reconcile_tasks() == [], "queued in Redis: nothing to do"
    redis_conn.flushdb()

    again = quality_services.reconcile_tasks()

    assert sorted(again) == sorted(before)
    after = dict(QualityTask.objects.filter(job=job).values_list("pk", "rq_id"))
    assert all(after[pk] != before[pk] for pk in before), "each gets a fresh RQ id"
    assert sorted(quality_queue.job_ids) == sorted(after.values())
    EncodeJob.objects.filter(pk=job.pk).update(state=JobState.CANCELLED)
    redis_conn.flushdb()
    assert quality_services.reconcile_tasks() == [], "a cancelled job's measurements wait for a restart"
