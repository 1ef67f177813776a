"""ffmpeg commands for packaging: each rendition as one fragmented MP4, poster, thumbnail sprite.

Split from :mod:`pipeline.ffmpeg` to keep modules small; these functions only build
arguments, compiled by ffmpeg-python like the package's own builders (run them with
:func:`pipeline.ffmpeg.run_ffmpeg`). No Django here either.

Each rendition is written once, at assemble time, by ffmpeg's ``dash`` muxer in single-file
mode (one fragment per segment, a ``sidx`` index first); :mod:`pipeline.manifests` writes the
HLS playlists and the DASH manifest that address those files by byte range.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import ffmpeg as ffmpeg_lib

from pipeline.ffmpeg import VideoInfo, rendition_size
from pipeline.ffmpeg.graph import compile_args, output_args
from pipeline.manifests import MANIFEST_NAME, MASTER_NAME

__all__ = [
    "MANIFEST_NAME",
    "MASTER_NAME",
    "SpriteLayout",
    "download_mux_args",
    "poster_command",
    "rendition_package_args",
    "sprite_command",
    "sprite_layout",
    "sprite_vtt",
]


def rendition_package_args(
    *, out_dir: str | os.PathLike[str], file_name: str, segment_seconds: float, stream: str = "0:v:0"
) -> list[str]:
    """Output arguments (after the inputs) that write one rendition as a single fragmented MP4
    ``out_dir/file_name``: one fragment per segment, a global ``sidx`` at its head, and
    ffmpeg's own manifest and playlists for it beside (read by
    :func:`pipeline.manifests.rendition_layout`). Stream copy: the frames are the units'.

    ``segment_seconds`` should be the real segment duration (``chunking.segment_duration_s``,
    e.g. 2.002 at 29.97 fps) so the muxer cuts at every keyframe the units placed. Forced to
    MP4 fragments: ``auto`` would write WebM for VP9/Opus, which HLS cannot play."""
    # Asked for a millisecond less: a keyframe's time rounded down by the container's
    # timescale (4.0548 s for a 4.0549 s segment) must still start its segment. Keyframes
    # come only at segment boundaries, so the cuts are the same ones.
    return output_args(
        stream, Path(out_dir) / MANIFEST_NAME,
        format="dash", c="copy", map_metadata="-1", map_chapters="-1",
        dash_segment_type="mp4", seg_duration=f"{max(0.001, segment_seconds - 0.001):.6f}",
        single_file="1", single_file_name=file_name, global_sidx="1",
        hls_playlist="1", hls_master_name=MASTER_NAME,
    )  # fmt: skip


def download_mux_args(*, video: str, audio: str | None, output: str | os.PathLike[str]) -> list[str]:
    """A progressive MP4 a person can save and play: one video rendition with the audio
    rendition beside it, stream-copied (no re-encode), its index at the front (faststart)."""
    streams = [ffmpeg_lib.input(video)["v:0"]]
    if audio:
        streams.append(ffmpeg_lib.input(audio)["a:0"])
    return compile_args(
        ffmpeg_lib.output(*streams, str(output), format="mp4", c="copy", movflags="+faststart", map_metadata="-1")
    )


# --------------------------------------------------------------------------------------
# Poster and thumbnail sprite
# --------------------------------------------------------------------------------------


def poster_command(
    *,
    input_url: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    duration_s: float,
    source: VideoInfo,
    height: int | None = None,
    position: float = 0.1,
) -> list[str]:
    """One JPEG frame ``position`` (10 %) into the video: past black leaders and titles."""
    width, out_height = rendition_size(source=source, height=height or source.display_height)
    frame = ffmpeg_lib.input(str(input_url), ss=f"{max(0.0, duration_s * position):.3f}")["v:0"]
    frame = frame.filter("scale", width, out_height).filter("setsar", 1)
    return compile_args(
        frame.output(str(output_path), format="image2", update="1", **{"frames:v": "1", "q:v": "3"})
    )


@dataclass(frozen=True, slots=True)
class SpriteLayout:
    """Where thumbnail ``i`` (covering ``[i*interval_s, (i+1)*interval_s)``) sits in the sprite."""

    count: int
    columns: int
    rows: int
    interval_s: float
    thumb_width: int
    thumb_height: int


def sprite_layout(
    *,
    duration_s: float,
    source: VideoInfo,
    interval_s: float = 5.0,
    columns: int = 10,
    thumb_height: int = 90,
    max_thumbs: int = 400,
) -> SpriteLayout:
    """Thumbnail grid for a video: one every ``interval_s``, stretched for long videos.

    The last thumbnail's cue runs to the end of the video (see :func:`sprite_vtt`).

    ``max_thumbs`` bounds the JPEG (a 6 h film at 5 s would be a 4,320-tile image).
    """
    if duration_s <= 0 or interval_s <= 0 or columns <= 0:
        raise ValueError("duration_s, interval_s and columns must be positive")
    interval = max(interval_s, duration_s / max_thumbs)
    # The fps filter emits thumbnail i (nearest frame to i * interval) only when the video
    # runs past (i + 1/2) * interval; counting the same way leaves no black cell.
    count = max(1, math.ceil(duration_s / interval - 0.5 - 1e-9))
    width, height = rendition_size(source=source, height=thumb_height)
    columns = min(columns, count)
    return SpriteLayout(
        count=count,
        columns=columns,
        rows=math.ceil(count / columns),
        interval_s=interval,
        thumb_width=width,
        thumb_height=height,
    )


def sprite_command(
    *,
    input_url: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    layout: SpriteLayout,
    keyframes_only: bool = False,
) -> list[str]:
    """One JPEG holding ``layout.count`` thumbnails in a ``columns`` x ``rows`` grid.

    ``keyframes_only`` decodes only keyframes (``-skip_frame nokey``): many times faster on
    long videos, thumbnails then come from the nearest segment start.
    """
    interval = Fraction(layout.interval_s).limit_denominator(1000)
    video = ffmpeg_lib.input(str(input_url), **({"skip_frame": "nokey"} if keyframes_only else {}))["v:0"]
    # eof_action=pass: a video shorter than one interval still gives its first frame (with
    # the default rounding the fps filter emits nothing and no sprite is written at all).
    thumbs = video.filter(
        "fps", fps=f"{interval.denominator}/{interval.numerator}", start_time="0", eof_action="pass"
    )
    thumbs = thumbs.filter("scale", layout.thumb_width, layout.thumb_height).filter("setsar", 1)
    sprite = thumbs.filter("tile", layout=f"{layout.columns}x{layout.rows}")
    return compile_args(
        sprite.output(
            str(output_path), format="image2", update="1", an=None, sn=None, dn=None, **{"frames:v": "1", "q:v": "4"}
        )
    )


def _vtt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def sprite_vtt(*, layout: SpriteLayout, duration_s: float, sprite_url: str = "sprite.jpg") -> str:
    """WebVTT mapping time ranges to ``sprite.jpg#xywh=x,y,w,h`` (the player thumbnail format)."""
    cues = ["WEBVTT", ""]
    for index in range(layout.count):
        start = index * layout.interval_s
        last = index == layout.count - 1
        end = duration_s if last else min(duration_s, (index + 1) * layout.interval_s)
        if end <= start:
            break
        row, column = divmod(index, layout.columns)
        x, y = column * layout.thumb_width, row * layout.thumb_height
        cues += [
            f"{_vtt_time(start)} --> {_vtt_time(end)}",
            f"{sprite_url}#xywh={x},{y},{layout.thumb_width},{layout.thumb_height}",
            "",
        ]
    return "\n".join(cues)
