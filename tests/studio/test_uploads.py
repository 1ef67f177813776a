"""Uploads through the studio's API against real S3: the browser's path, step by step, with a
Django test client for the JSON calls and plain HTTP PUTs of the parts."""

import urllib.parse

import pytest
import requests
from botocore.exceptions import ClientError
from django.conf import settings

from core.models import Event
from pipeline import events
from pipeline.models import Asset, EncodeJob, IngestEvent
from studio.models import UploadSession, UploadState
from tests.pipeline.clips import make_png, make_text
from tests.studio.conftest import MIB, fake_video

pytestmark = pytest.mark.django_db


def test_parts_go_straight_to_s3_and_completion_starts_one_job(tmp_path, studio_api, alice, s3):
    clip = fake_video(tmp_path / "holiday_trip.mp4", 11 * MIB)

    started = studio_api.start(clip, title="Holiday: trip ünïcode", profile="fast")
    assert started.status_code == 201, started.content
    session = started.json()
    assert session["partsTotal"] == 3 and session["partSize"] == 5 * MIB and not session["resumed"]
    assert session["key"].startswith("uploads/alice/") and session["key"].endswith("/holiday_trip.mp4")

    urls = studio_api.sign(session, [1, 2, 3])
    for url in urls.values():
        parsed = urllib.parse.urlparse(url)
        query = urllib.parse.parse_qs(parsed.query)
        assert url.startswith(settings.S3_PUBLIC_ENDPOINT_URL)
        assert parsed.path == f"/{settings.S3_BUCKET_INGEST}/{urllib.parse.quote(session['key'])}"
        assert query["X-Amz-Expires"] == [str(settings.STUDIO_UPLOAD_PART_URL_SECONDS)]
        assert query["uploadId"] and query["partNumber"]

    studio_api.put_parts(session, clip, [1, 2, 3])
    completed = studio_api.post(session["completeUrl"])
    assert completed.status_code == 200, completed.content
    asset = Asset.objects.get(pk=completed.json()["asset"])
    assert asset.publisher == alice and asset.title == "Holiday: trip ünïcode"
    assert asset.source_size == clip.stat().st_size
    job = EncodeJob.objects.get(asset=asset)
    assert job.profile.slug == "fast"
    assert IngestEvent.objects.get(job=job).source == IngestEvent.Source.STUDIO
    head = s3.head_object(Bucket=settings.S3_BUCKET_INGEST, Key=session["key"])
    assert head["ContentLength"] == clip.stat().st_size and head["Metadata"]["profile"] == "fast"
    assert Event.objects.filter(type="upload.completed", subject_id=str(asset.pk)).exists()

    # The filer webhook announces the same object later: a duplicate, no second job.
    late = events.object_created_receive(
        created=events.ObjectCreated(bucket=settings.S3_BUCKET_INGEST, key=session["key"]),
        source=IngestEvent.Source.FILER,
    )
    assert late is None and EncodeJob.objects.count() == 1
    # Completing twice (a retried request) answers the same asset.
    again = studio_api.post(session["completeUrl"])
    assert again.status_code == 200 and again.json()["asset"] == asset.pk


def test_choosing_the_same_file_again_resumes_from_the_stored_parts(tmp_path, studio_api):
    clip = fake_video(tmp_path / "long.mov", 11 * MIB)
    session = studio_api.start(clip).json()
    studio_api.put_parts(session, clip, [2])

    resumed = studio_api.start(clip, title="ignored: the metadata is fixed")
    assert resumed.status_code == 200
    body = resumed.json()
    assert body["resumed"] and body["id"] == session["id"]
    assert body["partsStored"] == [{"number": 2, "size": 5 * MIB}]

    studio_api.put_parts(body, clip, [1, 3])
    assert studio_api.post(body["completeUrl"]).status_code == 200
    assert UploadSession.objects.get().state == UploadState.COMPLETED


def test_a_different_file_with_the_same_name_starts_a_new_upload(tmp_path, studio_api):
    clip = fake_video(tmp_path / "same.mp4", 6 * MIB)
    first = studio_api.start(clip).json()
    other = studio_api.start(clip, last_modified=1_800_000_000_000).json()
    assert other["id"] != first["id"] and not other["resumed"]


