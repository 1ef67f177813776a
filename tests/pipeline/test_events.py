"""Events in: the filer webhook, S3 notification documents, the sweep; duplicates and bad
announcements."""

import json

import pytest
from django.conf import settings
from django.urls import reverse

from core.models import Event
from core.roles import Role
from pipeline import events
from pipeline.management.commands.consume_s3_events import handle_message
from pipeline.models import EncodeJob, IngestEvent

pytestmark = pytest.mark.django_db

TOKEN = {"HTTP_AUTHORIZATION": "Bearer test-events-token"}


def s3_record(bucket: str, key: str, *, name: str = "ObjectCreated:Put", etag: str = "abc") -> dict:
    """One record shaped like a real S3 event notification (version 2.1)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-27T12:00:00.000Z",
        "eventName": name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "reelflow-ingest",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": 1024, "eTag": etag, "sequencer": "0055AED6DCD90281E5"},
        },
    }


def filer_body(bucket: str, key: str) -> dict:
    name = key.rsplit("/", 1)[-1]
    parent = f"/buckets/{bucket}/{key.rsplit('/', 1)[0]}"
    return {
        "key": f"/buckets/{bucket}/{key}",
        "event_type": "create",
        "message": {
            "new_entry": {"name": name, "attributes": {"file_size": 5, "mtime": 1795796538}},
            "new_parent_path": parent,
        },
    }


@pytest.fixture
def alice(make_user):
    return make_user("alice", role=Role.PUBLISHER)


@pytest.fixture
def uploaded(s3, alice):
    key = "uploads/alice/My Clip+1.mp4"
    s3.put_object(Bucket=settings.S3_BUCKET_INGEST, Key=key, Body=b"bytes", Metadata={"profile": "fast"})
    return key


def test_filer_webhook_starts_one_job_and_replays_start_none(client, uploaded, redis_conn):
    body = json.dumps(filer_body(settings.S3_BUCKET_INGEST, uploaded))
    first = client.post(reverse("events:s3"), body, content_type="application/json", **TOKEN)
    assert first.status_code == 202 and len(first.json()["jobs"]) == 1
    again = client.post(reverse("events:s3"), body, content_type="application/json", **TOKEN)
    assert again.status_code == 202 and again.json()["jobs"] == []
    job = EncodeJob.objects.get()
    assert job.profile.slug == "fast" and job.asset.publisher.username == "alice"
    assert job.asset.title == "My Clip+1"


def test_s3_notification_and_filer_event_of_one_object_make_one_job(client, uploaded, redis_conn):
    from urllib.parse import quote_plus

    document = {"Records": [s3_record(settings.S3_BUCKET_INGEST, quote_plus(uploaded))]}
    assert client.post(reverse("events:s3"), json.dumps(document), content_type="application/json", **TOKEN).status_code == 202
    body = json.dumps(filer_body(settings.S3_BUCKET_INGEST, uploaded))
    client.post(reverse("events:s3"), body, content_type="application/json", **TOKEN)
    started, rejected = handle_message(json.dumps(document))
    assert (started, rejected) == (0, [])
    assert EncodeJob.objects.count() == 1
    # The sweep sees the object too (other tests' leftovers in the shared bucket may start jobs
    # of their own, so count this object's jobs only).
    events.ingest_sweep()
    assert EncodeJob.objects.filter(asset__source_key=uploaded).count() == 1


def test_s3_notification_inside_sns_envelope(uploaded, redis_conn):
    from urllib.parse import quote_plus

    document = {"Records": [s3_record(settings.S3_BUCKET_INGEST, quote_plus(uploaded))]}
    envelope = {"Type": "Notification", "MessageId": "1", "Message": json.dumps(document)}
    assert handle_message(json.dumps(envelope)) == (1, [])


@pytest.mark.parametrize(
    "headers", [{}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": "Basic test-events-token"}]
)
def test_unauthenticated_event_is_refused(client, uploaded, headers):
    body = json.dumps(filer_body(settings.S3_BUCKET_INGEST, uploaded))
    response = client.post(reverse("events:s3"), body, content_type="application/json", **headers)
    assert response.status_code == 401
    assert EncodeJob.objects.count() == 0


@pytest.mark.parametrize("body", ["not json", "[]", json.dumps({"Records": "x"}), json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]})])
def test_malformed_event_is_refused_with_400(client, body):
    response = client.post(reverse("events:s3"), body, content_type="application/json", **TOKEN)
    assert response.status_code == 400
    assert "malformed" in response.json()["error"]


def test_event_for_unknown_publisher_is_rejected_and_recorded(client, s3):
    key = "uploads/mallory/x.mp4"
    s3.put_object(Bucket=settings.S3_BUCKET_INGEST, Key=key, Body=b"x")
    body = json.dumps(filer_body(settings.S3_BUCKET_INGEST, key))
    response = client.post(reverse("events:s3"), body, content_type="application/json", **TOKEN)
    assert response.status_code == 422
    assert "mallory" in response.json()["error"]
    assert IngestEvent.objects.get(key=key).outcome.startswith("rejected")
    assert EncodeJob.objects.count() == 0


def test_objects_in_other_buckets_are_ignored(client, s3, alice):
    s3.put_object(Bucket=settings.S3_BUCKET_MEDIA, Key="uploads/alice/a.mp4", Body=b"x")
    body = json.dumps(filer_body(settings.S3_BUCKET_MEDIA, "uploads/alice/a.mp4"))
    assert client.post(reverse("events:s3"), body, content_type="application/json", **TOKEN).status_code == 202
    assert EncodeJob.objects.count() == 0 and IngestEvent.objects.count() == 0


def test_an_object_outside_the_uploads_prefix_is_shown_to_operations(client, s3, alice, make_user):
    key = "elsewhere/a.mp4"
    s3.put_object(Bucket=settings.S3_BUCKET_INGEST, Key=key, Body=b"x")
    body = json.dumps(filer_body(settings.S3_BUCKET_INGEST, key))
    response = client.post(reverse("events:s3"), body, content_type="application/json", **TOKEN)
    assert response.status_code == 422
    assert "move it to uploads/<publisher username>/" in response.json()["error"]
    # A second announcement records nothing twice.
    client.post(reverse("events:s3"), body, content_type="application/json", **TOKEN)
    assert IngestEvent.objects.get(key=key).outcome.startswith("rejected: key 'elsewhere/a.mp4' is outside uploads/")
    logged = Event.objects.get(type="ingest.rejected", payload__key=key)
    assert logged.owner is None and logged.payload["key"] == key

    # (Before the sweep: the page lists the latest rejections, and the sweep also rejects what
    # other tests left in the shared bucket.)
    page = client_as(client, make_user("ops1", role=Role.OPERATIONS)).get(reverse("console:home"))
    assert page.status_code == 200
    assert "Uploads not encoded" in page.content.decode() and "elsewhere/a.mp4" in page.content.decode()

    # Nor does the sweep.
    events.ingest_sweep()
    assert not EncodeJob.objects.filter(asset__source_key=key).exists()
    assert IngestEvent.objects.filter(key=key).count() == 1
    assert Event.objects.filter(type="ingest.rejected", payload__key=key).count() == 1
    publisher_page = client_as(client, alice).get(reverse("console:home"))
    assert publisher_page.status_code in (302, 403), "publishers do not see the operations page"


def test_the_sweep_shows_an_object_no_event_announced_outside_the_prefix(s3, alice, redis_conn):
    s3.put_object(Bucket=settings.S3_BUCKET_INGEST, Key="loose.mp4", Body=b"x")
    events.ingest_sweep()
    assert IngestEvent.objects.get(key="loose.mp4").outcome.startswith("rejected")
    rejected = Event.objects.filter(type="ingest.rejected", payload__key="loose.mp4")
    assert rejected.count() == 1
    events.ingest_sweep()
    assert rejected.count() == 1


def client_as(client, user):
    client.force_login(user)
    return client


def test_sweep_starts_jobs_that_no_event_announced(s3, alice, redis_conn):
    for name in ("a.mp4", "b.mp4"):
        s3.put_object(Bucket=settings.S3_BUCKET_INGEST, Key=f"uploads/alice/sweep-{name}", Body=b"x")
    assert events.ingest_sweep(page_size=1) >= 2
    assert events.ingest_sweep() == 0
    assert EncodeJob.objects.filter(asset__source_key__startswith="uploads/alice/sweep-").count() == 2
