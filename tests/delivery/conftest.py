"""Fixtures of the delivery tests: publishers, and a published asset whose package files are in
the session's SeaweedFS."""

import pytest
from django.conf import settings

from tests.studio.conftest import alice, alice_client, bob, ladders, make_asset  # noqa: F401

MEDIA_BYTES = bytes(range(256)) * 64  # 16 KiB whose every byte tells its offset


@pytest.fixture
def published(alice, make_asset, s3, redis_conn):  # noqa: F811 - the fixture imported above
    """(asset, job, delivery): alice's published asset with a package (playlists, an MPD, one
    rendition file, a poster) where the job says it is."""
    from delivery.services import asset_delivery_ensure
    from pipeline.models import JobState

    asset, job = make_asset(alice, job_state=JobState.PUBLISHED, width=640, height=360, duration_s=4.0)
    folder = job.master_playlist_key.rsplit("/", 1)[0]
    job.dash_manifest_key = f"{folder}/manifest.mpd"
    job.save(update_fields=["dash_manifest_key"])
    files = {
        "master.m3u8": b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=500000\nh264-360p.m3u8\n",
        "h264-360p.m3u8": b"#EXTM3U\n#EXT-X-MAP:URI=\"h264-360p.mp4\",BYTERANGE=\"100@0\"\n#EXTINF:2,\n"
        b"#EXT-X-BYTERANGE:1000@100\nh264-360p.mp4\n#EXT-X-ENDLIST\n",
        "manifest.mpd": b'<?xml version="1.0"?><MPD><BaseURL>h264-360p.mp4</BaseURL></MPD>\n',
        "h264-360p.mp4": MEDIA_BYTES,
        "poster.jpg": b"\xff\xd8\xff\xe0poster",
    }
    for name, body in files.items():
        s3.put_object(Bucket=settings.S3_BUCKET_MEDIA, Key=f"{folder}/{name}", Body=body)
    return asset, job, asset_delivery_ensure(asset)