def test_completing_with_parts_missing_names_them(tmp_path, studio_api):
    clip = fake_video(tmp_path / "gap.mp4", 11 * MIB)
    session = studio_api.start(clip).json()
    studio_api.put_parts(session, clip, [1, 3])
    answer = studio_api.post(session["completeUrl"])
    assert answer.status_code == 409
    assert answer.json()["error"] == "incomplete" and answer.json()["missing"] == [2]


def test_cancel_aborts_the_multipart_upload(tmp_path, studio_api, s3):
    clip = fake_video(tmp_path / "cancel.mp4", 6 * MIB)
    session = studio_api.start(clip).json()
    studio_api.put_parts(session, clip, [1])
    assert studio_api.post(session["abortUrl"]).json()["state"] == UploadState.ABORTED
    row = UploadSession.objects.get()
    with pytest.raises(ClientError) as raised:
        s3.list_parts(Bucket=row.bucket, Key=row.key, UploadId=row.upload_id)
    assert raised.value.response["Error"]["Code"] == "NoSuchUpload"
    refused = studio_api.post(session["partsUrl"], {"parts": [2]})
    assert refused.status_code == 409 and refused.json()["error"] == "closed"


@pytest.mark.parametrize(
    ("make", "name", "message"),
    [
        (lambda p: make_text(p), "notes.txt", "video file extension"),
        (lambda p: make_png(p), "picture.mp4", "does not start like any video container"),
        (lambda p: make_text(p), "shopping.mkv", "does not start like any video container"),
    ],
)
def test_not_a_video_is_refused_before_any_byte_is_sent(tmp_path, studio_api, make, name, message):
    path = make(tmp_path / name)
    answer = studio_api.start(path)
    assert answer.status_code == 415
    assert answer.json()["error"] == "not_video" and message in answer.json()["message"]
    assert not UploadSession.objects.exists()


def test_bytes_that_are_not_a_video_are_refused_and_deleted_at_completion(tmp_path, studio_api, s3):
    """A browser that lies about the first bytes: the server reads them back from S3."""
    honest = fake_video(tmp_path / "liar.mp4", 1000)
    session = studio_api.start(honest).json()
    url = studio_api.sign(session, [1])[1]
    assert requests.put(url, data=b"#!/bin/sh\necho not a video\n" * 40, timeout=10).status_code == 200
    # The part is smaller than announced: the server sees that first.
    assert studio_api.post(session["completeUrl"]).status_code == 409
    assert requests.put(url, data=(b"#!/bin/sh\n" * 100), timeout=10).status_code == 200
    answer = studio_api.post(session["completeUrl"])
    assert answer.status_code == 415 and answer.json()["error"] == "not_video", answer.json()
    row = UploadSession.objects.get()
    assert row.state == UploadState.REJECTED
    with pytest.raises(ClientError):
        s3.head_object(Bucket=row.bucket, Key=row.key)
    assert not Asset.objects.exists()


def test_too_large_is_refused(tmp_path, studio_api, settings):
    settings.REELFLOW_MAX_UPLOAD_BYTES = 1 * MIB
    answer = studio_api.start(fake_video(tmp_path / "big.mp4", 2 * MIB))
    assert answer.status_code == 413
    assert answer.json()["error"] == "too_large" and "1.0 MiB" in answer.json()["message"]


def test_quota_counts_stored_sources_and_uploads_in_flight(tmp_path, studio_api, settings, make_asset, alice):
    settings.STUDIO_QUOTA_BYTES = 10 * MIB
    make_asset(alice)  # 1000 bytes stored
    assert studio_api.start(fake_video(tmp_path / "a.mp4", 6 * MIB)).status_code == 201
    answer = studio_api.start(fake_video(tmp_path / "b.mp4", 4 * MIB))
    assert answer.status_code == 403
    assert answer.json()["error"] == "quota_exceeded" and "quota is left" in answer.json()["message"]


def test_an_expired_session_refuses_to_sign_and_aborts_its_parts(tmp_path, studio_api, s3):
    from datetime import timedelta

    from django.utils import timezone

    clip = fake_video(tmp_path / "slow.mp4", 6 * MIB)
    session = studio_api.start(clip).json()
    UploadSession.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    answer = studio_api.post(session["partsUrl"], {"parts": [1]})
    assert answer.status_code == 410 and answer.json()["error"] == "expired"
    assert "Choose the file again" in answer.json()["message"]
    assert UploadSession.objects.get().state == UploadState.EXPIRED
    # Choosing the file again starts a fresh upload.
    again = studio_api.start(clip).json()
    assert again["id"] != session["id"] and not again["resumed"]


