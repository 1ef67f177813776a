"""End to end: a real upload is encoded by real workers, and its events reach a real receiver,
signed, each once per delivery key."""

from collections import Counter

import pytest

from core.models import Event
from pipeline import events
from pipeline.models import EncodeJob, IngestEvent, JobState
from tests.conftest import ENCODE_LANE_1
from tests.pipeline.clips import make_clip
from webhooks import event_types, services
from webhooks.models import Delivery, DeliveryState
from webhooks.verify import verify_webhook

pytestmark = [pytest.mark.slow, ENCODE_LANE_1]


def test_a_real_encode_delivers_its_job_rendition_and_asset_events(
    tmp_path, publisher, upload, run_workers, receiver, settings
):
    settings.REELFLOW_CHUNK_SECONDS = 2
    settings.REELFLOW_SEGMENT_SECONDS = 2
    server = receiver()
    endpoint, secret = services.endpoint_create(owner=publisher, url=server.url)  # the default event types
    key = upload(
        make_clip(tmp_path / "short.mp4", duration=4, width=320, height=240), publisher, profile="fast"
    )
    ingest = events.object_created_receive(
        created=events.ObjectCreated(bucket=settings.S3_BUCKET_INGEST, key=key), source=IngestEvent.Source.CLI
    )

    run_workers(2)

    job = EncodeJob.objects.get(pk=ingest.job_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    owned = list(Event.objects.filter(owner=publisher).order_by("id"))
    expected = [e for e in owned if event_types.subscribes(endpoint.event_types, e.type)]
    deliveries = Delivery.objects.filter(endpoint=endpoint)
    assert sorted(d.event_id for d in deliveries) == [e.pk for e in expected], (
        "one delivery per subscribed event"
    )
    assert all(d.state == DeliveryState.DELIVERED for d in deliveries), [
        (d.event.type, d.last_error) for d in deliveries
    ]

    received = Counter(r["headers"]["Reelflow-Event-Type"] for r in server.requests)
    assert received == Counter(e.type for e in expected)
    for wanted in ("asset.created", "job.created", "rendition.ready", "job.published"):
        assert received[wanted] >= 1, (wanted, received)
    assert not any(t.startswith("unit.") for t in received), "unit events are not in the default set"
    keys = [r["headers"]["Reelflow-Delivery"] for r in server.requests]
    assert sorted(keys) == sorted(str(d.key) for d in deliveries)
    for r in server.requests:
        verify_webhook(
            secret=secret,
            body=r["body"],
            timestamp=r["headers"]["Reelflow-Timestamp"],
            signature=r["headers"]["Reelflow-Signature"],
        )
    published = next(b for b in server.json_bodies() if b["type"] == "job.published")
    assert published["subject"] == {"type": "job", "id": str(job.pk)}
    assert published["data"]["asset"] == job.asset_id
