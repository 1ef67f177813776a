"""Playable before published: while a job still encodes, its owner watches the renditions ready
so far (pipeline/steps/preview.py), on the asset page and through the playlists it serves; once
packaged, the whole package, until the rules publish it."""

import subprocess

import m3u8
import pytest
from django.test import Client
from django.urls import reverse

from core.models import Event
from pipeline.models import EncodeJob, JobState, RenditionKind
from tests.pipeline.clips import make_clip
from tests.pipeline.test_pipeline_e2e import announce
from tests.pipeline.test_publish_flow import run_queue, verified_rule  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _served(client: Client, asset_id: int, path: str) -> str:
    response = client.get(reverse("studio:preview", args=[asset_id, path]))
    assert response.status_code == 200, (path, response.content[:300])
    return response.content.decode()


def test_the_first_renditions_play_before_the_job_is_packaged(tmp_path, publisher, upload, s3, make_user):
    clip = make_clip(tmp_path / "early.mp4", duration=6, width=640, height=480)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    # Every step but packaging: the job stops with every rendition ready and no package.
    run_queue("ingest", "assemble", "encode")
    job = EncodeJob.objects.select_related("asset").get(pk=job_id)
    assert job.state == JobState.PACKAGING and not job.master_playlist_key
    assert job.preview_key.startswith(f"{job.output_prefix}/preview/"), job.preview_key

    # The webhook event says so, with where to watch.
    playable = Event.objects.filter(type="rendition.playable", payload__asset=job.asset_id).order_by("id")
    with_preview = [e for e in playable if e.payload["preview"]]
    assert with_preview and all(e.payload["watch_url"].endswith(f"/studio/assets/{job.asset_id}/") for e in with_preview)
    assert not playable.first().payload["preview"], "nothing to watch before a video and the audio are ready"

    # The owner's page shows a player labelled as a preview; another publisher gets nothing.
    client = Client()
    client.force_login(publisher)
    page = client.get(reverse("studio:asset", args=[job.asset_id])).content.decode()
    assert 'id="player"' in page and "not published yet" in page

    # Its master lists the video rungs it holds; each media playlist addresses a stored
    # rendition by byte range, and ffmpeg reads every frame of it through the signed URLs.
    master_path = job.preview_key.removeprefix(f"{job.output_prefix}/")
    stranger = Client()
    stranger.force_login(make_user("stranger"))
    assert stranger.get(reverse("studio:preview", args=[job.asset_id, master_path])).status_code == 404
    master = m3u8.loads(_served(client, job.asset_id, master_path))
    rungs = int(master_path.split("/")[1])
    assert 1 <= len(master.playlists) < rungs, "a video rung, and the audio beside it"
    assert [m for m in master.media if m.type == "AUDIO"], "the audio group is in the preview"
    media_path = master.playlists[0].uri.split(f"/studio/assets/{job.asset_id}/preview/", 1)[1]
    media_text = _served(client, job.asset_id, media_path)
    assert "#EXT-X-BYTERANGE" in media_text and "X-Amz-Signature" in media_text
    local = tmp_path / "rung.m3u8"
    local.write_text(media_text)
    counted = subprocess.run(
        ["ffprobe", "-v", "error", "-protocol_whitelist", "file,http,tcp", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(local)],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.split()[0]
    video_frames = job.renditions.filter(kind=RenditionKind.VIDEO).values_list("frame_count", flat=True).first()
    assert int(counted) == video_frames == 150


def test_a_held_job_previews_its_whole_package(tmp_path, publisher, upload, s3, verified_rule):  # noqa: F811
    clip = make_clip(tmp_path / "whole.mp4", duration=4, width=640, height=480)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    run_queue("ingest", "package", "assemble", "encode")
    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.HELD, "the publisher is not verified: held for review"
    client = Client()
    client.force_login(publisher)
    master = m3u8.loads(_served(client, job.asset_id, "master.m3u8"))
    assert len(master.playlists) == job.renditions.filter(kind=RenditionKind.VIDEO).count()
