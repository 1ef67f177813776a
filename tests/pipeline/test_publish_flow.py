"""Publish rules, review and restart on real encodes: real clips in the session's S3, real
RQ burst workers running ffmpeg, the console's forms posted by an operations user.

Faults are injected through the database (a chunk's planned frame count made wrong, a stored
output deleted), never by mocking the code under test.
"""

from __future__ import annotations

import io
import subprocess
import sys

import m3u8
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from core.models import Event
from core.roles import Role
from pipeline.models import (
    Artifact,
    Chunk,
    EncodeJob,
    JobState,
    Rendition,
    Review,
    Rule,
    RuleKind,
    RuleSet,
    Unit,
    UnitState,
    VideoRenditionSpec,
)
from pipeline.services import rules as rules_services
from pipeline.services.actions import job_restart
from pipeline.services.jobs import job_cancel, job_fail
from pipeline.services.packaging import job_packaged
from pipeline.steps import units as unit_step
from tests.conftest import ENCODE_LANE_1, ROOT, worker_env
from tests.pipeline.clips import make_clip
from tests.pipeline.test_pipeline_e2e import announce

pytestmark = [pytest.mark.slow, ENCODE_LANE_1]


@pytest.fixture
def small_chunks(settings):
    settings.REELFLOW_CHUNK_SECONDS = 2
    settings.REELFLOW_SEGMENT_SECONDS = 2


@pytest.fixture
def operator(make_user):
    return make_user("olga", role=Role.OPERATIONS)


@pytest.fixture
def ops_client(operator):
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def verified_rule(publisher):
    """A rule set attached to the test's publisher: "publisher is verified"."""
    rule_set = RuleSet.objects.create(name="Verified publishers only")
    rule_set.publishers.add(publisher)
    Rule.objects.create(rule_set=rule_set, kind=RuleKind.PUBLISHER_VERIFIED)
    return rule_set


def run_queue(*queues: str) -> None:
    subprocess.run([sys.executable, "manage.py", "rqworker", *queues, "--burst"], cwd=ROOT, env=worker_env(),
                   stdout=subprocess.DEVNULL, check=True, timeout=300)


def started_units_since(job_id: int, event_id: int) -> list[int]:
    return sorted(
        int(e.subject_id) for e in Event.objects.filter(type="unit.started", pk__gt=event_id, payload__job=job_id)
    )


