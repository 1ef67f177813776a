"""Tiny real media files for the ffmpeg tests, generated with lavfi in a temp dir.

Clips go through the code under test (``run_ffmpeg``), so the fixture generator and the
wrapper are exercised together. Everything is small (160-320 px, a few seconds, ultrafast)
so a whole test module stays well under a minute on two cores.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from pipeline.ffmpeg import run_ffmpeg


def make_clip(
    path: Path,
    *,
    duration: float = 4,
    width: int = 320,
    height: int = 240,
    fps: int | str = 25,
    audio: bool = True,
    vfr: bool = False,
    rotate: int | None = None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    gop_s: float = 1.0,
    video_delay: float = 0.0,
    faststart: bool = False,
    interlaced: bool = False,
) -> Path:
    """testsrc2 (+ a 440 Hz sine, stereo AAC) with the requested oddities.

    * ``vfr``: drops 4 of every 10 frames and keeps the gaps (``-fps_mode vfr``).
    * ``rotate``: written as a display matrix. ffmpeg 5.1 has no ``-display_rotation``
      and ignores the ``rotate`` tag when encoding, but its MP4 muxer turns the tag into a
      display matrix on a stream copy, so it is a second, copy-only pass.
    * ``video_delay``: the video track starts that many seconds after the audio.
    * odd sizes need a pixel format without chroma subsampling (``pix_fmt="yuv444p"``).
    """
    path = Path(path)
    fps_text = str(fps)
    # testsrc2 rounds sizes to even numbers; testsrc keeps odd ones.
    source = "testsrc2" if width % 2 == 0 and height % 2 == 0 else "testsrc"
    video_in = ["-f", "lavfi", "-i", f"{source}=size={width}x{height}:rate={fps_text}:duration={duration}"]
    if video_delay:
        video_in = ["-itsoffset", str(video_delay), *video_in]
    args = list(video_in)
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration}"]
    args += ["-map", "0:v"]
    if audio:
        args += ["-map", "1:a", "-c:a", "aac", "-b:a", "64k", "-ac", "2"]
    if vfr:
        args += ["-vf", r"select='not(between(mod(n\,10)\,3\,6))'", "-fps_mode", "vfr"]
    elif video_delay:
        args += ["-fps_mode", "passthrough"]  # cfr would fill the gap with duplicated frames
    gop = max(1, round(float(eval_fps(fps_text)) * gop_s))
    args += ["-c:v", codec, "-pix_fmt", pix_fmt, "-g", str(gop)]
    if codec == "libx264":
        args += ["-preset", "ultrafast"]
        if interlaced:
            args += ["-flags", "+ildct+ilme", "-x264opts", "tff=1"]
    if faststart and not rotate:
        args += ["-movflags", "+faststart"]
    target = path if not rotate else path.with_name(f"unrotated-{path.name}")
    run_ffmpeg([*args, str(target)])
    if rotate:
        copy = ["-i", str(target), "-map", "0", "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}"]
        if faststart:
            copy += ["-movflags", "+faststart"]
        run_ffmpeg([*copy, str(path)])
        target.unlink()
    return path


def eval_fps(text: str) -> float:
    num, _, den = text.partition("/")
    return int(num) / int(den or 1)


def make_audio_only(path: Path, *, duration: float = 2) -> Path:
    run_ffmpeg(["-f", "lavfi", "-i", f"sine=duration={duration}", "-c:a", "aac", str(path)])
    return path


def make_png(path: Path, *, width: int = 160, height: int = 120) -> Path:
    """A real PNG written by hand (no ffmpeg), so the image test does not trust ffmpeg twice."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    # Filter type 0 per row, then RGB bytes: a gradient, so it is a real picture.
    raw = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in ((x * 3) % 256, (y * 2) % 256, 90))
        for y in range(height)
    )
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw))
    png += chunk(b"IEND", b"")
    path.write_bytes(png)
    return path


def make_text(path: Path) -> Path:
    path.write_text("This is not a video.\nIt is a shopping list: milk, eggs.\n", encoding="utf-8")
    return path


def make_random(path: Path, *, size: int = 64 * 1024) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def make_empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def make_truncated(path: Path, *, faststart: bool = False, keep: float = 0.5) -> Path:
    """An MP4 cut short, as an interrupted upload leaves it.

    Without faststart the index is at the end and is lost; with faststart the index
    survives and describes data that is not there.
    """
    full = make_clip(
        path.with_name(f"full-{path.name}"), duration=2, width=160, height=120, faststart=faststart
    )
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    full.unlink()
    return path


def make_zero_duration(path: Path) -> Path:
    """An MP4 whose container says 0 s (a ``-t 0`` stream copy keeps one empty track)."""
    source = make_clip(path.with_name(f"src-{path.name}"), duration=1, width=160, height=120)
    run_ffmpeg(["-i", str(source), "-t", "0", "-c", "copy", str(path)])
    source.unlink()
    return path
