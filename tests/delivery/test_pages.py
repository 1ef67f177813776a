"""The asset page's delivery card: links, policy, takedown and delete, and who may use them."""

import pytest
from django.urls import reverse

from core.models import Event
from core.roles import Role
from delivery.models import AssetDelivery
from pipeline.models import Asset


@pytest.fixture
def ops_client(client, make_user):
    client.force_login(make_user("olga", role=Role.OPERATIONS))
    return client


def test_owner_sees_links_and_changes_the_policy(alice_client, published):
    asset, _, delivery = published
    page = alice_client.get(reverse("studio:asset", args=[asset.pk])).content.decode()
    assert f"/play/{delivery.playback_id}/" in page and "manifest.mpd" in page and "&lt;iframe" in page
    alice_client.post(reverse("delivery_pages:policy", args=[asset.pk]), {"policy": "public"})
    assert AssetDelivery.objects.get(asset=asset).policy == "public"
    page = alice_client.get(reverse("studio:asset", args=[asset.pk])).content.decode()
    assert f"/play/{delivery.playback_id}/public/master.m3u8" in page
    response = alice_client.post(reverse("delivery_pages:policy", args=[asset.pk]), {"policy": "world"}, follow=True)
    assert b"Not changed" in response.content


def test_takedown_needs_a_reason_and_can_be_lifted(alice_client, published):
    asset, _, _ = published
    url = reverse("delivery_pages:takedown", args=[asset.pk])
    response = alice_client.post(url, {"reason": " "}, follow=True)
    assert b"Say why" in response.content and not AssetDelivery.objects.get(asset=asset).taken_down_at
    alice_client.post(url, {"reason": "rights dispute"})
    assert AssetDelivery.objects.get(asset=asset).takedown_reason == "rights dispute"
    page = alice_client.get(reverse("studio:asset", args=[asset.pk])).content.decode()
    assert "Taken down" in page and "/play/" not in page
    alice_client.post(url, {"lift": "1"})
    assert AssetDelivery.objects.get(asset=asset).taken_down_at is None


def test_delete_needs_the_title_typed(alice_client, published):
    asset, _, _ = published
    url = reverse("delivery_pages:delete", args=[asset.pk])
    alice_client.post(url, {"confirm": "wrong"})
    assert Asset.objects.filter(pk=asset.pk).exists()
    response = alice_client.post(url, {"confirm": asset.title})
    assert response.status_code == 302 and response["Location"] == reverse("studio:home")
    assert not Asset.objects.filter(pk=asset.pk).exists()
    assert Event.objects.filter(type="asset.deleted", subject_id=str(asset.pk)).exists()


def test_operations_may_take_down_but_not_delete_or_change_policy(ops_client, published):
    asset, _, _ = published
    ops_client.post(reverse("delivery_pages:takedown", args=[asset.pk]), {"reason": "reported"})
    assert AssetDelivery.objects.get(asset=asset).taken_down_at is not None
    assert ops_client.post(reverse("delivery_pages:delete", args=[asset.pk]), {"confirm": asset.title}).status_code == 404
    assert ops_client.post(reverse("delivery_pages:policy", args=[asset.pk]), {"policy": "public"}).status_code == 404
    assert Asset.objects.filter(pk=asset.pk).exists()


def test_another_publisher_gets_404_and_anonymous_goes_to_login(client, bob, published):
    asset, _, _ = published
    assert client.post(reverse("delivery_pages:takedown", args=[asset.pk]), {"reason": "x"}).status_code == 302
    client.force_login(bob)
    for name in ("policy", "takedown", "delete"):
        assert client.post(reverse(f"delivery_pages:{name}", args=[asset.pk]), {"reason": "x"}).status_code == 404
    assert AssetDelivery.objects.get(asset=asset).taken_down_at is None
