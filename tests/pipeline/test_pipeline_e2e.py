"""End to end on generated clips: object created -> probe -> chunks -> units on real RQ
workers -> assemble -> HLS + DASH in S3, checked with ffprobe and the m3u8 parser."""

import json
import subprocess
from pathlib import Path

import m3u8
import pytest
from django.conf import settings

from pipeline import events
from pipeline.models import (
    Artifact,
    EncodeJob,
    IngestEvent,
    JobState,
    Rendition,
    RenditionState,
    Unit,
    UnitState,
)
from tests.conftest import ENCODE_LANE_1, sample_path
from tests.pipeline.clips import make_clip

pytestmark = [pytest.mark.slow, ENCODE_LANE_1]


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
    # Decoded once per chunk on this machine (pipeline.decoded_cache), then dropped.
    decoded = [
        (a.inputs["range"]["start_frame"], a.inputs["decoded_from"])
        for a in Artifact.objects.filter(job=job, kind=Artifact.Kind.UNIT)
    ]
    for start in {start for start, _ in decoded}:
        sources = [how for s, how in decoded if s == start]
        assert sources.count("source, cached") <= 1, decoded
        assert sources.count("cache") >= 1 or sources.count("source") >= 1, decoded
    assert sum(how == "cache" for _, how in decoded) >= 5, decoded
    assert not (Path(settings.REELFLOW_DECODED_CACHE_DIR) / f"job-{job.pk}").exists()

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


SAMPLE = sample_path("flower.mp4")


def _video_renditions(job):
    return list(Rendition.objects.filter(job=job, kind="video").order_by("height"))


def test_source_variants_each_publish_with_exact_frames(tmp_path, publisher, upload, run_workers, s3, settings):
    settings.REELFLOW_CHUNK_SECONDS = 2
    settings.REELFLOW_SEGMENT_SECONDS = 2
    sources = {
        "no-audio": make_clip(tmp_path / "noaudio.mp4", duration=3, width=320, height=240, audio=False),
        "odd": make_clip(tmp_path / "odd.mp4", duration=3, width=321, height=241, pix_fmt="yuv444p"),
        "vfr": make_clip(tmp_path / "vfr.mp4", duration=4, width=320, height=240, vfr=True),
        "rotated": make_clip(tmp_path / "rot.mp4", duration=3, width=320, height=240, rotate=90),
    }
    if SAMPLE.exists():
        sources["real-footage"] = SAMPLE
    jobs = {name: announce(upload(path, publisher, profile="fast")).job_id for name, path in sources.items()}

    run_workers(2)

    for name, job_id in jobs.items():
        job = EncodeJob.objects.get(pk=job_id)
        assert job.state == JobState.PUBLISHED, (name, job.failure_reason)
        planned = sum(job.chunks.values_list("frame_count", flat=True))
        for rendition in _video_renditions(job):
            assert rendition.frame_count == planned, (name, rendition.name)
            assert rendition.width % 2 == 0 and rendition.height % 2 == 0, (name, rendition.name)
            out = ffprobe_json("-show_streams", "-select_streams", "v:0", s3_url(rendition.output_key))
            stream = out["streams"][0]
            assert stream.get("sample_aspect_ratio", "1:1") in ("1:1", "0:1"), name
            assert not any(sd.get("rotation") for sd in stream.get("side_data_list", [])), name
    audio = {name: Rendition.objects.filter(job_id=job_id, kind="audio").count() for name, job_id in jobs.items()}
    assert audio["no-audio"] == 0 and audio["odd"] == 1
    rotated = _video_renditions(EncodeJob.objects.get(pk=jobs["rotated"]))
    assert all(r.height > r.width for r in rotated), "a rotated source plays upright (portrait)"
    assert EncodeJob.objects.get(pk=jobs["vfr"]).asset.probe["video"]["vfr"] is True


def s3_url(key: str) -> str:
    from core import s3 as s3_module

    return s3_module.presign_get(settings.S3_BUCKET_MEDIA, key, public=False)


def test_full_profile_runs_every_codec_and_skips_taller_rungs(tmp_path, publisher, upload, run_workers, s3, settings):
    settings.REELFLOW_CHUNK_SECONDS = 2
    settings.REELFLOW_SEGMENT_SECONDS = 2
    clip = make_clip(tmp_path / "small.mp4", duration=2, width=320, height=180, fps=25)
    job_id = announce(upload(clip, publisher, profile="full")).job_id

    run_workers(2, timeout=600)

    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    videos = _video_renditions(job)
    assert {r.params["codec"] for r in videos} == {"libx264", "libx265", "libvpx-vp9", "libsvtav1"}
    assert all(r.height <= 180 for r in videos), "rungs taller than the source are skipped"
    assert len(videos) == 8  # 144p at two rates for each of the four codecs
    assert Rendition.objects.filter(job=job, kind="audio").count() == 4
    package = download_package(s3, job, tmp_path / "pkg")
    master = m3u8.load(str(package / "master.m3u8"))
    codecs = " ".join(v.stream_info.codecs for v in master.playlists)
    for prefix in ("avc1", "hvc1", "vp09", "av01"):
        assert prefix in codecs, (prefix, codecs)
    dash = ffprobe_json("-show_streams", str(package / "manifest.mpd"))
    assert {s["codec_name"] for s in dash["streams"] if s["codec_type"] == "video"} == {"h264", "hevc", "vp9", "av1"}
