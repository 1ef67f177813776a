"""The studio's pages: the asset list (search, filter, pages, bounded queries), who opens which
asset, playback playlists with signed URLs, downloads, and what a failure looks like."""

import re
import urllib.parse

import pytest
from django.conf import settings
from django.urls import reverse

from core.roles import Role
from core.services import event_record
from pipeline.models import AssetState, JobState

pytestmark = pytest.mark.django_db


def test_asset_list_shows_the_publishers_assets_with_bounded_queries(
    alice_client, alice, bob, make_asset, s3, django_assert_max_num_queries, settings
):
    settings.STUDIO_ASSETS_PER_PAGE = 25
    for n in range(30):
        make_asset(
            alice, title=f"Alice clip {n:02d}", job_state=JobState.PUBLISHED if n % 2 else JobState.ENCODING
        )
    make_asset(bob, title="Bob's secret")
    with django_assert_max_num_queries(8):
        response = alice_client.get(reverse("studio:home"))
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('class="asset-row') == 25
    assert "Bob&#x27;s secret" not in page and "Bob's secret" not in page
    assert "Alice clip 29" in page and "Fast (3 H.264 rungs)" in page and "0:08" in page
    # Posters come as presigned URLs on the public endpoint.
    poster = re.search(r'<img src="([^"]+)"', page).group(1)
    assert poster.startswith(settings.S3_PUBLIC_ENDPOINT_URL) and "X-Amz-Signature" in poster
    second = alice_client.get(reverse("studio:home"), {"page": 2}).content.decode()
    assert second.count('class="asset-row') == 5 and "Page 2 of 2" in second


def test_asset_list_search_and_state_filter(alice_client, alice, make_asset):
    make_asset(alice, title="Sunset over the bay", job_state=JobState.PUBLISHED)
    make_asset(alice, title="Sunrise", job_state=JobState.FAILED, reason="no video stream")
    make_asset(alice, title="Meeting", job_state=JobState.ENCODING)
    found = alice_client.get(reverse("studio:home"), {"q": "sun"}).content.decode()
    assert "Sunset over the bay" in found and "Sunrise" in found and "Meeting" not in found
    failed = alice_client.get(reverse("studio:home"), {"state": AssetState.FAILED}).content.decode()
    assert "Sunrise" in failed and "Sunset" not in failed and "no video stream" in failed
    # Page links keep the filter.
    assert alice_client.get(reverse("studio:home"), {"state": "bogus"}).status_code == 200
    empty = alice_client.get(reverse("studio:home"), {"q": "nothing like this"}).content.decode()
    assert "No videos match" in empty


def test_a_publisher_never_opens_another_publishers_asset(client, alice, bob, make_asset, make_user):
    asset, _ = make_asset(alice, title="Private", job_state=JobState.PUBLISHED)
    client.force_login(bob)
    for name, args in [
        ("studio:asset", [asset.pk]),
        ("studio:asset_player", [asset.pk]),
        ("studio:hls", [asset.pk, "master.m3u8"]),
        ("studio:download", [asset.pk, "source"]),
    ]:
        assert client.get(reverse(name, args=args)).status_code == 404, name
    assert client.get(reverse("studio:asset", args=[asset.pk + 999])).status_code == 404
    # Operations staff may look at any asset; security reviewers have no business here.
    client.force_login(make_user("ops", role=Role.OPERATIONS))
    page = client.get(reverse("studio:asset", args=[asset.pk]))
    assert page.status_code == 200 and b"Asset of alice" in page.content
    client.force_login(make_user("sec", role=Role.SECURITY))
    assert client.get(reverse("studio:asset", args=[asset.pk])).status_code == 403


def test_failed_job_says_why_prominently(alice_client, alice, make_asset):
    asset, job = make_asset(alice, job_state=JobState.FAILED, reason="the source has no video stream")
    event_record(
        type="job.failed", subject=job, owner=alice, payload={"asset": asset.pk, "reason": job.failure_reason}
    )
    page = alice_client.get(reverse("studio:asset", args=[asset.pk])).content.decode()
    banner = re.search(r'<div id="failure" class="failure" role="alert">(.*?)</div>', page, re.S)
    assert banner and "the source has no video stream" in banner.group(1)
    assert "Failed" in page and 'class="event-job-failed"' in page


def test_timeline_lists_asset_and_job_events_in_order(alice_client, alice, make_asset):
    asset, job = make_asset(alice)
    other, other_job = make_asset(alice, title="Other")
    event_record(type="asset.created", subject=asset, owner=alice)
    event_record(
        type="job.planned", subject=job, owner=alice, payload={"chunks": 2, "renditions": 3, "units": 7}
    )
    event_record(type="job.failed", subject=other_job, owner=alice, payload={"reason": "not this one"})
    page = alice_client.get(reverse("studio:asset", args=[asset.pk])).content.decode()
    assert page.index("Asset created") < page.index("Planned chunks and renditions")
    assert "2 chunks × 3 renditions = 7 units" in page and "not this one" not in page


def test_published_asset_page_has_player_downloads_and_poster(alice_client, alice, make_asset, package_in_s3):
    asset, job = make_asset(alice, job_state=JobState.PUBLISHED)
    package_in_s3(job)
    page = alice_client.get(reverse("studio:asset", args=[asset.pk])).content.decode()
    assert f'data-hls="/studio/assets/{asset.pk}/hls/master.m3u8"' in page
    assert f'data-sprite="/studio/assets/{asset.pk}/hls/sprite.vtt"' in page
    assert "vendor/hls.js/hls.min.js" in page and 'poster="http' in page
    assert f"/studio/assets/{asset.pk}/download/source" in page
    fragment = alice_client.get(reverse("studio:asset_player", args=[asset.pk]))
    assert fragment.status_code == 200 and b'id="player"' in fragment.content


