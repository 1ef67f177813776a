"""Standard Webhooks signing (verified with the `standardwebhooks` library a receiver would use)
and the asset block deliveries carry: the asset's state and playback URLs."""

import json

import pytest
import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core.services import event_record
from delivery.services import asset_delivery_ensure
from pipeline.models import AssetState, JobState
from tests.factories import AssetFactory, EncodeJobFactory
from webhooks import services
from webhooks.models import Delivery, DeliveryState


def _published_asset(owner):
    asset = AssetFactory(publisher=owner, state=AssetState.READY, title="Launch")
    job = EncodeJobFactory(asset=asset, state=JobState.PUBLISHED)
    job.master_playlist_key = f"published/{asset.pk}/{job.pk}/master.m3u8"
    job.dash_manifest_key = f"published/{asset.pk}/{job.pk}/manifest.mpd"
    job.save(update_fields=["master_playlist_key", "dash_manifest_key"])
    return asset, job


def test_standard_endpoint_deliveries_verify_with_the_standardwebhooks_library(pub, ladders, receiver, run_default_worker):
    server = receiver()
    endpoint, secret = services.endpoint_create(owner=pub, url=server.url, signing="standard")
    assert secret.startswith("whsec_")
    asset, job = _published_asset(pub)
    event = event_record(type="job.published", subject=job, owner=pub, payload={"asset": asset.pk})

    run_default_worker()

    request = server.requests[0]
    headers, body = request["headers"], request["body"]
    delivery = Delivery.objects.get(event=event, endpoint=endpoint)
    assert headers["webhook-id"] == str(delivery.key) and "Reelflow-Signature" not in headers
    document = Webhook(secret).verify(body, headers)
    assert document["type"] == "job.published"
    block = document["asset"]
    assert block["id"] == asset.pk and block["state"] == "ready" and block["title"] == "Launch"
    playback = block["playback"]
    assert playback["playback_id"] == asset_delivery_ensure(asset).playback_id
    assert "/play/" in playback["hls"] and playback["dash"].endswith("/manifest.mpd") and playback["expires_at"]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"ready", b"fails"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(body, headers)
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED


def test_the_body_is_fixed_when_the_event_is_recorded(pub, ladders, receiver, run_default_worker):
    """Every attempt sends the same bytes, even if the asset changed meanwhile."""
    server = receiver(500)
    endpoint, _ = services.endpoint_create(owner=pub, url=server.url)
    asset, job = _published_asset(pub)
    event_record(type="job.published", subject=job, owner=pub, payload={"asset": asset.pk})
    run_default_worker()
    asset.state = AssetState.FAILED
    asset.save(update_fields=["state"])
    delivery = Delivery.objects.get(endpoint=endpoint)
    services.delivery_redeliver(delivery=delivery, actor=pub)
    run_default_worker()
    assert len(server.requests) == 2 and server.requests[0]["body"] == server.requests[1]["body"]
    assert json.loads(server.requests[1]["body"])["asset"]["state"] == "ready"


def test_rotation_of_a_standard_secret_signs_with_both(pub, receiver, run_default_worker):
    server = receiver()
    endpoint, old = services.endpoint_create(owner=pub, url=server.url, signing="standard")
    new = services.endpoint_secret_rotate(endpoint=endpoint, actor=pub, overlap_seconds=24 * 3600)
    event_record(type="asset.ready", subject=("pipeline.asset", 999), owner=pub, payload={})
    run_default_worker()
    headers, body = server.requests[0]["headers"], server.requests[0]["body"]
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)


def test_api_creates_lists_and_deletes_endpoints(pub, receiver, live_server, settings):
    from api.services import token_create

    _, token = token_create(publisher=pub, name="ci", scope="write")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    created = api.post(f"{live_server.url}/api/v1/webhooks", json={"url": receiver().url, "signing": "standard"}, timeout=10)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["signing"] == "standard" and body["secret"].startswith("whsec_")
    listed = api.get(f"{live_server.url}/api/v1/webhooks", timeout=10).json()
    assert [e["id"] for e in listed] == [body["id"]] and listed[0]["secret"] is None
    bad = api.post(f"{live_server.url}/api/v1/webhooks", json={"url": "ftp://x", "signing": "standard"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid"
    assert api.delete(f"{live_server.url}/api/v1/webhooks/{body['id']}", timeout=10).status_code == 204
    assert api.get(f"{live_server.url}/api/v1/webhooks", timeout=10).json() == []
