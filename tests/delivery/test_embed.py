"""The embed page (frame-ancestors from the publisher's origins) and oEmbed."""

import pytest
from django.urls import reverse

from delivery.services import (
    DeliveryRefused,
    asset_details_update,
    asset_takedown,
    embed_origins_set,
    playback_urls,
)


def test_embed_plays_the_signed_urls_and_is_framable_only_by_listed_origins(client, published, alice):
    asset, job, delivery = published
    embed_origins_set(publisher=alice, origins=["https://www.example.com", "http://127.0.0.1:9000/"])
    embed = playback_urls(asset=asset, job=job)["embed"]
    page = client.get(embed.split("://", 1)[1].split("/", 1)[1].join(["/", ""]))
    assert page.status_code == 200
    policy = dict(d.strip().split(" ", 1) for d in page["Content-Security-Policy"].split(";"))
    assert policy["frame-ancestors"] == "'self' http://127.0.0.1:9000 https://www.example.com"
    assert policy["script-src"] == "'self'"  # the rest of the site's policy stands
    assert "X-Frame-Options" not in page
    html = page.content.decode()
    assert f"/play/{delivery.playback_id}/" in html and "master.m3u8" in html and "poster.jpg" in html
    assert "hls.min.js" in html and "embed-player.js" in html


def test_embed_without_origins_is_framable_by_the_site_only(client, published, alice):
    asset, _, delivery = published
    asset_details_update(asset=asset, actor=alice, policy="public")
    page = client.get(reverse("delivery:embed", args=[delivery.playback_id]))
    assert page.status_code == 200 and "frame-ancestors 'self';" in page["Content-Security-Policy"] + ";"


def test_embed_refusals_are_pages_with_the_reason(client, published, alice):
    asset, _, delivery = published
    assert client.get(reverse("delivery:embed", args=[delivery.playback_id])).status_code == 403  # signed, no token
    asset_takedown(asset=asset, actor=alice, reason="x")
    page = client.get(reverse("delivery:embed", args=[delivery.playback_id]) + "?token=public")
    assert page.status_code == 451 and b"taken down" in page.content
    assert client.get(reverse("delivery:embed", args=["nope"])).status_code == 404


@pytest.mark.parametrize("origin", ["example.com", "https://example.com/path", "javascript:alert(1)", "https://a b"])
def test_origins_must_be_origins(alice, origin):
    with pytest.raises(DeliveryRefused):
        embed_origins_set(publisher=alice, origins=[origin])


def test_oembed_answers_an_iframe_for_an_embed_url(client, published, settings):
    asset, job, delivery = published
    embed = playback_urls(asset=asset, job=job)["embed"]
    answer = client.get(reverse("delivery:oembed"), {"url": embed, "maxwidth": 320})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["type"] == "video" and body["version"] == "1.0" and body["width"] == 320 and body["height"] == 180
    assert f'src="{embed}"' in body["html"] and body["thumbnail_url"].endswith("poster.jpg")
    boxed = client.get(reverse("delivery:oembed"), {"url": embed, "maxwidth": 640, "maxheight": 180}).json()
    assert (boxed["width"], boxed["height"]) == (320, 180)


@pytest.mark.parametrize(("url", "status"), [("https://evil.example/embed/x", 404), ("", 404), ("/studio/", 404)])
def test_oembed_refuses_other_urls(client, published, url, status):
    assert client.get(reverse("delivery:oembed"), {"url": url}).status_code == status


def test_oembed_refuses_xml_and_private_assets(client, published, alice):
    asset, job, delivery = published
    embed = playback_urls(asset=asset, job=job)["embed"]
    assert client.get(reverse("delivery:oembed"), {"url": embed, "format": "xml"}).status_code == 501
    asset_details_update(asset=asset, actor=alice, policy="private")
    assert client.get(reverse("delivery:oembed"), {"url": embed}).status_code == 401


def test_studio_page_saves_embed_origins(alice_client, alice):
    from delivery.selectors import embed_origins

    alice_client.post(reverse("api_tokens:embed_origins"), {"origins": "https://cms.example.org\n\n"})
    assert embed_origins(publisher=alice) == ["https://cms.example.org"]
    response = alice_client.post(reverse("api_tokens:embed_origins"), {"origins": "not an origin"}, follow=True)
    assert b"Origins not saved" in response.content and embed_origins(publisher=alice) == ["https://cms.example.org"]
