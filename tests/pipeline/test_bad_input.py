"""Bad input ends its job FAILED with a reason a person can act on; nothing is retried
forever, the source object stays, and the workers live on."""

import pytest

from pipeline.models import EncodeJob, JobState, Unit
from tests.conftest import ENCODE_LANE_1
from tests.pipeline import clips
from tests.pipeline.test_pipeline_e2e import announce

pytestmark = [pytest.mark.slow, ENCODE_LANE_1]


def test_each_kind_of_bad_input_fails_with_its_reason(tmp_path, publisher, upload, run_workers, s3, settings):
    settings.REELFLOW_MAX_DURATION_SECONDS = 60
    cases = {
        "empty.mp4": (clips.make_empty, "not a media file"),
        "random.mp4": (clips.make_random, "not a media file"),
        "notes.mp4": (clips.make_text, "not a media file"),
        "cut.mp4": (clips.make_truncated, "truncated"),
        "cut-faststart.mp4": (lambda p: clips.make_truncated(p, faststart=True), "truncated"),
        "song.m4a": (clips.make_audio_only, "no video stream"),
        "still.png": (clips.make_png, "image, not a video"),
        "nothing.mp4": (clips.make_zero_duration, "zero duration"),
        "long.mp4": (lambda p: clips.make_clip(p, duration=61.5, width=64, height=64, fps=5, audio=False), "longer than"),
    }
    jobs = {}
    for name, (make, reason) in cases.items():
        path = make(tmp_path / name)
        jobs[name] = (announce(upload(path, publisher)).job_id, reason)
    # Huge declared dimensions, against a lowered pixel limit (a real 8K+ file is too big to make here).
    big = clips.make_clip(tmp_path / "wide.mp4", duration=1, width=640, height=480, audio=False)
    settings.REELFLOW_MAX_PIXELS = 320 * 240
    jobs["wide.mp4"] = (announce(upload(big, publisher)).job_id, "dimensions 640x480 exceed")

    codes = run_workers(2, env={"REELFLOW_MAX_PIXELS": str(320 * 240), "REELFLOW_MAX_DURATION_SECONDS": "60"})

    assert codes == [0, 0], "workers end normally: no bad input kills a worker"
    for name, (job_id, reason) in jobs.items():
        job = EncodeJob.objects.get(pk=job_id)
        assert job.state == JobState.FAILED, (name, job.state)
        assert reason in job.failure_reason, (name, job.failure_reason)
        assert Unit.objects.filter(job=job).count() == 0, name
        head = s3.head_object(Bucket=settings.S3_BUCKET_INGEST, Key=job.asset.source_key)
        assert head["ContentLength"] >= 0, "the source object stays"
    assert len({r for _, r in jobs.values()}) >= 7
    assert len(jobs) >= 10