def last_event_id() -> int:
    return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_failing_rule_holds_the_job_and_an_approval_publishes_it(
    tmp_path, publisher, upload, run_workers, s3, small_chunks, verified_rule, ops_client, operator, make_user
):
    clip = make_clip(tmp_path / "held.mp4", duration=4, width=640, height=360)  # 240p and 360p rungs fit
    job_id = announce(upload(clip, publisher, profile="fast", title="Held clip")).job_id
    run_workers(2)

    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.HELD, job.failure_reason
    assert job.failure_reason == f"Held for review: Publisher is verified: {publisher.username} is not verified"
    assert job.asset.state == "held"
    evaluation = job.evaluations.get()
    failed = [r for r in evaluation.results if not r["passed"]]
    assert [r["label"] for r in failed] == ["Publisher is verified"]
    # The shipped baseline ran on the real encode too, and passed.
    assert {r["label"] for r in evaluation.results if r["passed"]} >= {"Every rendition valid"}
    assert not job.published_prefix

    # The publisher sees why; operations staff see each rule with its measured value.
    owner = Client()
    owner.force_login(publisher)
    page = owner.get(reverse("studio:asset", args=[job.asset_id])).content.decode()
    assert "Held for review" in page and "is not verified" in page
    page = ops_client.get(reverse("console:job", kwargs={"job_id": job_id})).content.decode()
    assert "rule-fail" in page and f"{publisher.username} is not verified" in page and 'id="review-form"' in page

    # A decision needs a reason.
    response = ops_client.post(reverse("console:job_review", kwargs={"job_id": job_id}),
                               {"decision": "approve", "reason": ""}, follow=True)
    assert "Nothing was decided" in response.content.decode()
    assert EncodeJob.objects.get(pk=job_id).state == JobState.HELD

    ops_client.post(reverse("console:job_review", kwargs={"job_id": job_id}),
                    {"decision": "approve", "reason": "Known partner, verification pending"})
    assert EncodeJob.objects.get(pk=job_id).state == JobState.PUBLISHING
    run_workers(1)

    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED
    assert job.published_prefix == f"published/{job.asset_id}/{job.pk}"
    assert job.master_playlist_key == f"{job.published_prefix}/master.m3u8"
    master = s3.get_object(Bucket=settings.S3_BUCKET_MEDIA, Key=job.master_playlist_key)["Body"].read().decode()
    variants = m3u8.loads(master).playlists
    assert len(variants) == 2
    for variant in variants:  # every playlist the master names was copied beside it
        s3.head_object(Bucket=settings.S3_BUCKET_MEDIA, Key=f"{job.published_prefix}/{variant.uri}")
    review = Review.objects.get(job=job)
    assert (review.decision, review.actor, review.reason) == ("approve", operator, "Known partner, verification pending")
    types = list(Event.objects.filter(subject_type="pipeline.encodejob", subject_id=str(job_id)).order_by("id")
                 .values_list("type", flat=True))
    for expected in ("job.packaged", "job.rules_evaluated", "job.held", "job.approved", "job.publishing", "job.published"):
        assert expected in types, expected
    assert types.index("job.held") < types.index("job.approved") < types.index("job.published")
    assert Event.objects.filter(type="asset.ready", subject_id=str(job.asset_id)).exists()
    # A playable event per rendition came as soon as each was ready, before the job ended.
    playable = list(Event.objects.filter(type="rendition.playable", payload__asset=job.asset_id).order_by("id"))
    assert len(playable) == 3 and all(e.payload["url"].startswith("http") for e in playable)
    published = Event.objects.get(type="job.published", subject_id=str(job_id))
    assert all(e.pk < published.pk for e in playable)

    # Lineage: the 360p rendition was made from its 2 unit outputs, which were made from the
    # uploaded source; the package was made from it. Commands are stored without signatures.
    rendition = Artifact.objects.get(job=job, kind=Artifact.Kind.RENDITION, key__contains="h264-360p")
    page = owner.get(reverse("studio:lineage", args=[job.asset_id, rendition.pk]))
    assert page.status_code == 200
    graph = page.context["graph"]
    kinds = sorted(n.kind for n in graph.nodes)
    assert kinds.count("unit") == 2 and "source" in kinds and "package" in kinds and "published" in kinds
    assert {(a.kind, b.kind) for a, b in graph.edges} >= {("source", "unit"), ("unit", "rendition"),
                                                         ("rendition", "package"), ("package", "published")}
    unit = Artifact.objects.filter(job=job, kind=Artifact.Kind.UNIT).first()
    assert "X-Amz-Signature" not in unit.inputs["command"] and "(signature removed)" in unit.inputs["command"]
    assert "X-Amz-" not in page.content.decode()
    assert Unit.objects.filter(job=job).exclude(command="").exists()
    assert not Unit.objects.filter(job=job, command__contains="X-Amz-Signature").exists()
    stranger = Client()
    stranger.force_login(make_user("another-publisher", role=Role.PUBLISHER))
    assert stranger.get(reverse("studio:lineage", args=[job.asset_id, rendition.pk])).status_code == 404


def test_reject_from_the_cli_ends_the_job_and_tells_the_publisher(
    tmp_path, publisher, upload, run_workers, s3, small_chunks, verified_rule, operator
):
    clip = make_clip(tmp_path / "rejected.mp4", duration=2, width=320, height=240)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    run_workers(2)
    assert EncodeJob.objects.get(pk=job_id).state == JobState.HELD
    # From the command line, as an operator would.
    out = io.StringIO()
    call_command("job", "show", str(job_id), stdout=out)
    assert f"[FAIL] Publisher is verified: {publisher.username} is not verified" in out.getvalue()
    with pytest.raises(CommandError, match="not an active operations user"):
        call_command("job", "reject", str(job_id), "--as", publisher.username, "--reason", "x")
    with pytest.raises(CommandError, match="Give a reason"):
        call_command("job", "reject", str(job_id), "--as", operator.username)
    call_command("job", "reject", str(job_id), "--as", operator.username, "--reason", "Contains a third-party logo",
                 stdout=io.StringIO())
    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.REJECTED and job.asset.state == "rejected" and job.finished_at
    owner = Client()
    owner.force_login(publisher)
    page = owner.get(reverse("studio:asset", args=[job.asset_id])).content.decode()
    assert "Rejected" in page and "Contains a third-party logo" in page


def test_restart_after_verification_publishes_without_encoding_again(
    tmp_path, publisher, upload, run_workers, s3, small_chunks, verified_rule, operator
):
    clip = make_clip(tmp_path / "verify.mp4", duration=4, width=320, height=240)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    run_workers(2)
    assert EncodeJob.objects.get(pk=job_id).state == JobState.HELD
    rules_services.publisher_verification_set(publisher=publisher, verified=True, actor=operator)
    mark = last_event_id()
    assert job_restart(job_id=job_id, actor=operator) == "check"
    run_workers(1)
    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED
    assert started_units_since(job_id, mark) == [], "nothing was re-encoded"
    assert job.evaluations.count() == 2 and job.evaluations.order_by("-id").first().passed


