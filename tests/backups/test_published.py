"""The default policy protects everything a viewer needs: a published package (HLS master and
media playlists, fMP4 segments) is backed up from its `job.published` event, and
`manage.py restore --asset` brings back a package that plays after it was damaged."""

import json
import random
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from backups.models import BackupPolicy, BackupRun, ObjectVersion, RunState, RunTrigger
from backups.services import intake, runs
from core.services import event_record
from tests.backups.test_policy import default_policy_ensure

pytestmark = pytest.mark.django_db


def _package(folder: Path) -> None:
    """A real two-second HLS package (fMP4 segments, a master playlist) made by ffmpeg."""
    folder.mkdir()
    subprocess.run(  # noqa: S603
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "2",
         "-c:v", "libx264", "-g", "10", "-f", "hls", "-hls_time", "1", "-hls_segment_type", "fmp4",
         "-hls_playlist_type", "vod", str(folder / "h264-240p.m3u8")],
        check=True, capture_output=True,
    )  # fmt: skip
    (folder / "master.m3u8").write_text(
        '#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-STREAM-INF:BANDWIDTH=200000,RESOLUTION=64x48,CODECS="avc1.64000a"\n'
        "h264-240p.m3u8\n"
    )


def _frames(master: Path) -> int:
    out = subprocess.run(  # noqa: S603
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_frames", "-of", "json", str(master)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return int(json.loads(out.stdout)["streams"][0]["nb_read_frames"])


def _download(s3, prefix: str, folder: Path) -> None:
    folder.mkdir()
    listing = s3.list_objects_v2(Bucket=settings.S3_BUCKET_MEDIA, Prefix=prefix)
    for obj in listing.get("Contents", []):
        (folder / obj["Key"][len(prefix) :]).write_bytes(
            s3.get_object(Bucket=settings.S3_BUCKET_MEDIA, Key=obj["Key"])["Body"].read()
        )


def test_a_published_package_is_backed_up_from_its_event_and_restore_asset_brings_back_one_that_plays(
    s3, tmp_path
):
    asset, job = random.randint(10**8, 10**9), random.randint(10**8, 10**9)  # noqa: S311 - a test's unique id
    prefix = f"published/{asset}/{job}/"
    _package(tmp_path / "made")
    for path in sorted((tmp_path / "made").iterdir()):
        s3.put_object(Bucket=settings.S3_BUCKET_MEDIA, Key=prefix + path.name, Body=path.read_bytes())
    expected_frames = _frames(tmp_path / "made" / "master.m3u8")
    policy = default_policy_ensure()
    BackupPolicy.objects.exclude(pk=policy.pk).update(enabled=False)
    event_record(type="job.published", subject=("pipeline.encodejob", job), payload={"asset": asset, "prefix": prefix[:-1]})

    intake.events_follow()
    started = runs.event_runs_start()
    assert [r.policy_id for r in started] == [policy.pk]
    run = runs.run_execute(run_id=started[0].pk)

    assert run.trigger == RunTrigger.EVENT and run.state == RunState.SUCCEEDED, run.error
    backed_up = set(ObjectVersion.objects.filter(source__policy=policy, key__startswith=prefix).values_list("key", flat=True))
    assert {prefix + "master.m3u8", prefix + "h264-240p.m3u8", prefix + "init.mp4"} <= backed_up
    assert len(backed_up) == len(list((tmp_path / "made").iterdir()))
    # Damage it as the acceptance run did: a segment's bytes altered, the master playlist gone.
    segment = next(k for k in sorted(backed_up) if k.endswith(".m4s"))
    s3.put_object(Bucket=settings.S3_BUCKET_MEDIA, Key=segment, Body=b"\x00" * 4096)
    s3.delete_object(Bucket=settings.S3_BUCKET_MEDIA, Key=prefix + "master.m3u8")

    call_command("restore", "--policy", "default", "--asset", str(asset), "--yes")

    _download(s3, prefix, tmp_path / "restored")
    assert sorted(p.name for p in (tmp_path / "restored").iterdir()) == sorted(p.name for p in (tmp_path / "made").iterdir())
    assert _frames(tmp_path / "restored" / "master.m3u8") == expected_frames == 20
    assert BackupRun.objects.filter(policy=policy).count() == 1
