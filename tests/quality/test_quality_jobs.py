"""Quality measurement end to end: real uploads to SeaweedFS, real RQ workers on every pipeline
queue, real ffmpeg. Every chunk of every video rendition is measured, the whole-rendition
scores come from all frames, the pages draw them; without libvmaf PSNR and SSIM still come;
a failing measurement never fails the job, and a transient one is retried."""

import json
import subprocess
import sys

import pytest
from django.conf import settings
from django.urls import reverse

from core.models import Event
from core.roles import Role
from pipeline.models import (
    Artifact,
    EncodeJob,
    JobState,
    QualityTask,
    QualityTaskState,
    Rendition,
    RenditionQuality,
)
from pipeline.quality import metrics
from pipeline.quality.selectors import job_quality_state, qc_binary, rendition_scores
from tests.conftest import ENCODE_LANE_2, ROOT, wait_until, worker_env
from tests.console.test_pages import MAX_QUERIES
from tests.pipeline.clips import make_clip
from tests.pipeline.test_pipeline_e2e import announce
from tests.quality.conftest import DEBIAN_FFMPEG

pytestmark = [pytest.mark.slow, ENCODE_LANE_2]


@pytest.fixture
def two_second_chunks(settings):
    settings.REELFLOW_CHUNK_SECONDS = 2
    settings.REELFLOW_SEGMENT_SECONDS = 2


def videos(job) -> list[Rendition]:
    return list(Rendition.objects.filter(job=job, kind="video").order_by("height"))


def fake_ffmpeg(tmp_path, body: str) -> str:
    """An ffmpeg that answers -version and -filters as Debian's does and runs `body` for the
    measurement itself: the fault injected into a real worker."""
    script = tmp_path / "fake-ffmpeg"
    script.write_text(
        f'#!/bin/sh\ncase "$*" in *-version*|*-filters*) exec {DEBIAN_FFMPEG} "$@";; esac\n{body}\n'
    )
    script.chmod(0o755)
    return str(script)


def test_fast_ladder_job_measures_every_chunk_of_every_rendition_with_vmaf(
    tmp_path,
    publisher,
    upload,
    run_workers,
    s3,
    client,
    make_user,
    two_second_chunks,
    django_assert_max_num_queries,
):
    clip = make_clip(tmp_path / "clip.mp4", duration=4, width=854, height=480, fps=25)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id

    # At least 10 frames of each 100-frame rendition: every 7th frame is scored (2 s GOPs of
    # 50 frames; 5 and 10 share a factor with them), from frame 3 of each chunk.
    run_workers(2, env={"REELFLOW_QC_MIN_FRAMES": "10"})

    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    renditions = videos(job)
    chunks = list(job.chunks.order_by("index"))
    assert len(renditions) == 3 and len(chunks) == 2
    tasks = list(QualityTask.objects.filter(job=job).select_related("chunk"))
    _check_tasks(tasks, renditions, chunks)
    _check_scores(job, renditions, tasks)
    _check_lineage(job, tasks, s3)
    _check_pages(job, renditions, tasks, client=client, publisher=publisher, make_user=make_user,
                 max_queries=django_assert_max_num_queries)  # fmt: skip


def _check_tasks(tasks, renditions, chunks) -> None:
    """Every (rendition, chunk) measured once, on every 7th frame, with its tool and command."""
    assert {(t.rendition_id, t.chunk.index) for t in tasks} == {
        (r.pk, c.index) for r in renditions for c in chunks
    }
    for task in tasks:
        assert task.state == QualityTaskState.DONE, task.error
        assert set(task.scores) == {"vmaf", "psnr", "ssim"}
        sample = metrics.sampled_indices(task.chunk.frame_count, 7)
        assert sample[:2] == [3, 10] and task.frames == len(sample) and task.frame_scores["step"] == 7
        assert metrics.index_unpack(task.frame_scores["index"]) == sample
        assert (task.compared_width, task.compared_height) == (854, 480)
        assert "libvmaf" in task.tool and task.attempts == 1 and task.cpu_s > 0
        assert task.command.startswith(qc_binary())
    # One ffmpeg run per chunk measured its three renditions.
    assert len({t.rq_id for t in tasks}) == len(chunks)



