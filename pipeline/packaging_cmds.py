"""ffmpeg commands for the packaging step: HLS + DASH, poster, thumbnail sprite.

Split from :mod:`pipeline.ffmpeg` to keep modules small; these functions only build
arguments (run them with :func:`pipeline.ffmpeg.run_ffmpeg`) or post-process the files
ffmpeg wrote. No Django here either.

One ffmpeg run with the ``dash`` muxer and ``-hls_playlist 1`` writes a DASH manifest and
HLS playlists over the *same* fMP4 (CMAF-style) segments, so the media is stored once.
ffmpeg 5.1's master playlist already has BANDWIDTH, RESOLUTION, CODECS and the audio group;
:func:`write_master_playlist` rewrites it because its BANDWIDTH is the *average* bit rate
while HLS requires the peak segment bit rate (players that trust it stall on busy scenes),
and finishes the media playlists for VOD.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from pipeline.ffmpeg import VideoInfo, rendition_size

__all__ = [
    "HlsVariant",
    "SpriteLayout",
    "package_command",
    "poster_command",
    "sprite_command",
    "sprite_layout",
    "sprite_vtt",
    "write_master_playlist",
]

MANIFEST_NAME = "manifest.mpd"
MASTER_NAME = "master.m3u8"


def package_command(
    *,
    video_inputs: Sequence[tuple],
    audio_inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    segment_seconds: float,
) -> list[str]:
    """Arguments that package assembled renditions into DASH + HLS in ``out_dir``.

    ``video_inputs`` holds ``(path, VideoRendition)`` or ``(path, VideoRendition, (w, h))``.

    ``segment_seconds`` should be the real segment duration (``chunking.segment_duration_s``,
    e.g. 2.002 at 29.97 fps) so the muxer cuts at every keyframe the units placed.
    Renditions of one codec share an adaptation set (players switch within a set only when
    the codec matches); all audio goes in one set, which ffmpeg turns into one HLS audio
    group. Segments are forced to MP4: ``auto`` would write WebM for VP9/Opus, which HLS
    cannot play.
    """
    if not video_inputs:
        raise ValueError("packaging needs at least one video rendition")
    args: list[str] = []
    for entry in video_inputs:
        args += ["-i", str(entry[0])]
    for path in audio_inputs:
        args += ["-i", str(path)]

    # One adaptation set per codec and picture aspect: ffmpeg's DASH muxer refuses a set
    # whose members differ in aspect ratio (even by rounding, 426x240 beside 640x360).
    codec_sets: dict[tuple, list[int]] = {}
    for index, entry in enumerate(video_inputs):
        rendition = entry[1]
        size = entry[2] if len(entry) > 2 else None
        aspect = Fraction(size[0], size[1]) if size else None
        args += ["-map", f"{index}:v:0"]
        codec_sets.setdefault((rendition.codec, aspect), []).append(index)
    first_audio = len(video_inputs)
    for offset in range(len(audio_inputs)):
        args += ["-map", f"{first_audio + offset}:a:0"]

    sets = [f"id={n},streams={','.join(map(str, idx))}" for n, idx in enumerate(codec_sets.values())]
    if audio_inputs:
        audio_streams = ",".join(str(first_audio + n) for n in range(len(audio_inputs)))
        sets.append(f"id={len(sets)},streams={audio_streams}")

    out = Path(out_dir)
    args += [
        "-c", "copy", "-map_metadata", "-1", "-map_chapters", "-1",
        "-f", "dash",
        "-dash_segment_type", "mp4",
        "-seg_duration", f"{segment_seconds:.6f}",
        "-use_template", "1", "-use_timeline", "1",
        "-init_seg_name", "init-$RepresentationID$.m4s",
        "-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.m4s",
        "-adaptation_sets", " ".join(sets),
        "-hls_playlist", "1", "-hls_master_name", MASTER_NAME,
        str(out / MANIFEST_NAME),
    ]  # fmt: skip
    return args


@dataclass(frozen=True, slots=True)
class HlsVariant:
    """One #EXT-X-STREAM-INF entry as written by :func:`write_master_playlist`."""

    uri: str
    bandwidth: int
    average_bandwidth: int
    resolution: str | None
    codecs: str | None
    audio_group: str | None


_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def _attributes(text: str) -> dict[str, str]:
    return {key: value for key, value in _ATTRIBUTE.findall(text)}


def _media_segments(playlist: Path) -> list[tuple[float, Path]]:
    segments: list[tuple[float, Path]] = []
    duration: float | None = None
    for line in playlist.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].split(",", 1)[0])
        elif line and not line.startswith("#") and duration is not None:
            segments.append((duration, playlist.parent / line))
            duration = None
    return segments


def _bit_rates(playlist: Path) -> tuple[int, int]:
    """(peak, average) bits per second over a media playlist's segments, from file sizes."""
    segments = [(d, p.stat().st_size) for d, p in _media_segments(playlist) if d > 0]
    if not segments:
        return 0, 0
    peak = max(size * 8 / duration for duration, size in segments)
    average = sum(size for _, size in segments) * 8 / sum(d for d, _ in segments)
    return math.ceil(peak), math.ceil(average)


