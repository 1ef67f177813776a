"""Real-world oddities, generated with ffmpeg (issue 22): each reproduces one way a real file
lost frames or failed badly. Tiny and quick, like ``clips``.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pipeline.ffmpeg import run_ffmpeg
from tests.pipeline.clips import make_clip


def make_ts_with_reset(path: Path, *, part_s: float = 3, fps: int = 25) -> Path:
    """Two transport-stream recordings joined end to end: the timestamps of the second jump
    back to those of the first (a camera restarting its clock). ffprobe says ``part_s``; the
    file decodes ``2 * part_s * fps`` frames."""
    part = path.with_name(f"part-{path.name}")
    run_ffmpeg([
        "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={fps}:duration={part_s}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={part_s}",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps), "-c:a", "aac", "-f", "mpegts", str(part),
    ])  # fmt: skip
    data = part.read_bytes()
    path.write_bytes(data + data)
    part.unlink()
    return path


def make_short_declared_mkv(path: Path, *, duration: float = 3, declared: float = 2.2, fps: int = 25) -> Path:
    """A Matroska file whose header declares ``declared`` seconds while its frames run for
    ``duration`` (a camera or an editor that wrote the duration before the last frames)."""
    make_clip(path, duration=duration, width=320, height=240, fps=fps, audio=False)
    if path.suffix != ".mkv":
        raise ValueError("make_short_declared_mkv writes Matroska: name it .mkv")
    data = bytearray(path.read_bytes())
    # Segment Info's Duration: element 0x4489, an 8-byte float in TimecodeScale units (ms).
    at = data.find(b"\x44\x89\x88")
    if at < 0:
        raise ValueError("no 8-byte Duration element in the Matroska header")
    data[at + 3 : at + 11] = struct.pack(">d", declared * 1000)
    path.write_bytes(bytes(data))
    return path


def make_extreme_vfr(path: Path, *, frames: int = 84, seconds: float = 11.35) -> Path:
    """A phone-style clip: ``frames`` frames spread irregularly over ``seconds`` (a 600 Hz
    timescale, intervals from 1 to 199 ticks apart around the mean)."""
    ticks = round(seconds * 600 / frames)
    run_ffmpeg([
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
        "-frames:v", str(frames), "-vf", f"settb=1/600,setpts='N*{ticks}+mod(N*37\\,{ticks})'",
        "-fps_mode", "passthrough", "-video_track_timescale", "600",
        "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", str(path),
    ])  # fmt: skip
    return path


def make_undecodable_mp4(path: Path) -> Path:
    """An MP4 whose index (moov) is whole but whose media data is gone (zeroed): ffprobe
    describes it, yet not one frame decodes."""
    make_clip(path, duration=2, width=320, height=240, audio=False)
    data = bytearray(path.read_bytes())
    at = 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", bytes(data[at : at + 8]))
        if kind == b"mdat":
            data[at + 8 : at + size] = bytes(size - 8)
        if size < 8:
            break
        at += size
    path.write_bytes(bytes(data))
    return path