def _check_scores(job, renditions, tasks) -> None:
    """Whole-rendition figures from every sampled frame, and the events that announce them."""
    assert job_quality_state(job) == "done"
    for rendition in renditions:
        scores = rendition_scores(rendition)
        assert set(scores) == {"vmaf", "psnr", "ssim"}
        assert all(set(s) == {"mean", "p5"} and s["p5"] <= s["mean"] for s in scores.values())
        # Whole-rendition figures come from every frame of every chunk, not from chunk summaries.
        own = [t for t in tasks if t.rendition_id == rendition.pk]
        frames = {m: [v for t in sorted(own, key=lambda t: t.chunk.index)
                      for v in metrics.frames_unpack(t.frame_scores[m])] for m in scores}  # fmt: skip
        sampled = sum(t.frames for t in own)
        for metric, values in frames.items():
            assert len(values) == sampled
            expected = metrics.summarize(values)
            assert scores[metric]["mean"] == pytest.approx(expected["mean"])
            assert scores[metric]["p5"] == pytest.approx(expected["p5"])
        assert RenditionQuality.objects.get(rendition=rendition).frames == sampled
    vmaf = [rendition_scores(r)["vmaf"]["mean"] for r in renditions]
    assert vmaf[0] < vmaf[-1], "the 240p rung, upscaled, scores below the 480p one"

    measured = Event.objects.filter(type="rendition.quality_measured", subject_id=str(job.pk))
    assert sorted(e.payload["rendition"] for e in measured) == sorted(r.name for r in renditions)
    assert all("vmaf" in e.payload and "libvmaf" in e.payload["tool"] for e in measured)
    assert (
        Event.objects.filter(
            type="job.quality_finished", subject_id=str(job.pk), payload__state="done"
        ).count()
        == 1
    )



def _check_lineage(job, tasks, s3) -> None:
    # Lineage: one artifact per measurement, made from the unit's output, stored in S3.
    artifacts = list(Artifact.objects.filter(job=job, kind=Artifact.Kind.QC))
    assert len(artifacts) == len(tasks)
    for artifact in artifacts:
        assert (
            artifact.inputs["ffmpeg"]
            and artifact.inputs["command"]
            and artifact.inputs["range"]["frame_count"]
        )
        assert [p.kind for p in artifact.parents.all()] == [Artifact.Kind.UNIT]
    stored = json.loads(s3.get_object(Bucket=settings.S3_BUCKET_MEDIA, Key=artifacts[0].key)["Body"].read())
    assert len(stored["per_frame"]["vmaf"]) == len(stored["per_frame"]["frame"]) == stored["frames"]
    assert stored["step"] == 7 and stored["per_frame"]["frame"][:2] == [3, 10]
    assert all(a.inputs["sampled"]["step"] == 7 and a.inputs["reference"] in ("cache", "source") for a in artifacts)
    assert all(len(a.inputs["batch"]) == 3 for a in artifacts)



def _check_pages(job, renditions, tasks, *, client, publisher, make_user, max_queries) -> None:
    # The owner sees the heatmap (one cell per measurement) and the rate-quality chart.
    client.force_login(publisher)
    page = client.get(reverse("studio:asset", args=[job.asset_id])).content.decode()
    assert 'class="qc-heatmap"' in page and 'class="qc-chart"' in page
    assert page.count('<g class="qc-cell"') == len(tasks)
    assert "VMAF mean:" in page and "model vmaf_v0.6.1" in page and "854×480" in page
    assert all(r.name in page for r in renditions)
    assert page.count('<g class="qc-point"') == len(renditions)
    # Another publisher gets nothing; operations staff see the same pictures on the console.
    client.force_login(make_user("stranger", role=Role.PUBLISHER))
    assert client.get(reverse("studio:asset", args=[job.asset_id])).status_code == 404
    client.force_login(make_user("ops", role=Role.OPERATIONS))
    with max_queries(MAX_QUERIES["console:job"]):
        console = client.get(reverse("console:job", kwargs={"job_id": job.pk})).content.decode()
    assert console.count('<g class="qc-cell"') == len(tasks) and 'class="qc-chart"' in console


def test_without_libvmaf_psnr_and_ssim_are_measured_and_labelled(
    tmp_path, publisher, upload, run_workers, s3, client, two_second_chunks, plain_ffmpeg
):
    clip = make_clip(tmp_path / "small.mp4", duration=2, width=320, height=240, fps=25)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id

    run_workers(2, env={"REELFLOW_QC_FFMPEG": plain_ffmpeg})

    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    tasks = list(QualityTask.objects.filter(job=job))
    assert tasks and all(t.state == QualityTaskState.DONE for t in tasks)
    assert all(set(t.scores) == {"psnr", "ssim"} and "no libvmaf" in t.tool for t in tasks)
    for rendition in videos(job):
        assert set(rendition_scores(rendition)) == {"psnr", "ssim"}
    assert job_quality_state(job) == "done"
    client.force_login(publisher)
    page = client.get(reverse("studio:asset", args=[job.asset_id])).content.decode()
    assert "PSNR-Y (dB) mean:" in page and "the measuring ffmpeg has no libvmaf" in page
    assert "VMAF mean:" not in page and 'class="qc-chart"' in page