def test_restart_of_a_failed_job_reencodes_only_the_failed_and_the_never_run_units(
    tmp_path, publisher, upload, run_workers, s3, small_chunks, operator
):
    clip = make_clip(tmp_path / "fail-one.mp4", duration=6, width=640, height=360)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    run_queue("ingest")  # planned, units queued, nothing encoded yet
    units = Unit.objects.filter(job_id=job_id)
    assert units.count() == 3 * 2 + 1  # 3 chunks × (240p, 360p) + audio
    # The audio unit encodes as long as the job's chunks add up to; it runs first, before the
    # fault below adds a chunk (the queue may put it anywhere).
    unit_step.unit_run(unit_id=units.get(chunk=None).pk, worker="test")
    # The fault: for one rung only, the last chunk planned a second longer than the source
    # gives (more than the few frames the encode pads); its encodes never validate and the
    # unit fails for good.
    victim = units.filter(rendition__name="h264-240p", chunk__index=2).get()
    true_frames = victim.chunk.frame_count
    other = Chunk.objects.create(job_id=job_id, index=99, start_s=victim.chunk.start_s, end_s=victim.chunk.end_s,
                                 start_frame=victim.chunk.start_frame, frame_count=true_frames + 25)
    Unit.objects.filter(pk=victim.pk).update(chunk=other)
    run_workers(1)

    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.FAILED and "instead of" in job.failure_reason
    states = dict(Unit.objects.filter(job_id=job_id).values_list("pk", "state"))
    assert states[victim.pk] == UnitState.FAILED
    done_before = {pk for pk, state in states.items() if state == UnitState.DONE}
    expected_rerun = sorted(pk for pk, state in states.items() if state != UnitState.DONE)

    # The operator removes the cause (the unit back on its real chunk) and restarts.
    Unit.objects.filter(pk=victim.pk).update(chunk=victim.chunk_id)
    other.delete()
    mark = last_event_id()
    assert job_restart(job_id=job_id, actor=operator) == "encode"
    run_workers(1)

    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    rerun = started_units_since(job_id, mark)
    assert rerun == expected_rerun and victim.pk in rerun
    assert not done_before & set(rerun), "a valid unit was encoded again"
    assembled = [e.payload["rendition"] for e in Event.objects.filter(type="rendition.assembling", pk__gt=mark,
                                                                        payload__asset=job.asset_id)]
    reassembled = set(Rendition.objects.filter(units__pk__in=expected_rerun).values_list("name", flat=True))
    assert sorted(assembled) == sorted(reassembled)


def test_changing_a_rung_and_restarting_reencodes_only_that_rendition(
    tmp_path, publisher, upload, run_workers, s3, small_chunks, verified_rule, operator
):
    clip = make_clip(tmp_path / "change.mp4", duration=4, width=640, height=360)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    run_workers(2)
    assert EncodeJob.objects.get(pk=job_id).state == JobState.HELD
    before = {r.name: r.output_key for r in Rendition.objects.filter(job_id=job_id)}

    VideoRenditionSpec.objects.filter(profile__slug="fast", name="h264-360p").update(crf=30)
    rules_services.publisher_verification_set(publisher=publisher, verified=True, actor=operator)
    changed_units = sorted(Unit.objects.filter(job_id=job_id, rendition__name="h264-360p").values_list("pk", flat=True))
    mark = last_event_id()
    assert job_restart(job_id=job_id, actor=operator) == "encode"
    run_workers(2)

    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    rerun = Event.objects.filter(type="unit.started", pk__gt=mark, payload__job=job_id)
    assert {e.payload["rendition"] for e in rerun} == {"h264-360p"}
    assert rerun.count() == len(changed_units) == 2
    after = {r.name: r for r in Rendition.objects.filter(job_id=job_id)}
    assert after["h264-360p"].params["crf"] == 30
    assert after["h264-360p"].output_key != before["h264-360p"], "a changed rung gets a new key"
    for name in ("h264-240p", "aac-96k"):
        assert after[name].output_key == before[name]
    restarted = Event.objects.get(type="job.restarted", pk__gt=mark)
    assert restarted.payload["changed"] == ["h264-360p"] and restarted.payload["step"] == "encode"


