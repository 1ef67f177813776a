"""Fixtures of the studio tests: publishers, the shipped ladders, uploads through the real API
against the session's SeaweedFS, and packages in S3 to play."""

import base64
import hashlib
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.urls import reverse

from core.roles import Role

MIB = 1024**2
# What S3 accepts as the smallest part but the last: tests use it to get several parts cheaply.
SMALL_PARTS = 5 * MIB


@pytest.fixture
def ladders(db):
    """The shipped ladders (a data migration loads them; transactional tests flush them)."""
    from pipeline.ladders import ladders_sync
    from pipeline.models import AudioRenditionSpec, Profile, VideoRenditionSpec

    ladders_sync(Profile, VideoRenditionSpec, AudioRenditionSpec)


@pytest.fixture
def alice(make_user, ladders):
    return make_user("alice", role=Role.PUBLISHER)


@pytest.fixture
def bob(make_user, ladders):
    return make_user("bob", role=Role.PUBLISHER)


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def fake_video(path: Path, size: int) -> Path:
    """An MP4 signature followed by noise: a video by its first bytes, not one ffprobe accepts.
    Enough for upload mechanics; real clips come from tests.pipeline.clips."""
    header = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    block = hashlib.sha256(path.name.encode()).digest() * 4096
    with path.open("wb") as out:
        out.write(header)
        written = len(header)
        while written < size:
            chunk = block[: size - written]
            out.write(chunk)
            written += len(chunk)
    return path


def start_body(
    path: Path, *, title: str = "", profile: str = "fast", last_modified: int = 1_700_000_000_000
) -> dict:
    data = path.read_bytes()
    return {
        "filename": path.name,
        "size": len(data),
        "lastModified": last_modified,
        "fingerprint": hashlib.sha256(data[: 1024 * 1024]).hexdigest(),
        "contentType": "video/mp4",
        "title": title,
        "profile": profile,
        "head": base64.b64encode(data[:1024]).decode(),
    }


class StudioApi:
    """Drives the upload API exactly as static/js/studio-upload.js does, with a Django test
    client for the JSON calls and plain HTTP PUTs of the parts to S3."""

    def __init__(self, client) -> None:
        self.client = client

    def post(self, url: str, body: dict | None = None):
        return self.client.post(url, body or {}, content_type="application/json")

    def start(self, path: Path, **kwargs):
        return self.post(reverse("studio:upload_start"), start_body(path, **kwargs))

    def sign(self, session: dict, parts: list[int]) -> dict[int, str]:
        response = self.post(session["partsUrl"], {"parts": parts})
        assert response.status_code == 200, response.content
        return {int(n): url for n, url in response.json()["urls"].items()}

    def put_parts(self, session: dict, path: Path, parts: list[int]) -> None:
        data = path.read_bytes()
        size = session["partSize"]
        for number, url in self.sign(session, parts).items():
            answer = requests.put(url, data=data[(number - 1) * size : number * size], timeout=30)
            assert answer.status_code == 200, answer.text

    def upload(self, path: Path, **kwargs):
        started = self.start(path, **kwargs)
        assert started.status_code == 201, started.content
        session = started.json()
        self.put_parts(session, path, list(range(1, session["partsTotal"] + 1)))
        return session, self.post(session["completeUrl"])


@pytest.fixture
def studio_api(alice_client, s3, redis_conn, settings):
    settings.STUDIO_UPLOAD_PART_BYTES = SMALL_PARTS
    return StudioApi(alice_client)


@pytest.fixture
def package_in_s3(s3):
    """package_in_s3(job) puts a small but well-formed HLS package where `job` says it is."""

    def put(job, *, with_sprite: bool = True) -> str:
        prefix = f"assets/{job.asset_id}/jobs/{job.pk}/package"
        files = {
            "master.m3u8": (
                "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
                '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="group_A1",NAME="audio_2",DEFAULT=YES,URI="media_2.m3u8"\n'
                '#EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=640x360,CODECS="avc1.64001e,mp4a.40.2",AUDIO="group_A1"\n'
                "media_0.m3u8\n"
                '#EXT-X-STREAM-INF:BANDWIDTH=500000,RESOLUTION=426x240,CODECS="avc1.640015,mp4a.40.2",AUDIO="group_A1"\n'
                "media_1.m3u8\n"
            ),
            "sprite.vtt": (
                "WEBVTT\n\n00:00:00.000 --> 00:00:05.000\nsprite.jpg#xywh=0,0,160,90\n\n"
                "00:00:05.000 --> 00:00:08.000\nsprite.jpg#xywh=160,0,160,90\n"
            ),
        }
        for n in range(3):
            files[f"media_{n}.m3u8"] = (
                "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n"
                f'#EXT-X-MAP:URI="init-{n}.m4s"\n'
                f"#EXTINF:2.000,\nchunk-{n}-00001.m4s\n#EXTINF:2.000,\nchunk-{n}-00002.m4s\n#EXT-X-ENDLIST\n"
            )
        if not with_sprite:
            files.pop("sprite.vtt")
        for name, text in files.items():
            s3.put_object(Bucket=settings.S3_BUCKET_MEDIA, Key=f"{prefix}/{name}", Body=text.encode())
        return prefix

    return put


@pytest.fixture
def make_asset(ladders):
    """make_asset(publisher, state=..., job_state=..., title=...) -> (asset, job), rows only."""
    from pipeline.models import AssetState, JobState
    from tests.factories import AssetFactory, EncodeJobFactory

    def make(
        publisher, *, title: str = "Clip", job_state: str = JobState.ENCODING, reason: str = "", **extra
    ):
        state = {JobState.PUBLISHED: AssetState.READY, JobState.FAILED: AssetState.FAILED}.get(
            job_state, AssetState.PROCESSING
        )
        asset = AssetFactory(publisher=publisher, title=title, state=state, source_size=1000, **extra)
        job = EncodeJobFactory(asset=asset, state=job_state, failure_reason=reason)
        if job_state == JobState.PUBLISHED:
            job.master_playlist_key = f"{job.output_prefix}/package/master.m3u8"
            job.save(update_fields=["master_playlist_key"])
            asset.poster_key = f"{job.output_prefix}/package/poster.jpg"
            asset.save(update_fields=["poster_key"])
        return asset, job

    return make
