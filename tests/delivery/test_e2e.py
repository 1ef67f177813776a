"""The whole path on real services: a real encode, then playback URLs opened over real HTTP
(a live server) with no cookie by ffprobe and by a plain HTTP client; a direct upload through
the API; takedown and deletion refusing the same URLs at once."""

import base64
import json
import subprocess
import sys

import pytest
import requests

from api.services import token_create
from pipeline.models import Asset, AssetState, EncodeJob, JobState
from pipeline.queues import MEDIA as MEDIA_QUEUES
from tests.conftest import ENCODE_LANE_1, ROOT, worker_env
from tests.pipeline.clips import make_clip
from tests.pipeline.conftest import ladders, publisher, run_workers  # noqa: F401

pytestmark = [pytest.mark.slow]


def ffprobe(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type:format=duration", "-of", "json", url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _stream_types(result: subprocess.CompletedProcess) -> set[str]:
    assert result.returncode == 0, result.stderr
    return {stream["codec_type"] for stream in json.loads(result.stdout)["streams"]}


@ENCODE_LANE_1
def test_encode_wait_prints_playback_urls_that_ffprobe_opens(tmp_path, publisher, live_server, settings, rq_worker_process, s3):  # noqa: F811
    settings.SITE_URL = live_server.url
    for _ in range(2):
        rq_worker_process(*MEDIA_QUEUES, "default")
    clip = make_clip(tmp_path / "launch.mp4", duration=4, width=640, height=360)
    result = subprocess.run(
        [sys.executable, "manage.py", "encode", str(clip), "--profile", "fast", "--publisher", publisher.username, "--wait"],
        cwd=ROOT, env=worker_env({"REELFLOW_SITE_URL": live_server.url, "REELFLOW_CHUNK_SECONDS": "2"}),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    hls = next(line for line in lines if line.startswith("playback HLS: ")).removeprefix("playback HLS: ")
    dash = next(line for line in lines if line.startswith("playback DASH: ")).removeprefix("playback DASH: ")
    assert hls.startswith(f"{live_server.url}/play/") and dash.endswith("/manifest.mpd")
    assert _stream_types(ffprobe(hls)) == {"video", "audio"}
    assert _stream_types(ffprobe(dash)) == {"video", "audio"}

    from delivery.services import asset_delete, asset_takedown

    asset = Asset.objects.get(publisher=publisher)
    asset_takedown(asset=asset, actor=publisher, reason="test")
    assert requests.get(hls, timeout=10).status_code == 451
    assert ffprobe(dash).returncode != 0
    asset_delete(asset=asset, actor=publisher)
    assert requests.get(hls, timeout=10).status_code == 404


@ENCODE_LANE_1
def test_direct_upload_through_the_api_to_a_published_asset(tmp_path, publisher, live_server, settings, run_workers, s3, make_user):  # noqa: F811
    settings.SITE_URL = live_server.url
    _, token = token_create(publisher=publisher, name="ci", scope="write")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    clip = make_clip(tmp_path / "api-upload.mp4", duration=4, width=640, height=360)
    data = clip.read_bytes()
    started = api.post(f"{live_server.url}/api/v1/uploads", json={
        "filename": clip.name, "size": len(data), "head": base64.b64encode(data[:1024]).decode(),
        "title": "From the API", "profile": "fast",
    }, timeout=30)  # fmt: skip
    assert started.status_code == 201, started.text
    upload = started.json()
    for number in range(1, upload["parts_total"] + 1):
        url = upload["part_urls"][str(number)]
        part = data[(number - 1) * upload["part_size"] : number * upload["part_size"]]
        assert requests.put(url, data=part, timeout=30).status_code == 200
    done = api.post(f"{live_server.url}/api/v1/uploads/{upload['id']}/complete", timeout=60)
    assert done.status_code == 200, done.text
    asset_id = done.json()["asset"]

    _, intruder = token_create(publisher=make_user("intruder"), name="x", scope="write")
    as_intruder = {"Authorization": f"Bearer {intruder}"}
    assert requests.get(f"{live_server.url}/api/v1/assets/{asset_id}", headers=as_intruder, timeout=10).status_code == 404
    aborted = requests.post(f"{live_server.url}/api/v1/uploads/{upload['id']}/abort", headers=as_intruder, timeout=10)
    assert aborted.status_code == 404 and aborted.json()["error"] == "not_found"
    run_workers(2, env={"REELFLOW_CHUNK_SECONDS": "2"})
    job = EncodeJob.objects.get(asset_id=asset_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    asset = api.get(f"{live_server.url}/api/v1/assets/{asset_id}", timeout=10).json()
    assert asset["state"] == AssetState.READY and asset["title"] == "From the API"
    job_body = api.get(f"{live_server.url}/api/v1/jobs/{job.pk}", timeout=10).json()
    assert job_body["progress"] == 1.0 and job_body["units_failed"] == 0

    playback = api.get(f"{live_server.url}/api/v1/assets/{asset_id}/playback", timeout=10).json()
    anonymous = requests.Session()  # no cookie, no token header: the URL is the credential
    master = anonymous.get(playback["hls"], timeout=10)
    assert master.status_code == 200 and "#EXT-X-STREAM-INF" in master.text
    variant = next(line for line in master.text.splitlines() if line.endswith(".m3u8"))
    media = anonymous.get(playback["hls"].rsplit("/", 1)[0] + "/" + variant, timeout=10).text
    file_name = next(line for line in media.splitlines() if line and not line.startswith("#"))
    piece = anonymous.get(playback["hls"].rsplit("/", 1)[0] + "/" + file_name, headers={"Range": "bytes=0-99"}, timeout=10)
    assert piece.status_code == 206 and len(piece.content) == 100 and piece.content[4:8] == b"ftyp"

    # Downloads: the publisher offers one rung; its MP4 (video and audio) is prepared by a
    # media worker and handed out as a presigned S3 URL that saves it under the title.
    rung = next(r["name"] for r in api.get(f"{live_server.url}/api/v1/assets/{asset_id}/renditions", timeout=10).json()
                if r["kind"] == "video")  # fmt: skip
    patched = api.patch(f"{live_server.url}/api/v1/assets/{asset_id}", json={"downloadable": [rung]}, timeout=10)
    assert patched.status_code == 200 and patched.json()["downloadable"] == [rung]
    run_workers(1)
    link = api.get(f"{live_server.url}/api/v1/assets/{asset_id}/playback", timeout=10).json()["downloads"][rung]
    redirect = anonymous.get(link, allow_redirects=False, timeout=10)
    assert redirect.status_code == 302, redirect.text
    saved = anonymous.get(redirect.headers["Location"], timeout=30)
    assert saved.status_code == 200 and f"from-the-api-{rung}.mp4" in saved.headers["Content-Disposition"]
    (tmp_path / "saved.mp4").write_bytes(saved.content)
    assert _stream_types(ffprobe(str(tmp_path / "saved.mp4"))) == {"video", "audio"}
    other_rung = anonymous.get(link.replace(f"/download/{rung}.mp4", "/download/nope.mp4"), timeout=10)
    assert other_rung.status_code == 404 and other_rung.json()["error"] == "not_downloadable"
