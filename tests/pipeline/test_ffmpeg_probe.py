"""The ffmpeg wrapper against the real ffmpeg 5.1: probing, refusing bad input, reading over
HTTP, classifying failures, running, progress and cancelling.

No mocks: faults are injected for real (a killed process, /dev/full, a refusing port, an
HTTP server answering 500). Clips are generated once per module and kept tiny.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from pipeline import ffmpeg as ff
from pipeline.chunking import plan_chunks
from tests.pipeline import clips
from tests.pipeline.ffmpeg_support import SAMPLE, needs_sample, rendition

# --------------------------------------------------------------------------------------
# probe
# --------------------------------------------------------------------------------------


def test_probe_describes_a_clip_with_audio(clip):
    info = ff.probe(clip("plain"))
    assert info.container.startswith("mov,mp4")
    assert info.duration == pytest.approx(4.0, abs=0.05)
    assert info.size_bytes == clip("plain").stat().st_size
    assert info.bit_rate and info.bit_rate > 0
    video = info.video
    assert (video.codec, video.width, video.height) == ("h264", 320, 240)
    assert (video.display_width, video.display_height, video.rotation) == (320, 240, 0)
    assert video.fps == Fraction(25) and video.avg_fps == Fraction(25) and not video.vfr
    assert video.frame_count == 100
    assert (video.pix_fmt, video.bit_depth, video.interlaced, video.sar) == ("yuv420p", 8, False, 1)
    assert [(a.codec, a.channels, a.sample_rate) for a in info.audio] == [("aac", 2, 48000)]
    assert info.audio[0].channel_layout == "stereo" and info.audio[0].bitrate > 0
    assert info.subtitle_count == 0 and not info.truncated
    ff.validate_source(info)


def test_probe_of_a_clip_without_audio_has_no_audio_streams(clip):
    info = ff.probe(clip("no_audio"))
    assert info.audio == () and info.video.frame_count == 100
    ff.validate_source(info)


def test_probe_keeps_odd_dimensions_and_chroma_format(clip):
    video = ff.probe(clip("odd")).video
    assert (video.width, video.height, video.pix_fmt) == (321, 241, "yuv444p")


def test_probe_reports_ten_bit_depth(clip):
    video = ff.probe(clip("ten_bit")).video
    assert (video.pix_fmt, video.bit_depth) == ("yuv420p10le", 10)


def test_probe_detects_variable_frame_rate(clip):
    video = ff.probe(clip("vfr")).video
    assert video.vfr
    assert video.fps == Fraction(25) and video.avg_fps == Fraction(15)
    assert video.frame_count == 60


def test_probe_applies_display_matrix_rotation(clip):
    video = ff.probe(clip("rotated")).video
    assert video.rotation == 90
    assert (video.width, video.height) == (320, 240)
    assert (video.display_width, video.display_height) == (240, 320)


def test_probe_flags_interlaced_video(clip):
    video = ff.probe(clip("interlaced")).video
    assert video.interlaced and video.field_order in {"tt", "tb"}


def test_probe_reports_a_video_track_that_starts_late(clip):
    info = ff.probe(clip("late_video"))
    assert info.video.start_offset_s == pytest.approx(0.2, abs=0.002)


@needs_sample
def test_probe_of_the_real_sample():
    info = ff.probe(SAMPLE)
    video = info.video
    assert (video.width, video.height, video.fps, video.frame_count) == (960, 540, Fraction(30000, 1001), 150)
    assert not video.vfr
    assert info.duration == pytest.approx(5.06, abs=0.01)
    assert [(a.codec, a.channels) for a in info.audio] == [("aac", 2)]


# --------------------------------------------------------------------------------------
# bad input: each kind gets a reason a person can act on
# --------------------------------------------------------------------------------------


BAD_INPUTS = {
    "empty.mp4": (clips.make_empty, "not a media file"),
    "random.mp4": (clips.make_random, "not a media file"),
    "notes.txt": (clips.make_text, "not a media file"),
    "random.mov": (clips.make_random, "not a media file"),
    "truncated.mp4": (clips.make_truncated, "file is truncated"),
    "truncated-faststart.mp4": (partial(clips.make_truncated, faststart=True), "file is truncated"),
    "audio.m4a": (clips.make_audio_only, "no video stream"),
    "picture.png": (clips.make_png, "image, not a video"),
    "zero.mp4": (clips.make_zero_duration, "zero duration"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_refused_with_its_reason(tmp_path, name):
    make, reason = BAD_INPUTS[name]
    path = make(tmp_path / name)
    with pytest.raises(ff.PermanentMediaError) as caught:
        ff.validate_source(ff.probe(path))
    assert caught.value.reason.startswith(reason), caught.value.reason


def test_missing_file_is_permanent(tmp_path):
    with pytest.raises(ff.PermanentMediaError, match="file not found"):
        ff.probe(tmp_path / "nope.mp4")


def _with(info: ff.MediaInfo, **video_changes) -> ff.MediaInfo:
    from dataclasses import replace

    duration = video_changes.pop("container_duration", info.duration)
    return replace(info, duration=duration, video=replace(info.video, **video_changes))


def test_oversized_dimensions_are_refused(clip):
    info = _with(ff.probe(clip("no_audio")), width=100000, height=100000)
    with pytest.raises(ff.PermanentMediaError, match=r"^dimensions 100000x100000 exceed the 8K limit"):
        ff.validate_source(info)


def test_sources_over_the_duration_limit_are_refused(clip):
    info = _with(ff.probe(clip("no_audio")), container_duration=7 * 3600.0)
    with pytest.raises(ff.PermanentMediaError, match=r"^longer than the 6 h limit"):
        ff.validate_source(info)
    ff.validate_source(info, max_duration_s=8 * 3600)


def test_undecodable_codec_is_refused(clip):
    info = _with(ff.probe(clip("no_audio")), codec="reelflow_unknown")
    with pytest.raises(ff.PermanentMediaError, match=r"^unsupported video codec"):
        ff.validate_source(info)


# --------------------------------------------------------------------------------------
# http(s) sources (presigned URLs): a local server on the loopback interface
# --------------------------------------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path.startswith("/broken"):
            self.send_error(500, "storage backend unavailable")
            return
        super().do_GET()

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def http_base(clip) -> Iterator[str]:
    root = clip("http").parent
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_probe_reads_a_presigned_style_url(http_base):
    url = f"{http_base}/http.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc123"
    info = ff.probe(url)
    assert (info.video.width, info.video.height, info.video.frame_count) == (160, 120, 50)
    ff.validate_source(info)


def test_a_unit_reads_its_range_from_a_url(clip, http_base, tmp_path):
    video = ff.probe(clip("http")).video
    chunk = plan_chunks(duration_s=video.duration_s, fps=video.fps, chunk_seconds=1, segment_seconds=1)[1]
    output = tmp_path / "unit.mp4"
    args = ff.build_unit_command(
        input_url=f"{http_base}/http.mp4?X-Amz-Signature=abc",
        output_path=output,
        chunk=chunk,
        rendition=rendition(),
        fps=video.fps,
        segment_seconds=1,
        source=video,
    )
    assert ff.run_ffmpeg(args).frames == ff.count_frames(output) == 25


def test_http_not_found_is_permanent(http_base):
    with pytest.raises(ff.PermanentMediaError, match="HTTP 4xx"):
        ff.probe(f"{http_base}/missing.mp4")


def test_http_server_error_is_transient(http_base):
    with pytest.raises(ff.TransientMediaError, match="5xx"):
        ff.probe(f"{http_base}/broken/source.mp4")


def test_connection_refused_is_transient():
    with psutil_free_port() as port:
        url = f"http://127.0.0.1:{port}/source.mp4"
    with pytest.raises(ff.TransientMediaError, match="connection refused"):
        ff.probe(url)


class psutil_free_port:  # noqa: N801 - used as a context manager
    """A port that was free a moment ago (nothing listens on it)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