def test_expiry_sweep_aborts_only_sessions_past_their_time(tmp_path, studio_api):
    from datetime import timedelta

    from django.utils import timezone

    from studio.services import upload_sessions_expire

    old = studio_api.start(fake_video(tmp_path / "old.mp4", 1000)).json()
    fresh = studio_api.start(fake_video(tmp_path / "fresh.mp4", 1000)).json()
    UploadSession.objects.filter(pk=old["id"]).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert upload_sessions_expire() == 1
    assert UploadSession.objects.get(pk=old["id"]).state == UploadState.EXPIRED
    assert UploadSession.objects.get(pk=fresh["id"]).state == UploadState.UPLOADING


def test_another_publisher_cannot_sign_complete_or_cancel_my_upload(tmp_path, studio_api, bob, client):
    session = studio_api.start(fake_video(tmp_path / "mine.mp4", 1000)).json()
    client.force_login(bob)
    for url, body in [
        (session["partsUrl"], {"parts": [1]}),
        (session["completeUrl"], {}),
        (session["abortUrl"], {}),
    ]:
        assert client.post(url, body, content_type="application/json").status_code == 404
    assert UploadSession.objects.get().state == UploadState.UPLOADING


@pytest.mark.parametrize(
    "body",
    [
        {"parts": []},
        {"parts": [0]},
        {"parts": [2]},
        {"parts": ["1"]},
        {"parts": list(range(1, 102))},
        {"nothing": True},
    ],
)
def test_signing_validates_part_numbers(tmp_path, studio_api, body):
    session = studio_api.start(fake_video(tmp_path / "one.mp4", 1000)).json()
    answer = studio_api.post(session["partsUrl"], body)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid"


def test_start_validates_its_input(studio_api):
    from django.urls import reverse

    url = reverse("studio:upload_start")
    assert studio_api.client.post(url, "not json", content_type="application/json").status_code == 400
    bad = studio_api.post(url, {"filename": "a.mp4", "size": "12", "head": ""})
    assert bad.status_code == 400 and "'size'" in bad.json()["message"]
    unknown = studio_api.post(
        url, {"filename": "a.mp4", "size": 12, "profile": "nope", "head": "AAAAGGZ0eXBpc29t"}
    )
    assert unknown.status_code == 400 and "profile" in unknown.json()["message"]


def test_part_size_keeps_parallel_slots_busy_and_respects_s3_limits(settings):
    from studio.services import part_size_for

    settings.STUDIO_UPLOAD_PART_BYTES = 16 * MIB
    settings.STUDIO_UPLOAD_PARALLEL_PARTS = 4
    assert part_size_for(1000) == 5 * MIB  # S3's minimum
    assert part_size_for(64 * MIB) == 8 * MIB  # eight parts for four slots
    assert part_size_for(10 * 1024 * MIB) == 16 * MIB  # the setting
    assert part_size_for(5 * 1024**4) >= 5 * 1024**4 / 10_000  # at most 10,000 parts


def test_start_signs_the_first_parts_so_small_files_need_no_signing_call(tmp_path, studio_api):
    clip = fake_video(tmp_path / "small.mp4", 11 * MIB)
    session = studio_api.start(clip).json()
    assert sorted(session["partUrls"]) == ["1", "2", "3"]
    for number, url in session["partUrls"].items():
        n = int(number)
        data = clip.read_bytes()[(n - 1) * session["partSize"] : n * session["partSize"]]
        assert requests.put(url, data=data, timeout=30).status_code == 200
    assert studio_api.post(session["completeUrl"]).status_code == 200
    # Resuming signs only what is missing.
    other = fake_video(tmp_path / "other.mp4", 11 * MIB)
    first = studio_api.start(other).json()
    studio_api.put_parts(first, other, [1, 3])
    resumed = studio_api.start(other).json()
    assert resumed["resumed"] and sorted(resumed["partUrls"]) == ["2"]
