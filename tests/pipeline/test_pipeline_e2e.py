"""End to end on generated clips: object created -> probe -> chunks -> units on real RQ
workers -> assemble -> HLS + DASH in S3, checked with ffprobe and the m3u8 parser."""

import json
import subprocess
from pathlib import Path

import m3u8
import pytest
from django.conf import settings

from pipeline import events
from pipeline.models import EncodeJob, IngestEvent, JobState, Rendition, RenditionState, Unit, UnitState
from tests.pipeline.clips import make_clip

pytestmark = [pytest.mark.slow]


def announce(key: str):
    return events.object_created_receive(
        created=events.ObjectCreated(bucket=settings.S3_BUCKET_INGEST, key=key), source=IngestEvent.Source.CLI
    )


def download_package(s3, job: EncodeJob, dest: Path) -> Path:
    prefix = job.master_playlist_key.rsplit("/", 1)[0]
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=settings.S3_BUCKET_MEDIA, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            target = dest / obj["Key"][len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(settings.S3_BUCKET_MEDIA, obj["Key"], str(target))
    return dest


def ffprobe_json(*args: str) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", *args], capture_output=True, check=True, timeout=60)
    return json.loads(out.stdout)


def test_ten_seconds_in_two_second_chunks_publishes_hls_and_dash(
    tmp_path, publisher, upload, run_workers, s3, settings
):
    settings.REELFLOW_CHUNK_SECONDS = 2
    settings.REELFLOW_SEGMENT_SECONDS = 2
    clip = make_clip(tmp_path / "ten.mp4", duration=10, width=854, height=480, fps=25)
    key = upload(clip, publisher, profile="fast", title="Ten%20seconds")
    event = announce(key)
    assert event is not None and event.job is not None
    assert announce(key) is None, "a replayed event must not start a second job"

    run_workers(2)

    job = EncodeJob.objects.get(pk=event.job_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    assert job.asset.title == "Ten seconds"
    assert job.chunks.count() == 5
    videos = Rendition.objects.filter(job=job, kind="video").order_by("height")
    assert [r.height for r in videos] == [240, 360, 480]
    assert all(r.state == RenditionState.READY and r.frame_count == 250 for r in videos)
    assert all(abs(r.duration_s - 10.0) <= 1 / 25 for r in videos)
    assert Unit.objects.filter(job=job).exclude(state=UnitState.DONE).count() == 0
    assert Unit.objects.filter(job=job).count() == 5 * 3 + 1

    package = download_package(s3, job, tmp_path / "pkg")
    master = m3u8.load(str(package / "master.m3u8"))
    assert len(master.playlists) == 3
    for variant in master.playlists:
        info = variant.stream_info
        assert info.bandwidth > 0 and info.resolution and info.codecs.startswith("avc1")
        assert info.audio
        media = m3u8.load(str(package / variant.uri))
        assert abs(sum(s.duration for s in media.segments) - 10.0) < 0.05
        assert all(round(s.duration) <= media.target_duration for s in media.segments)
    assert [m.type for m in master.media] == ["AUDIO"]
    dash = ffprobe_json("-show_streams", str(package / "manifest.mpd"))
    assert {s["codec_type"] for s in dash["streams"]} == {"video", "audio"}
    assert (package / "poster.jpg").stat().st_size > 0
    assert "#xywh=" in (package / "sprite.vtt").read_text()
