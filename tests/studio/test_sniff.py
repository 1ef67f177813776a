"""Is it a video: extensions and container signatures, on real files where ffmpeg makes them."""

import pytest

from pipeline.ffmpeg import run_ffmpeg
from studio.sniff import HEAD_BYTES, container_of, extension_is_video
from tests.pipeline.clips import make_audio_only, make_clip, make_png, make_random, make_text


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        (".mp4", "mp4"),
        (".mov", "mp4"),
        (".mkv", "matroska"),
        (".webm", "matroska"),
        (".ts", "mpeg-ts"),
        (".avi", "avi"),
        (".flv", "flv"),
        (".mpg", "mpeg-ps"),
    ],
)
def test_containers_ffmpeg_writes_are_recognized(tmp_path, suffix, expected):
    source = make_clip(tmp_path / "src.mp4", duration=1, width=160, height=120, audio=False)
    target = tmp_path / f"clip{suffix}"
    codec = (
        ["-c:v", "libvpx-vp9"] if suffix == ".webm" else ["-c:v", "mpeg2video"] if suffix == ".mpg" else []
    )
    run_ffmpeg(["-i", str(source), *codec, str(target)])
    assert container_of(target.read_bytes()[:HEAD_BYTES]) == expected
    assert extension_is_video(target.name)


@pytest.mark.parametrize("make", [make_text, make_png, make_random])
def test_other_files_are_not_videos(tmp_path, make):
    path = make(tmp_path / "file.bin")
    assert container_of(path.read_bytes()[:HEAD_BYTES]) is None


def test_a_lone_sync_byte_is_not_a_transport_stream():
    assert container_of(b"GIF89a" + b"\x00" * 500) is None
    packets = (b"\x47" + b"\x00" * 187) * 3
    assert container_of(packets) == "mpeg-ts"


def test_extensions(tmp_path):
    assert extension_is_video("Holiday.MP4") and extension_is_video("a.b.mkv")
    assert not extension_is_video("notes.txt") and not extension_is_video("noextension")
    # An audio-only MP4 is an MP4 by its bytes: the pipeline's probe refuses it with a reason.
    assert container_of(make_audio_only(tmp_path / "a.m4a").read_bytes()[:HEAD_BYTES]) == "mp4"