def _finish_media_playlist(playlist: Path) -> None:
    """VOD media playlist: declare it, drop ffmpeg's wall-clock PROGRAM-DATE-TIME tags.

    The dates are when packaging ran, meaningless for VOD and a source of diffs between
    otherwise identical re-runs.
    """
    lines = [
        line for line in playlist.read_text(encoding="utf-8").splitlines()
        if not line.startswith("#EXT-X-PROGRAM-DATE-TIME")
    ]  # fmt: skip
    if "#EXT-X-PLAYLIST-TYPE:VOD" not in lines:
        lines.insert(1, "#EXT-X-PLAYLIST-TYPE:VOD")
    playlist.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_master_playlist(
    *, out_dir: str | os.PathLike[str], frame_rate: Fraction | None = None
) -> list[HlsVariant]:
    """Rewrite ffmpeg's master playlist with peak BANDWIDTH; finish the media playlists.

    Keeps what ffmpeg 5.1 got right (RESOLUTION, CODECS, the audio group and its media
    entry) and changes: BANDWIDTH = peak video segment rate + peak audio rate (ffmpeg writes
    the average), AVERAGE-BANDWIDTH added, FRAME-RATE added when given, and
    #EXT-X-INDEPENDENT-SEGMENTS (every segment starts with an IDR). Idempotent.
    """
    out = Path(out_dir)
    master = out / MASTER_NAME
    lines = [line.strip() for line in master.read_text(encoding="utf-8").splitlines()]

    audio_rates: dict[str, tuple[int, int]] = {}
    for line in lines:
        if line.startswith("#EXT-X-MEDIA:"):
            attrs = _attributes(line[len("#EXT-X-MEDIA:") :])
            uri, group = attrs.get("URI", "").strip('"'), attrs.get("GROUP-ID", "").strip('"')
            if uri and group and attrs.get("TYPE") == "AUDIO":
                peak, avg = _bit_rates(out / uri)
                best_peak, best_avg = audio_rates.get(group, (0, 0))
                audio_rates[group] = (max(best_peak, peak), max(best_avg, avg))
                _finish_media_playlist(out / uri)

    header = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    media = [line for line in lines if line.startswith("#EXT-X-MEDIA:")]
    body: list[str] = []
    variants: list[HlsVariant] = []
    pending: dict[str, str] | None = None
    for line in lines:
        if line.startswith("#EXT-X-STREAM-INF:"):
            pending = _attributes(line[len("#EXT-X-STREAM-INF:") :])
        elif pending is not None and line and not line.startswith("#"):
            peak, avg = _bit_rates(out / line)
            group = pending.get("AUDIO", "").strip('"') or None
            audio_peak, audio_avg = audio_rates.get(group or "", (0, 0))
            attrs = {
                "BANDWIDTH": str(peak + audio_peak),
                "AVERAGE-BANDWIDTH": str(avg + audio_avg),
            }
            for key in ("RESOLUTION", "CODECS"):
                if key in pending:
                    attrs[key] = pending[key]
            if frame_rate:
                attrs["FRAME-RATE"] = f"{float(frame_rate):.3f}"
            if group:
                attrs["AUDIO"] = f'"{group}"'
            body += ["#EXT-X-STREAM-INF:" + ",".join(f"{k}={v}" for k, v in attrs.items()), line]
            variants.append(
                HlsVariant(
                    uri=line,
                    bandwidth=peak + audio_peak,
                    average_bandwidth=avg + audio_avg,
                    resolution=pending.get("RESOLUTION"),
                    codecs=pending.get("CODECS", "").strip('"') or None,
                    audio_group=group,
                )
            )
            _finish_media_playlist(out / line)
            pending = None
    master.write_text("\n".join([*header, *media, *body]) + "\n", encoding="utf-8")
    return variants


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
    return [
        "-ss", f"{max(0.0, duration_s * position):.3f}", "-i", str(input_url),
        "-map", "0:v:0", "-frames:v", "1", "-vf", f"scale={width}:{out_height},setsar=1",
        "-q:v", "3", "-update", "1", "-f", "image2", str(output_path),
    ]  # fmt: skip


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
    # eof_action=pass: a video shorter than one interval still gives its first frame (with
    # the default rounding the fps filter emits nothing and no sprite is written at all).
    filters = (
        f"fps=fps={interval.denominator}/{interval.numerator}:start_time=0:eof_action=pass,"
        f"scale={layout.thumb_width}:{layout.thumb_height},setsar=1,"
        f"tile={layout.columns}x{layout.rows}"
    )
    return [
        *(["-skip_frame", "nokey"] if keyframes_only else []),
        "-i", str(input_url), "-map", "0:v:0", "-an", "-sn", "-dn",
        "-vf", filters, "-frames:v", "1", "-q:v", "4", "-update", "1",
        "-f", "image2", str(output_path),
    ]  # fmt: skip


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