def test_player_fragment_is_404_until_published(alice_client, alice, make_asset):
    asset, _ = make_asset(alice, job_state=JobState.ENCODING)
    assert alice_client.get(reverse("studio:asset_player", args=[asset.pk])).status_code == 404
    assert alice_client.get(reverse("studio:hls", args=[asset.pk, "master.m3u8"])).status_code == 404


def _signed(url: str) -> dict:
    assert url.startswith(settings.S3_PUBLIC_ENDPOINT_URL), url
    return urllib.parse.parse_qs(urllib.parse.urlparse(url).query)


def test_master_playlist_points_back_at_the_view(alice_client, alice, make_asset, package_in_s3, redis_conn):
    asset, job = make_asset(alice, job_state=JobState.PUBLISHED)
    package_in_s3(job)
    response = alice_client.get(reverse("studio:hls", args=[asset.pk, "master.m3u8"]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apple.mpegurl"
    assert "private" in response["Cache-Control"]
    text = response.content.decode()
    assert f'URI="/studio/assets/{asset.pk}/hls/media_2.m3u8"' in text
    assert f"\n/studio/assets/{asset.pk}/hls/media_0.m3u8\n" in text
    assert "X-Amz" not in text


def test_media_playlist_segments_and_init_are_presigned(
    alice_client, alice, make_asset, package_in_s3, redis_conn
):
    asset, job = make_asset(alice, job_state=JobState.PUBLISHED)
    prefix = package_in_s3(job)
    text = alice_client.get(reverse("studio:hls", args=[asset.pk, "media_0.m3u8"])).content.decode()
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text).group(1)
    segments = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(segments) == 2
    for url in [init, *segments]:
        query = _signed(url)
        assert "X-Amz-Signature" in query
        assert int(query["X-Amz-Expires"][0]) >= settings.STUDIO_PLAYBACK_URL_SECONDS
    assert urllib.parse.urlparse(init).path == f"/{settings.S3_BUCKET_MEDIA}/{prefix}/init-0.m4s"
    assert "#EXTINF:2.000," in text and "#EXT-X-ENDLIST" in text


def test_sprite_vtt_image_is_presigned(alice_client, alice, make_asset, package_in_s3, redis_conn):
    asset, job = make_asset(alice, job_state=JobState.PUBLISHED)
    prefix = package_in_s3(job)
    response = alice_client.get(reverse("studio:hls", args=[asset.pk, "sprite.vtt"]))
    assert response["Content-Type"].startswith("text/vtt")
    cue = [line for line in response.content.decode().splitlines() if "#xywh=" in line][1]
    url, fragment = cue.split("#")
    assert fragment == "xywh=160,0,160,90"
    assert urllib.parse.urlparse(url).path == f"/{settings.S3_BUCKET_MEDIA}/{prefix}/sprite.jpg"
    assert "X-Amz-Signature" in _signed(url)


@pytest.mark.parametrize(
    "path",
    [
        "../../other/master.m3u8",
        "media_0.m3u8/../../x.m3u8",
        "init-0.m4s",
        "chunk-0-00001.m4s",
        "other.m3u8",
        "poster.jpg",
        "manifest.mpd",
        "%2e%2e/master.m3u8",
    ],
)
def test_hls_view_serves_only_the_packages_playlists(
    alice_client, alice, make_asset, package_in_s3, redis_conn, path
):
    asset, job = make_asset(alice, job_state=JobState.PUBLISHED)
    package_in_s3(job)
    assert alice_client.get(f"/studio/assets/{asset.pk}/hls/{path}").status_code == 404


def test_downloads_redirect_to_presigned_attachments(alice_client, alice, make_asset):
    from pipeline.models import RenditionState
    from tests.factories import RenditionFactory

    asset, job = make_asset(alice, title="Summer party", job_state=JobState.PUBLISHED)
    RenditionFactory(job=job, name="h264-360p", state=RenditionState.READY)
    for what, key, filename in [
        ("source", asset.source_key, "summer-party.mp4"),
        ("h264-360p", f"{job.output_prefix}/renditions/h264-360p.mp4", "summer-party-h264-360p.mp4"),
        ("poster", asset.poster_key, "summer-party-poster.jpg"),
    ]:
        response = alice_client.get(reverse("studio:download", args=[asset.pk, what]))
        assert response.status_code == 302, what
        location = response["Location"]
        query = _signed(location)
        assert urllib.parse.unquote(urllib.parse.urlparse(location).path).endswith(key)
        assert f'filename="{filename}"' in query["response-content-disposition"][0]
    assert alice_client.get(reverse("studio:download", args=[asset.pk, "h264-9999p"])).status_code == 404


def test_upload_page_offers_active_profiles_and_unfinished_uploads(alice_client, tmp_path, studio_api):
    from pipeline.models import Profile
    from tests.studio.conftest import fake_video

    Profile.objects.filter(slug="full").update(is_active=False)
    studio_api.start(fake_video(tmp_path / "halfway.mp4", 1000))
    page = alice_client.get(reverse("studio:upload")).content.decode()
    assert 'value="fast"' in page and 'value="standard"' in page and 'value="full"' not in page
    assert "Unfinished uploads" in page and "halfway.mp4" in page
    assert 'id="upload-config"' in page and "js/studio-upload.js" in page
