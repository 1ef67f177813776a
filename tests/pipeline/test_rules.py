"""Publish rules, each with cases that should pass and cases that should fail.

The jobs here are rows made from a real probe of a generated clip (ffprobe, no encode), so
each rule sees exactly the values a real job stores; tests/pipeline/test_publish_flow.py
runs the same rules on real encodes.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import Group

from core.roles import VERIFIED_PUBLISHERS_GROUP, Role
from pipeline import ffmpeg, rules
from pipeline.media import media_info_json
from pipeline.models import (
    Artifact,
    Asset,
    Chunk,
    EncodeJob,
    JobState,
    Profile,
    Rendition,
    RenditionKind,
    RenditionState,
    Rule,
    RuleKind,
    RuleSet,
    Unit,
    UnitState,
)
from pipeline.services import rules as rules_services
from pipeline.services.common import JobActionRefused
from pipeline.services.publishing import job_quality_finished, job_review
from tests.pipeline.clips import make_clip


@pytest.fixture(scope="module")
def probe_json(tmp_path_factory) -> dict:
    clip = make_clip(tmp_path_factory.mktemp("rules") / "src.mp4", duration=4, width=640, height=360, fps=25)
    return media_info_json(ffmpeg.probe(clip))


@pytest.fixture
def job(db, probe_json, make_user):
    """A job as the pipeline leaves it when packaging is done: 2 chunks of 50 frames, two
    video renditions (360p capped at 800 kb/s, 240p at 400 kb/s) and one audio, all valid."""
    from pipeline.ladders import ladders_sync
    from pipeline.models import AudioRenditionSpec, VideoRenditionSpec

    ladders_sync(Profile, VideoRenditionSpec, AudioRenditionSpec)
    RuleSet.objects.all().delete()  # each test says which rules apply (the shipped ones have their own test)
    publisher = make_user("pat", role=Role.PUBLISHER)
    asset = Asset.objects.create(
        publisher=publisher, title="t", source_bucket=settings.S3_BUCKET_INGEST, source_key="uploads/pat/t.mp4",
        duration_s=probe_json["duration"], probe=probe_json,
    )
    job = EncodeJob.objects.create(asset=asset, profile=Profile.objects.get(slug="fast"), chunk_seconds=2,
                                   segment_seconds=2, state=JobState.CHECKING, output_prefix="assets/1/jobs/1")
    chunks = [Chunk.objects.create(job=job, index=i, start_s=2.0 * i, end_s=2.0 * (i + 1), start_frame=50 * i,
                                   frame_count=50) for i in range(2)]
    source_s = probe_json["video"]["duration_s"]
    for name, height, cap, kbps in (("h264-360p", 360, 800, 610), ("h264-240p", 240, 400, 300)):
        r = Rendition.objects.create(
            job=job, kind=RenditionKind.VIDEO, name=name, height=height, width=height * 16 // 9,
            params={"name": name, "codec": "libx264", "height": height, "maxrate_kbps": cap, "bufsize_kbps": cap * 2},
            state=RenditionState.READY, units_total=2, units_done=2, output_key=f"r/{name}.mp4", frame_count=100,
            duration_s=source_s, bitrate_kbps=kbps,
        )
        for c in chunks:
            u = Unit.objects.create(job=job, rendition=r, chunk=c, state=UnitState.DONE, output_key=f"u/{name}/{c.index}")
            Artifact.objects.create(job=job, kind=Artifact.Kind.UNIT, bucket="media", key=u.output_key,
                                    size=kbps * 1000 // 8 * 2, step="encode_unit")
    Rendition.objects.create(job=job, kind=RenditionKind.AUDIO, name="aac-96k", params={"name": "aac-96k"},
                             state=RenditionState.READY, units_total=1, units_done=1, output_key="r/aac.mp4",
                             duration_s=source_s)
    return job


def outcome(job, **rule_fields) -> rules.Outcome:
    rule_set = RuleSet.objects.create(name=f"set {RuleSet.objects.count()}", is_default=True)
    rule = Rule.objects.create(rule_set=rule_set, **rule_fields)
    (result,) = rules.evaluate(job, [rule])
    return result


# --- Every rendition valid ------------------------------------------------------------------


def test_renditions_valid_passes_when_every_rendition_is_ready_with_its_frames(job):
    result = outcome(job, kind=RuleKind.RENDITIONS_VALID)
    assert result.passed, result
    assert result.measured == "3 of 3 renditions valid"


def test_renditions_valid_fails_on_a_short_rendition_and_names_it(job):
    Rendition.objects.filter(job=job, name="h264-240p").update(frame_count=99)
    result = outcome(job, kind=RuleKind.RENDITIONS_VALID)
    assert not result.passed
    assert "h264-240p has 99 frames, planned 100" in result.detail


def test_renditions_valid_fails_on_a_failed_rendition(job):
    Rendition.objects.filter(job=job, name="aac-96k").update(state=RenditionState.FAILED)
    result = outcome(job, kind=RuleKind.RENDITIONS_VALID)
    assert not result.passed and "aac-96k is failed" in result.detail


# --- Duration -------------------------------------------------------------------------------


def test_duration_within_one_frame_passes(job):
    Rendition.objects.filter(job=job, name="h264-360p").update(duration_s=job.asset.probe["video"]["duration_s"] + 0.039)
    assert outcome(job, kind=RuleKind.DURATION_MATCH, tolerance=1).passed


def test_duration_two_frames_off_fails_with_the_measured_offset(job):
    Rendition.objects.filter(job=job, name="h264-360p").update(duration_s=job.asset.probe["video"]["duration_s"] - 0.08)
    result = outcome(job, kind=RuleKind.DURATION_MATCH, tolerance=1)
    assert not result.passed
    assert result.measured.startswith("80 ms off at h264-360p (limit 40 ms)")


def test_duration_tolerance_is_in_frames(job):
    Rendition.objects.filter(job=job, name="h264-360p").update(duration_s=job.asset.probe["video"]["duration_s"] - 0.08)
    assert outcome(job, kind=RuleKind.DURATION_MATCH, tolerance=2).passed


# --- Bitrate cap ----------------------------------------------------------------------------


def test_bitrate_under_caps_passes_and_reports_each(job):
    result = outcome(job, kind=RuleKind.BITRATE_CAP)
    assert result.passed
    assert "h264-360p 610 of 800 kb/s" in result.detail and "peak chunk 610" in result.detail


def test_bitrate_over_cap_beyond_tolerance_and_buffer_fails(job):
    # cap 400 kb/s, +5 % = 420, plus what an 800 kb VBV buffer allows over this 4 s clip: 200.
    Rendition.objects.filter(job=job, name="h264-240p").update(bitrate_kbps=640)
    result = outcome(job, kind=RuleKind.BITRATE_CAP, tolerance=5)
    assert not result.passed
    assert result.measured == "h264-240p averages 640 kb/s, cap 400 kb/s (limit 620 with tolerance and buffer)"


def test_bitrate_within_tolerance_and_buffer_passes(job):
    Rendition.objects.filter(job=job, name="h264-240p").update(bitrate_kbps=615)
    assert outcome(job, kind=RuleKind.BITRATE_CAP, tolerance=5).passed


def test_the_buffer_allowance_vanishes_on_long_content(job):
    # Ten minutes: the buffer allows 800/600 = 1.3 kb/s over the cap, so 430 kb/s fails.
    Rendition.objects.filter(job=job, name="h264-240p").update(bitrate_kbps=430, duration_s=600)
    result = outcome(job, kind=RuleKind.BITRATE_CAP, tolerance=5)
    assert not result.passed and "limit 421" in result.measured


# --- Publisher verified ---------------------------------------------------------------------


def test_unverified_publisher_fails_and_verification_makes_it_pass(job, make_user):
    result = outcome(job, kind=RuleKind.PUBLISHER_VERIFIED)
    assert not result.passed and result.measured == "pat is not verified"
    operator = make_user("olga", role=Role.OPERATIONS)
    rules_services.publisher_verification_set(publisher=job.asset.publisher, verified=True, actor=operator)
    assert job.asset.publisher.groups.filter(name=VERIFIED_PUBLISHERS_GROUP).exists()
    (again,) = rules.evaluate(job, list(Rule.objects.filter(kind=RuleKind.PUBLISHER_VERIFIED)))
    assert again.passed and again.measured == "pat is verified"


# --- Quality (values stored by the quality step; see tests/quality for real measurements) ---


def test_quality_rule_without_measurements_fails_and_says_why(job, settings):
    settings.REELFLOW_QC_MODE = "off"
    result = outcome(job, kind=RuleKind.QUALITY_MIN, metric="vmaf", threshold=80, min_height=360)
    assert not result.passed
    assert "h264-360p: quality measurement is off" in result.measured


def test_quality_rule_that_applies_to_no_rung_passes(job):
    result = outcome(job, kind=RuleKind.QUALITY_MIN, metric="vmaf", threshold=80, min_height=720)
    assert result.passed and result.measured == "no rungs ≥ 720p"


def test_misconfigured_rule_fails_instead_of_passing(job):
    result = outcome(job, kind=RuleKind.QUALITY_MIN, metric="vmaf", threshold=None)
    assert not result.passed and result.measured == "rule misconfigured"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"metric": ""}, "needs a metric"),
        ({"threshold": None}, "needs a threshold"),
        ({"fallback_metric": "psnr"}, "both a fallback metric and its threshold"),
        ({"fallback_metric": "vmaf", "fallback_threshold": 70}, "must differ"),
        ({"metric": "ssim", "threshold": 2}, "between 0 and 1"),
        ({"threshold": 120}, "between 0 and 100"),
    ],
)
def test_rule_validation_says_what_is_wrong(fields, message):
    rule = Rule(kind=RuleKind.QUALITY_MIN, **{"metric": "vmaf", "threshold": 80, **fields})
    with pytest.raises(rules.RuleConfigError, match=message):
        rules.rule_validate(rule)


def test_labels_read_like_the_rule():
    rule = Rule(kind=RuleKind.QUALITY_MIN, metric="vmaf", threshold=80, min_height=720, fallback_metric="psnr",
                fallback_threshold=35)
    assert rules.rule_label(rule) == "VMAF mean ≥ 80.0 for rungs ≥ 720p (else PSNR mean ≥ 35.0 dB)"
    assert rules.rule_label(Rule(kind=RuleKind.DURATION_MATCH, tolerance=2)) == "Duration within 2 frames of the source"


# --- Which rules apply ----------------------------------------------------------------------


def test_rule_sets_apply_by_default_profile_and_publisher(job, make_user):
    default = RuleSet.objects.create(name="every job", is_default=True)
    by_profile = RuleSet.objects.create(name="fast jobs")
    by_profile.profiles.add(job.profile)
    other_profile = RuleSet.objects.create(name="standard jobs")
    other_profile.profiles.add(Profile.objects.get(slug="standard"))
    by_publisher = RuleSet.objects.create(name="pat's jobs")
    by_publisher.publishers.add(job.asset.publisher)
    other_publisher = RuleSet.objects.create(name="someone else's")
    other_publisher.publishers.add(make_user("sam", role=Role.PUBLISHER))
    inactive = RuleSet.objects.create(name="inactive", is_default=True, is_active=False)
    names = [s.name for s in rules.rule_sets_for_job(job)]
    assert names == sorted([default.name, by_profile.name, by_publisher.name])
    assert inactive.name not in names

    Rule.objects.create(rule_set=default, kind=RuleKind.RENDITIONS_VALID)
    Rule.objects.create(rule_set=default, kind=RuleKind.BITRATE_CAP, enabled=False)
    assert [r.kind for r in rules.rules_for_job(job)] == [RuleKind.RENDITIONS_VALID]


# --- The decision ---------------------------------------------------------------------------


def test_failing_rule_holds_the_job_naming_the_rule_and_value(job, redis_conn):
    rule_set = RuleSet.objects.create(name="strict", is_default=True)
    Rule.objects.create(rule_set=rule_set, kind=RuleKind.PUBLISHER_VERIFIED)
    Rule.objects.create(rule_set=rule_set, kind=RuleKind.RENDITIONS_VALID)
    job_quality_finished(job_id=job.pk)
    job.refresh_from_db()
    assert job.state == JobState.HELD
    assert job.failure_reason == "Held for review: Publisher is verified: pat is not verified"
    evaluation = job.evaluations.get()
    assert not evaluation.passed and [r["passed"] for r in evaluation.results] == [False, True]
    assert job.asset.state == "held"


def test_all_rules_passing_moves_the_job_to_publishing(job, redis_conn):
    rule_set = RuleSet.objects.create(name="lenient", is_default=True)
    Rule.objects.create(rule_set=rule_set, kind=RuleKind.RENDITIONS_VALID)
    job_quality_finished(job_id=job.pk)
    job.refresh_from_db()
    assert job.state == JobState.PUBLISHING
    assert job.evaluations.get().passed


def test_review_needs_a_reason_and_a_held_job(job, make_user, redis_conn):
    operator = make_user("olga", role=Role.OPERATIONS)
    with pytest.raises(JobActionRefused, match="only a job held for review"):
        job_review(job_id=job.pk, decision="approve", reason="looks fine", actor=operator)
    EncodeJob.objects.filter(pk=job.pk).update(state=JobState.HELD)
    with pytest.raises(JobActionRefused, match="Give a reason"):
        job_review(job_id=job.pk, decision="approve", reason="  ", actor=operator)
    job_review(job_id=job.pk, decision="reject", reason="logo missing", actor=operator)
    job.refresh_from_db()
    assert job.state == JobState.REJECTED and job.is_final
    assert job.reviews.get().reason == "logo missing"
    assert job.asset.state == "rejected"


def test_shipped_rule_sets_exist_after_migrate(db):
    """The data migration ships them (pytest-django's test database is migrated)."""
    assert Group.objects.filter(name=VERIFIED_PUBLISHERS_GROUP).exists()
    baseline = RuleSet.objects.get(name="Baseline")
    assert baseline.is_default
    assert sorted(baseline.rules.values_list("kind", flat=True)) == sorted(
        [RuleKind.RENDITIONS_VALID, RuleKind.DURATION_MATCH, RuleKind.BITRATE_CAP]
    )
    floor = RuleSet.objects.get(name="Quality floor")
    assert sorted(floor.profiles.values_list("slug", flat=True)) == ["full", "standard"]
