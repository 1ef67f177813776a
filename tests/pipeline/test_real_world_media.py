"""Issue 22, media: what real files did to the pipeline, reproduced with generated inputs on
real workers, S3 and ffmpeg. Nothing decodable is lost; what cannot decode fails at once,
readably; a failed job leaves no rendition half-way."""

import time

import pytest

from core.models import Event
from pipeline.models import (
    EncodeJob,
    JobState,
    QualityTask,
    QualityTaskState,
    Rendition,
    RenditionState,
    Unit,
    UnitState,
)
from pipeline.services.jobs import job_fail
from tests.conftest import ENCODE_LANE_1
from tests.factories import EncodeJobFactory, RenditionFactory, UnitFactory
from tests.pipeline import odd_clips
from tests.pipeline.clips import make_clip
from tests.pipeline.test_pipeline_e2e import announce, ffprobe_json, s3_url

pytestmark = [pytest.mark.slow, ENCODE_LANE_1]


def decoded_frames(path) -> int:
    """Frames ffmpeg decodes from the file's first video stream."""
    out = ffprobe_json("-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames", str(path))
    return int(out["streams"][0]["nb_read_frames"])


def _video_frames(job: EncodeJob) -> dict[str, int]:
    return {r.name: r.frame_count for r in Rendition.objects.filter(job=job, kind="video")}


def test_every_frame_that_decodes_is_published(tmp_path, publisher, upload, run_workers, s3, settings):
    settings.REELFLOW_CHUNK_SECONDS = 2
    settings.REELFLOW_SEGMENT_SECONDS = 2
    sources = {
        # Two 3 s recordings joined: the header says 3 s, 150 frames decode.
        "reset": (odd_clips.make_ts_with_reset(tmp_path / "joined.ts"), 150),
        # The header says 2.2 s, 75 frames (3 s) decode.
        "short-header": (odd_clips.make_short_declared_mkv(tmp_path / "camera.mkv"), 75),
        # Came out one frame longer than they decode before the plan counted packets.
        "late-webm": (make_clip(tmp_path / "late.webm", duration=2, codec="libvpx-vp9", video_delay=0.5, audio=False), None),
        "mkv": (make_clip(tmp_path / "plain.mkv", duration=2), None),
    }
    sources = {name: (path, decoded or decoded_frames(path)) for name, (path, decoded) in sources.items()}
    jobs = {name: announce(upload(path, publisher, profile="fast")).job_id for name, (path, _) in sources.items()}

    assert run_workers(2, env={"REELFLOW_CHUNK_SECONDS": "2", "REELFLOW_SEGMENT_SECONDS": "2"}) == [0, 0]

    for name, (_, decoded) in sources.items():
        job = EncodeJob.objects.get(pk=jobs[name])
        assert job.state == JobState.PUBLISHED, (name, job.failure_reason)
        assert sum(job.chunks.values_list("frame_count", flat=True)) == decoded, name
        frames = _video_frames(job)
        assert frames and set(frames.values()) == {decoded}, (name, frames)
        for rendition in Rendition.objects.filter(job=job, kind="video"):
            assert abs(rendition.duration_s - decoded / 25) < 0.05, (name, rendition.name, rendition.duration_s)
    reset = EncodeJob.objects.get(pk=jobs["reset"])
    timeline = reset.chunk_plan["timeline"]
    assert timeline["resets"] == 1 and timeline["read_from"].endswith("/source/rebased.mkv")
    assert reset.asset.probe["read_from"] == timeline["read_from"]
    audio = Rendition.objects.get(job=reset, kind="audio")
    assert audio.duration_s > 5.5, "the audio of the second recording is kept too"
    short = EncodeJob.objects.get(pk=jobs["short-header"])
    assert short.chunk_plan["timeline"]["declared_s"] == pytest.approx(2.2)


def test_extreme_variable_rate_publishes_at_a_whole_rate(tmp_path, publisher, upload, run_workers, s3, settings):
    settings.REELFLOW_SEGMENT_SECONDS = 4
    clip = odd_clips.make_extreme_vfr(tmp_path / "phone.mp4")  # 84 frames over ~11.4 s
    job_id = announce(upload(clip, publisher, profile="fast")).job_id

    assert run_workers(2, env={"REELFLOW_SEGMENT_SECONDS": "4"}) == [0, 0]

    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    assert job.chunk_plan["inputs"]["fps"] == "8"
    for rendition in Rendition.objects.filter(job=job, kind="video"):
        stream = ffprobe_json("-show_streams", "-select_streams", "v:0", s3_url(rendition.output_key))["streams"][0]
        assert stream["r_frame_rate"] == "8/1", (rendition.name, stream["r_frame_rate"])
        assert rendition.frame_count == sum(job.chunks.values_list("frame_count", flat=True))