# --------------------------------------------------------------------------------------
# error classification
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stderr", "error", "reason"),
    [
        ("x.mp4: Invalid data found when processing input", ff.PermanentMediaError, "not a media file"),
        ("[mov] moov atom not found", ff.PermanentMediaError, "truncated"),
        ("Output file #0 does not contain any stream", ff.PermanentMediaError, "no audio or video"),
        ("[http] HTTP error 503 Service Unavailable\nServer returned 5XX Server Error reply",
         ff.TransientMediaError, "5xx"),
        ("Connection to tcp://s3:443 failed: Connection refused", ff.TransientMediaError, "refused"),
        ("Connection timed out", ff.TransientMediaError, "timed out"),
        ("av_interleaved_write_frame(): No space left on device", ff.TransientMediaError, "disk is full"),
        ("Server returned 403 Forbidden (access denied)", ff.TransientMediaError, "expired"),
        ("Unknown encoder 'libfoo'", ff.CommandDefectError, "rejected the command"),
        ("Cannot determine format of input stream 0:0 after EOF\nError marking filters as finished",
         ff.PermanentMediaError, "no frame of the video can be decoded"),
        ("something nobody has seen before", ff.TransientMediaError, "exit code 1) for an unrecognised reason"),
    ],
)  # fmt: skip
def test_failures_are_classified_from_stderr(stderr, error, reason):
    classified = ff.classify_failure(returncode=1, stderr_tail=stderr)
    assert type(classified) is error
    assert reason in classified.reason
    assert classified.stderr_tail == stderr