def test_a_failing_measurement_marks_itself_failed_and_never_the_job(
    tmp_path, publisher, upload, run_workers, s3, client, two_second_chunks
):
    broken = fake_ffmpeg(tmp_path, 'echo "Invalid data found when processing input" >&2; exit 1')
    clip = make_clip(tmp_path / "clip.mp4", duration=4, width=320, height=240, fps=25)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id

    run_workers(2, env={"REELFLOW_QC_FFMPEG": broken})

    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    assert job.failure_reason == ""
    tasks = list(QualityTask.objects.filter(job=job))
    assert len(tasks) == 2
    for task in tasks:
        assert task.state == QualityTaskState.FAILED and task.attempts == 1, (
            "a permanent error is not retried"
        )
        assert "not a media file, or its data is corrupt" in task.error
    assert job_quality_state(job) == "failed"
    assert all(rendition_scores(r) == {} for r in videos(job))
    assert Event.objects.filter(type="rendition.quality_failed", subject_id=str(job.pk)).exists()
    client.force_login(publisher)
    page = client.get(reverse("studio:asset", args=[job.asset_id])).content.decode()
    assert "Some measurements failed" in page and page.count('class="qc-cell qc-failed"') == 2


def test_a_tiny_source_is_measured_without_vmaf_and_publishes(tmp_path, publisher, upload, run_workers, s3):
    """libvmaf crashes on 16-pixel pictures: such a source gets PSNR and SSIM, at once, and the
    job is not held up by retries of a crash."""
    clip = make_clip(tmp_path / "tiny.mp4", duration=2, width=16, height=16, fps=25)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id

    run_workers(2)

    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    tasks = list(QualityTask.objects.filter(job=job))
    assert tasks and all(t.state == QualityTaskState.DONE and t.attempts == 1 for t in tasks)
    assert all(set(t.scores) == {"psnr", "ssim"} and "under 32 pixels" in t.tool for t in tasks)
    assert job_quality_state(job) == "done"


def test_a_transient_failure_is_retried_and_then_measured(
    tmp_path, publisher, upload, run_workers, redis_conn, s3, two_second_chunks
):
    flaky = fake_ffmpeg(
        tmp_path,
        f'if [ ! -e "{tmp_path}/failed-once" ]; then touch "{tmp_path}/failed-once"; '
        f'echo "Connection refused" >&2; exit 1; fi\nexec {DEBIAN_FFMPEG} "$@"',
    )
    clip = make_clip(tmp_path / "clip.mp4", duration=2, width=320, height=240, fps=25)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    env = {"REELFLOW_QC_FFMPEG": flaky}

    run_workers(2, env=env)  # encodes; the first measurement fails and is scheduled again

    task = QualityTask.objects.get(job_id=job_id)
    assert task.state == QualityTaskState.QUEUED and "connection refused" in task.error
    assert EncodeJob.objects.get(pk=job_id).state == JobState.PUBLISHED
    # RQ's scheduler (inside a worker, as the Procfile runs it) puts the retry back after 5 s.
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "quality", "--with-scheduler"],
        cwd=ROOT, env=worker_env(env), stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(
            lambda: QualityTask.objects.filter(pk=task.pk, state__in=[QualityTaskState.DONE, QualityTaskState.FAILED]).exists(),
            timeout=90, interval=0.5, message="the retried measurement",
        )  # fmt: skip
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    task.refresh_from_db()
    assert task.state == QualityTaskState.DONE and task.attempts == 2 and task.error == ""
    assert job_quality_state(EncodeJob.objects.get(pk=job_id)) == "done"


def test_restart_of_a_job_held_by_a_failed_measurement_measures_again_and_publishes(
    tmp_path, publisher, upload, run_workers, s3, two_second_chunks, make_user
):
    import io

    from django.core.management import call_command

    from pipeline.models import Rule, RuleKind, RuleSet, Unit

    operator = make_user("olga", role=Role.OPERATIONS)

    rule_set = RuleSet.objects.create(name="Measured at all")
    rule_set.publishers.add(publisher)
    Rule.objects.create(rule_set=rule_set, kind=RuleKind.QUALITY_MIN, metric="psnr", threshold=10, min_height=0)
    broken = fake_ffmpeg(tmp_path, 'echo "Invalid data found when processing input" >&2; exit 1')
    clip = make_clip(tmp_path / "clip.mp4", duration=4, width=320, height=240, fps=25)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id

    run_workers(2, env={"REELFLOW_QC_FFMPEG": broken})
    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.HELD, job.failure_reason
    assert job_quality_state(job) == "failed"
    units_before = dict(Unit.objects.filter(job=job).values_list("pk", "finished_at"))

    out = io.StringIO()
    call_command("job", "restart", str(job_id), "--as", operator.username, stdout=out)
    names = ", ".join(r.name for r in videos(job))
    assert f"restarted from its check step; quality measured again for {names}" in out.getvalue()
    job.refresh_from_db()
    assert job.state == JobState.CHECKING and job_quality_state(job) == "pending"
    restarted = Event.objects.filter(type="job.restarted", subject_id=str(job_id)).latest("id")
    assert restarted.payload["remeasured"] == [r.name for r in videos(job)]

    run_workers(2)  # the real QC ffmpeg now
    job.refresh_from_db()
    assert job.state == JobState.PUBLISHED, job.failure_reason
    assert job_quality_state(job) == "done"
    assert all(rendition_scores(r)["psnr"]["mean"] > 10 for r in videos(job))
    assert dict(Unit.objects.filter(job=job).values_list("pk", "finished_at")) == units_before, (
        "nothing was encoded again"
    )