def test_a_file_no_frame_of_which_decodes_fails_at_probe_at_once(tmp_path, publisher, upload, run_workers, s3):
    clip = odd_clips.make_undecodable_mp4(tmp_path / "nomedia.mp4")
    job_id = announce(upload(clip, publisher, profile="fast")).job_id

    started = time.monotonic()
    assert run_workers(1) == [0]
    elapsed = time.monotonic() - started

    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.FAILED
    assert job.failure_reason.startswith("no frame of the video can be decoded"), job.failure_reason
    for raw in ("Error marking filters", "NAL unit", "ffmpeg", "exit code"):
        assert raw not in job.failure_reason
    assert not Unit.objects.filter(job=job).exists(), "refused at probe, before any unit"
    assert elapsed < 30, f"no retry: {elapsed:.1f} s"
    failed = Event.objects.get(type="job.failed", subject_id=str(job.pk))
    assert failed.payload["failure_class"] == "permanent"


@pytest.mark.django_db
def test_a_failed_job_leaves_every_rendition_and_unit_final():
    job = EncodeJobFactory(state=JobState.ENCODING)
    encoding = RenditionFactory(job=job, name="h264-240p", state=RenditionState.ENCODING)
    assembling = RenditionFactory(job=job, name="h264-480p", state=RenditionState.ASSEMBLING)
    ready = RenditionFactory(job=job, name="aac-128k", state=RenditionState.READY)
    running = UnitFactory(job=job, rendition=encoding, state=UnitState.RUNNING)
    queued = UnitFactory(job=job, rendition=encoding, state=UnitState.QUEUED)

    job_fail(job_id=job.pk, reason="the source object is gone", failure_class="permanent", detail="NoSuchKey")

    states = dict(Rendition.objects.filter(job=job).values_list("pk", "state"))
    assert states == {encoding.pk: RenditionState.FAILED, assembling.pk: RenditionState.FAILED, ready.pk: RenditionState.READY}
    running.refresh_from_db()
    queued.refresh_from_db()
    assert (running.state, queued.state) == (UnitState.FAILED, UnitState.CANCELLED)
    detail = Event.objects.get(type="job.failure_detail", subject_id=str(job.pk))
    assert detail.owner is None and detail.payload["detail"] == "NoSuchKey"


def test_a_16x16_clip_never_waits_for_a_score_its_rules_do_not_read(
    tmp_path, publisher, upload, run_workers, s3, settings
):
    # "standard" carries the Quality floor (VMAF for rungs of 720p and up): none of this
    # clip's rungs is that tall, so no rule reads its score.
    clip = make_clip(tmp_path / "tiny.mp4", duration=2, width=16, height=16)
    job_id = announce(upload(clip, publisher, profile="standard")).job_id

    started = time.monotonic()
    assert run_workers(1) == [0]
    elapsed = time.monotonic() - started

    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    assert not Event.objects.filter(type="job.waiting_for_quality", subject_id=str(job.pk)).exists()
    assert elapsed < 90, f"{elapsed:.1f} s"
    tasks = QualityTask.objects.filter(job=job)
    assert tasks and all(t.state == QualityTaskState.DONE and t.attempts <= 1 for t in tasks), [
        (t.state, t.attempts, t.error) for t in tasks
    ]


def test_a_second_probe_reads_the_upload_not_an_earlier_rebased_copy(tmp_path, publisher, upload, s3):
    from pipeline.steps.probe import source_probe

    job = announce(upload(odd_clips.make_ts_with_reset(tmp_path / "joined.ts"), publisher)).job
    # As a probe before this one left it (a job re-planned from its ingest step).
    job.asset.probe = {"read_from": f"{job.output_prefix}/source/gone.mkv"}
    job.asset.save(update_fields=["probe"])

    info, chunks, plan = source_probe(EncodeJob.objects.select_related("asset").get(pk=job.pk))

    assert plan["timeline"]["resets"] == 1, "the upload was probed, clock reset and all"
    assert info.as_dict()["read_from"] == f"{job.output_prefix}/source/rebased.mkv"
    assert sum(chunk.frame_count for chunk in chunks) == 150