def test_a_corrupt_frame_does_not_make_a_network_failure_permanent():
    stderr = (
        "[h264] Error while decoding stream #0:0: Invalid data found when processing input\n"
        "[tls] Error in the pull function.\nConnection reset by peer"
    )
    assert isinstance(ff.classify_failure(returncode=1, stderr_tail=stderr), ff.TransientMediaError)


def test_death_by_signal_is_transient():
    error = ff.classify_failure(returncode=-9, stderr_tail="Invalid data found when processing input")
    assert isinstance(error, ff.TransientMediaError) and "SIGKILL" in error.reason


def test_a_crash_on_an_input_is_not_retried():
    # libvmaf's SIGSEGV on a 16x16 picture was retried 4 times as "out of memory" (issue 22).
    error = ff.classify_failure(returncode=-11, stderr_tail="")
    assert type(error) is ff.PermanentMediaError and "crashed (SIGSEGV)" in error.reason


def test_an_unknown_failure_keeps_ffmpegs_words_out_of_its_reason():
    error = ff.classify_failure(returncode=1, stderr_tail="[foo @ 0x1] Error marking nothing at all")
    assert "foo" not in error.reason and "0x1" not in error.reason
    assert "Error marking nothing" in error.stderr_tail


# --------------------------------------------------------------------------------------
# run_ffmpeg: progress, cancel, kill, timeout, real failures
# --------------------------------------------------------------------------------------

LONG_ENCODE = ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=300",
               "-c:v", "libx264", "-preset", "medium", "-f", "null", "-"]  # fmt: skip


def _ffmpeg_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name().startswith("ffmpeg")]


def test_progress_is_reported_with_increasing_percent_at_a_bounded_rate(clip, tmp_path):
    reports: list[ff.Progress] = []
    args = [
        "-i",
        str(clip("ten_s")),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-f",
        "mp4",
        str(tmp_path / "out.mp4"),
    ]
    result = ff.run_ffmpeg(args, on_progress=reports.append, total_frames=250, progress_interval_s=0.1)
    assert reports and reports[-1].done and reports[-1].percent == 100.0 and reports[-1].eta_s == 0
    percents = [r.percent for r in reports]
    assert percents == sorted(percents)
    assert reports[-1].frame == 250 and reports[-1].out_time_s == pytest.approx(10, abs=0.25)
    assert len(reports) <= result.wall_s / 0.1 + 3
    assert result.cpu_s > 0 and result.wall_s > 0 and result.command.startswith("ffmpeg ")
    assert result.frames == 250


def test_cancel_stops_ffmpeg_within_a_second():
    cancel = threading.Event()
    started = threading.Event()
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            ff.run_ffmpeg(
                LONG_ENCODE,
                on_progress=lambda _: started.set(),
                duration_s=300,
                cancel_event=cancel,
                progress_interval_s=0.1,
            )
        except ff.MediaError as exc:
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=work)
    thread.start()
    assert started.wait(10)
    cancelled_at = time.monotonic()
    cancel.set()
    thread.join(5)
    assert isinstance(outcome.get("error"), ff.MediaCancelledError)
    assert outcome["at"] - cancelled_at < 1.0
    assert _ffmpeg_children() == []


def test_killed_ffmpeg_is_a_transient_error():
    def kill_it(_: ff.Progress) -> None:
        for process in _ffmpeg_children():
            process.kill()

    with pytest.raises(ff.TransientMediaError, match="killed by SIGKILL") as caught:
        ff.run_ffmpeg(LONG_ENCODE, on_progress=kill_it, duration_s=300, progress_interval_s=0.1)
    assert caught.value.command.startswith("ffmpeg ")


def test_timeout_stops_ffmpeg_and_is_transient():
    started = time.monotonic()
    with pytest.raises(ff.TransientMediaError, match="did not finish within"):
        ff.run_ffmpeg(LONG_ENCODE, timeout=0.5)
    assert time.monotonic() - started < 2.0
    assert _ffmpeg_children() == []


def test_a_full_disk_is_transient_with_a_clear_reason():
    with pytest.raises(ff.TransientMediaError, match="disk is full") as caught:
        ff.run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=duration=1", "-f", "rawvideo", "/dev/full"])
    assert "No space left on device" in caught.value.stderr_tail


def test_running_on_garbage_is_permanent_with_stderr_tail(tmp_path):
    garbage = clips.make_random(tmp_path / "garbage.mp4")
    with pytest.raises(ff.PermanentMediaError) as caught:
        ff.run_ffmpeg(["-i", str(garbage), "-f", "null", "-"])
    assert "Invalid data found" in caught.value.stderr_tail


def test_versions_are_reported():
    assert re.match(r"\d+\.\d+", ff.ffmpeg_version())
    assert re.match(r"\d+\.\d+", ff.ffprobe_version())
