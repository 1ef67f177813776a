"""Operator actions end to end on real jobs: real clips in the session's S3, real RQ worker
processes running ffmpeg, the console's forms posted by an operations user. The only thing
mocked is the fault: a rendition whose parameters ffmpeg rejects."""

import time

import pytest
from django.urls import reverse

from core.models import Event
from pipeline.models import EncodeJob, JobState, Rendition, Unit, UnitState, VideoRenditionSpec
from tests.conftest import ENCODE_LANE_2, process_running, wait_until
from tests.pipeline.clips import make_clip
from tests.pipeline.conftest import ladders, publisher, upload  # noqa: F401 - fixtures
from tests.pipeline.test_faults import ffmpeg_children, start_worker, stop
from tests.pipeline.test_pipeline_e2e import announce

pytestmark = [pytest.mark.slow, ENCODE_LANE_2]


def until_final(job_id: int, *, timeout: float = 240) -> EncodeJob:
    return wait_until(
        lambda: (job := EncodeJob.objects.get(pk=job_id)).state in (JobState.PUBLISHED, JobState.FAILED,
                                                                    JobState.CANCELLED) and job,
        timeout=timeout, interval=0.25, message=f"job {job_id} to finish",
    )


def post_action(client, job_id: int, action: str) -> list[str]:
    response = client.post(reverse("console:job_action", kwargs={"job_id": job_id}), {"action": action}, follow=True)
    return [str(m) for m in response.context["messages"]]


def test_retry_a_failed_unit_and_the_job_publishes(tmp_path, publisher, upload, s3, redis_conn,  # noqa: F811
                                                   ops_client, operator, settings):
    settings.REELFLOW_CHUNK_SECONDS = 4
    settings.REELFLOW_SEGMENT_SECONDS = 2
    # The fault: a rung whose parameters ffmpeg refuses (a permanent failure). Jobs copy their
    # rungs' parameters when they are planned, so the job keeps it after the ladder is fixed.
    VideoRenditionSpec.objects.filter(profile__slug="fast", name="h264-240p").update(preset="no-such-preset")
    clip = make_clip(tmp_path / "retry.mp4", duration=8, width=640, height=360, fps=25)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    worker = start_worker()
    try:
        job = until_final(job_id)
        assert job.state == JobState.FAILED
        failed = list(Unit.objects.filter(job=job, state=UnitState.FAILED))
        assert failed and "rejected the command" in failed[0].error
        page = ops_client.get(reverse("console:job", kwargs={"job_id": job_id})).content.decode()
        assert "rejected the command" in page and "no-such-preset" in page, "the error and the exact command are shown"

        # The operator fixes the cause (here: the job's copy of the rung), then retries.
        broken = Rendition.objects.get(job_id=job_id, name="h264-240p")
        Rendition.objects.filter(pk=broken.pk).update(params={**broken.params, "preset": "veryfast"})
        messages = post_action(ops_client, job_id, "retry")
        assert messages[0].startswith(f"Job {job_id}: ") and "queued again" in messages[0]
        job = until_final(job_id)
    finally:
        stop(worker)
        VideoRenditionSpec.objects.filter(profile__slug="fast", name="h264-240p").update(preset="veryfast")

    assert job.state == JobState.PUBLISHED, job.failure_reason
    assert not Unit.objects.filter(job=job).exclude(state=UnitState.DONE).exists()
    for rendition in Rendition.objects.filter(job=job):
        assert rendition.units_done == rendition.units_total, "no unit counted twice or lost"
    assert Unit.objects.filter(pk__in=[u.pk for u in failed], attempts__gte=2).count() == len(failed)
    [retried] = Event.objects.filter(subject_type="pipeline.encodejob", subject_id=str(job_id), type="job.units_retried")
    assert retried.actor == operator


def test_cancel_a_running_job_stops_its_ffmpeg_then_restart_finishes_it(
    tmp_path, publisher, upload, s3, redis_conn, ops_client, operator, settings  # noqa: F811
):
    settings.REELFLOW_CHUNK_SECONDS = 6
    settings.REELFLOW_SEGMENT_SECONDS = 2
    clip = make_clip(tmp_path / "cancel.mp4", duration=12, width=1280, height=720, fps=25)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    worker = start_worker()
    try:
        running = wait_until(
            lambda: Unit.objects.filter(job_id=job_id, state=UnitState.RUNNING, chunk__isnull=False).first()
            if ffmpeg_children(worker) else None,
            timeout=90, interval=0.05, message="a unit with ffmpeg running",
        )
        pids = [p.pid for p in ffmpeg_children(worker)]
        cancelled_at = time.monotonic()
        assert post_action(ops_client, job_id, "cancel") == [
            f"Job {job_id} cancelled; its running encodes are being stopped."]
        wait_until(lambda: not any(process_running(pid) for pid in pids), timeout=10, interval=0.05,
                   message="ffmpeg to stop")
        stopped_s = time.monotonic() - cancelled_at
        time.sleep(1.5)
        assert not ffmpeg_children(worker), "no unit of a cancelled job starts"
        assert stopped_s < 5
        assert Unit.objects.get(pk=running.pk).state == UnitState.CANCELLED, "its encode was stopped, not finished"
        assert EncodeJob.objects.get(pk=job_id).state == JobState.CANCELLED
        [cancelled] = Event.objects.filter(subject_type="pipeline.encodejob", subject_id=str(job_id), type="job.cancelled")
        assert cancelled.actor == operator and cancelled.actor_label == operator.username

        # Restart resumes where the cancel stopped it, on the same (now idle) worker.
        assert post_action(ops_client, job_id, "restart") == [f"Job {job_id} restarted from its encode step."]
        job = until_final(job_id)
    finally:
        stop(worker)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    assert Unit.objects.get(pk=running.pk).state == UnitState.DONE
