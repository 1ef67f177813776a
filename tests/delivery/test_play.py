"""Playback URLs anyone can open: the package's manifests and byte ranges, per policy, with
takedown, deletion and bad tokens refused at once, CORS for players on other origins."""

import pytest
from django.urls import reverse

from delivery.services import (
    asset_delete,
    asset_details_update,
    asset_takedown,
    asset_takedown_lift,
    playback_urls,
)
from delivery.signing import token_for
from tests.delivery.conftest import MEDIA_BYTES


def _path(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[1].join(["/", ""])


def test_signed_urls_open_with_no_session(client, published):
    asset, job, delivery = published
    urls = playback_urls(asset=asset, job=job)
    master = client.get(_path(urls["hls"]))
    assert master.status_code == 200 and master["Content-Type"] == "application/vnd.apple.mpegurl"
    assert b"h264-360p.m3u8" in master.content and master["Access-Control-Allow-Origin"] == "*"
    # Relative URIs resolve under the same token: the variant playlist and the media file.
    base = _path(urls["hls"]).rsplit("/", 1)[0]
    assert client.get(f"{base}/h264-360p.m3u8").status_code == 200
    mpd = client.get(_path(urls["dash"]))
    assert mpd.status_code == 200 and mpd["Content-Type"] == "application/dash+xml"


def test_media_is_served_by_byte_range(client, published):
    asset, job, _ = published
    base = _path(playback_urls(asset=asset, job=job)["hls"]).rsplit("/", 1)[0]
    part = client.get(f"{base}/h264-360p.mp4", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert b"".join(part.streaming_content) == MEDIA_BYTES[100:1100]
    assert part["Content-Range"] == f"bytes 100-1099/{len(MEDIA_BYTES)}" and part["Content-Length"] == "1000"
    tail = client.get(f"{base}/h264-360p.mp4", headers={"Range": "bytes=-10"})
    assert b"".join(tail.streaming_content) == MEDIA_BYTES[-10:]
    whole = client.get(f"{base}/h264-360p.mp4")
    assert whole.status_code == 200 and b"".join(whole.streaming_content) == MEDIA_BYTES
    assert whole["Accept-Ranges"] == "bytes"
    head = client.head(f"{base}/h264-360p.mp4")
    assert head.status_code == 200 and head["Content-Length"] == str(len(MEDIA_BYTES))


@pytest.mark.parametrize(("header", "status"), [("bytes=99999999-", 416), ("bytes=5-1", 416), ("lines=1-2", 416),
                                                ("bytes=0-1,5-9", 416)])  # fmt: skip
def test_bad_ranges_are_416_json(client, published, header, status):
    asset, job, _ = published
    base = _path(playback_urls(asset=asset, job=job)["hls"]).rsplit("/", 1)[0]
    response = client.get(f"{base}/h264-360p.mp4", headers={"Range": header})
    assert response.status_code == status and response.json()["error"] == "range_invalid"


def test_expired_tampered_and_foreign_tokens_are_403(client, published, make_asset, alice):
    asset, _, delivery = published
    pid = delivery.playback_id
    expired, _ = token_for(playback_id=pid, seconds=60, now=1_000_000)
    other_pid_token, _ = token_for(playback_id="someoneelse", seconds=600)
    for token in (expired, other_pid_token, "public", "garbage"):
        response = client.get(reverse("delivery:play", args=[pid, token, "master.m3u8"]))
        assert response.status_code == 403, token
        assert response.json()["error"] == "token_invalid" and response.json()["message"]


def test_public_assets_need_no_token_and_private_ones_never_play(client, published, alice):
    asset, job, delivery = published
    asset_details_update(asset=asset, actor=alice, policy="public")
    url = reverse("delivery:play", args=[delivery.playback_id, "public", "master.m3u8"])
    assert client.get(url).status_code == 200
    asset_details_update(asset=asset, actor=alice, policy="private")
    response = client.get(url)
    assert response.status_code == 403 and response.json()["error"] == "private"
    token, _ = token_for(playback_id=delivery.playback_id, seconds=600)
    assert client.get(reverse("delivery:play", args=[delivery.playback_id, token, "master.m3u8"])).status_code == 403


def test_takedown_refuses_the_next_request_and_lifting_restores(client, published, alice):
    asset, job, _ = published
    url = _path(playback_urls(asset=asset, job=job)["hls"])
    assert client.get(url).status_code == 200
    asset_takedown(asset=asset, actor=alice, reason="court order")
    refused = client.get(url)
    assert refused.status_code == 451 and refused.json()["error"] == "taken_down"
    assert client.get(url.replace("master.m3u8", "h264-360p.mp4")).status_code == 451
    asset_takedown_lift(asset=asset, actor=alice)
    assert client.get(url).status_code == 200


def test_deleted_assets_are_404(client, published, alice):
    asset, job, _ = published
    url = _path(playback_urls(asset=asset, job=job)["hls"])
    asset_delete(asset=asset, actor=alice)
    response = client.get(url)
    assert response.status_code == 404 and response.json()["error"] == "not_found"


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", "notes.txt", "master.m3u8%00"])
def test_names_outside_the_package_are_404(client, published, name):
    asset, job, delivery = published
    token, _ = token_for(playback_id=delivery.playback_id, seconds=600)
    response = client.get(f"/play/{delivery.playback_id}/{token}/{name}")
    assert response.status_code == 404


def test_a_missing_file_is_404_json(client, published):
    asset, job, delivery = published
    token, _ = token_for(playback_id=delivery.playback_id, seconds=600)
    response = client.get(reverse("delivery:play", args=[delivery.playback_id, token, "sprite.vtt"]))
    assert response.status_code == 404 and "sprite.vtt" in response.json()["message"]


def test_preflight_allows_range_from_any_origin(client, published):
    _, _, delivery = published
    response = client.options(reverse("delivery:play", args=[delivery.playback_id, "public", "x.mp4"]))
    assert response.status_code == 204 and response["Access-Control-Allow-Headers"] == "Range"


def test_downloads_are_refused_unless_offered_and_wait_while_prepared(client, published, alice):
    asset, job, delivery = published
    token, _ = token_for(playback_id=delivery.playback_id, seconds=600)
    url = reverse("delivery:download", args=[delivery.playback_id, token, "h264-360p"])
    response = client.get(url)
    assert response.status_code == 404 and response.json()["error"] == "not_downloadable"
    asset_details_update(asset=asset, actor=alice, downloadable=["h264-360p"], available_rungs=["h264-360p"])
    response = client.get(url)
    assert response.status_code == 503 and response["Retry-After"] == "10"
    assert playback_urls(asset=asset, job=job)["downloads"]["h264-360p"].endswith("/download/h264-360p.mp4")