def test_a_repackaged_job_cuts_missing_pictures_from_its_stored_renditions(
    tmp_path, publisher, upload, run_workers, s3, small_chunks, verified_rule, operator
):
    """The assemble steps cut the poster and the sprite; a package step that finds them gone
    (a restart that kept every rendition) cuts them itself, without joining anything again."""
    clip = make_clip(tmp_path / "pictures.mp4", duration=4, width=640, height=360)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    run_workers(2)
    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.HELD
    pictures = [f"{job.output_prefix}/package/{name}" for name in ("poster.jpg", "sprite.jpg")]
    for key in pictures:
        s3.delete_object(Bucket=settings.S3_BUCKET_MEDIA, Key=key)
    job_fail(job_id=job_id, reason="operator stopped it", actor=operator)
    mark = last_event_id()
    assert job_restart(job_id=job_id, actor=operator) == "package"
    run_workers(1)
    assert EncodeJob.objects.get(pk=job_id).state == JobState.HELD  # still not verified
    for key in pictures:
        head = s3.head_object(Bucket=settings.S3_BUCKET_MEDIA, Key=key)
        assert head["ContentLength"] > 1000 and head["ContentType"] == "image/jpeg"
    assert not Event.objects.filter(type="rendition.assembling", pk__gt=mark, payload__asset=job.asset_id).exists()


def _keys(s3, prefix: str) -> list[str]:
    listing = s3.list_objects_v2(Bucket=settings.S3_BUCKET_MEDIA, Prefix=f"{prefix}/")
    return [obj["Key"] for obj in listing.get("Contents", [])]


def test_a_job_whose_rules_pass_is_packaged_straight_into_the_published_prefix(
    tmp_path, publisher, upload, run_workers, s3, small_chunks
):
    """The rules are decided before packaging when nothing they need is pending: the package
    is written where it is published, and nothing is copied after."""
    clip = make_clip(tmp_path / "direct.mp4", duration=4, width=640, height=360)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    run_workers(2)
    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    prefix = f"published/{job.asset_id}/{job.pk}"
    assert job.published_prefix == prefix and job.master_playlist_key == f"{prefix}/master.m3u8"
    assert job.asset.poster_key == f"{prefix}/poster.jpg"
    published = set(_keys(s3, prefix))
    master = m3u8.loads(s3.get_object(Bucket=settings.S3_BUCKET_MEDIA, Key=job.master_playlist_key)["Body"].read().decode())
    named = {f"{prefix}/{p.uri}" for p in master.playlists} | {f"{prefix}/{m.uri}" for m in master.media if m.uri}
    assert named | {f"{prefix}/{n}" for n in ("manifest.mpd", "poster.jpg", "sprite.jpg", "sprite.vtt")} <= published
    # The job's own package folder holds only the pictures the assemble steps cut.
    assert sorted(_keys(s3, f"{job.output_prefix}/package")) == [
        f"{job.output_prefix}/package/poster.jpg", f"{job.output_prefix}/package/sprite.jpg"]
    evaluation = job.evaluations.get()
    assert evaluation.passed
    types = list(Event.objects.filter(subject_type="pipeline.encodejob", subject_id=str(job_id)).order_by("id")
                 .values_list("type", flat=True))
    assert types.index("job.packaging") < types.index("job.rules_evaluated") < types.index("job.packaged") < types.index(
        "job.published")
    assert "job.publishing" not in types  # no promote step
    package = Artifact.objects.get(job=job, key=job.master_playlist_key)
    assert package.kind == Artifact.Kind.PUBLISHED
    assert sorted(package.parents.values_list("kind", flat=True)) == ["rendition", "rendition", "rendition"]
    # The audio rendition is the audio unit's output in its single-file form.
    [audio] = [a for a in package.parents.all() if "/renditions/aac-" in a.key]
    assert list(audio.parents.values_list("kind", flat=True)) == ["audio"]
    # Each rendition is one file in the published package, which the playlists address by range.
    assert {f"{prefix}/{name}.mp4" for name in job.renditions.values_list("name", flat=True)} <= published


def test_a_job_cancelled_while_packaged_in_place_leaves_nothing_published(
    tmp_path, publisher, upload, run_workers, s3, small_chunks, operator, monkeypatch
):
    from pipeline.steps import packaging

    clip = make_clip(tmp_path / "withdrawn.mp4", duration=4, width=320, height=240)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    run_workers(2)
    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED and _keys(s3, job.published_prefix)
    # Fault: the job is packaged again and an operator cancels it while its files are written.
    for key in _keys(s3, job.published_prefix):
        s3.delete_object(Bucket=settings.S3_BUCKET_MEDIA, Key=key)
    EncodeJob.objects.filter(pk=job_id).update(state=JobState.PACKAGING)
    packaged = job_packaged

    def cancelled_first(**kwargs):
        assert kwargs["in_place"] and _keys(s3, job.published_prefix), "written in place"
        job_cancel(job_id=job_id, actor=operator)
        return packaged(**kwargs)

    monkeypatch.setattr(packaging, "job_packaged", cancelled_first)
    packaging.job_package_run(job_id=job_id)
    assert EncodeJob.objects.get(pk=job_id).state == JobState.CANCELLED
    assert _keys(s3, job.published_prefix) == []
