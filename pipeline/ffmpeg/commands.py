"""Command builders: an encode unit's video, the audio of a whole file, the join of units.

Builders return the arguments that follow the program name and its global flags;
:func:`pipeline.ffmpeg.run_ffmpeg` adds the rest.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from pipeline.chunking import Chunk, segment_frames
from pipeline.ffmpeg.inputs import _input_options
from pipeline.ffmpeg.mediainfo import VideoInfo
from pipeline.ffmpeg.renditions import AudioRendition, VideoRendition, _encoder_args, rendition_size

_VIDEO_ONLY = ("-an", "-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1")


def _seconds(value: float | Fraction) -> str:
    return f"{float(value):.6f}"


@dataclass(frozen=True, slots=True)
class ChunkInput:
    """How to read exactly one chunk's frames of a source: ``args`` end with ``-i <source>``,
    ``filters`` put its frames on the planned grid with the first at 0, and ``pad`` (a filter
    to place after scaling) clones the last frame when the source ends a few frames early."""

    args: list[str]
    filters: list[str]
    pad: str


def chunk_input(
    *, input_url: str | os.PathLike[str], chunk: Chunk, fps: Fraction, source: VideoInfo
) -> ChunkInput:
    """The source side of an encode unit, shared with quality measurement
    (:mod:`pipeline.quality_cmds`) so that both see the same frames, one to one.

    How the range stays frame exact:

    * the input seek goes half a frame *before* the chunk's first frame (ffmpeg's accurate
      seek drops frames before the seek point, and a seek time rounded up to the microsecond
      would drop the first wanted frame), and ``setpts`` shifts that half frame back so
      the chunk's first frame is at 0;
    * ``fps=<planned fps>:start_time=0`` makes the output constant-rate on the global frame
      grid (a no-op for CFR sources, the VFR to CFR conversion otherwise);
    * ``-t`` bounds how much is read, ``tpad`` clones the last frame if the source ends a
      few frames early (edit-list slop); the caller cuts at ``chunk.frame_count``.
    """
    fps = Fraction(fps)
    chunk_start = Fraction(chunk.start_frame) / fps  # relative to the first video frame

    args = _input_options(input_url, reconnect=True)
    seek = Fraction(0)
    if chunk.start_frame > 0:
        seek = Fraction(source.start_offset_s) + chunk_start - Fraction(1, 2) / fps
        args += ["-ss", _seconds(seek)]
    # After the seek, ffmpeg timestamps are relative to the seek point; shift them so the
    # chunk's first frame sits at 0.
    shift = seek - Fraction(source.start_offset_s) - chunk_start
    read_s = (chunk.frame_count + 1) / fps + Fraction(1, 2) / fps
    args += ["-t", _seconds(read_s), "-i", str(input_url)]

    filters = []
    if source.interlaced:
        filters.append("bwdif=mode=send_frame:deint=interlaced")
    filters += [
        f"setpts=PTS{'+' if shift >= 0 else '-'}{float(abs(shift)):.9f}/TB",
        f"fps=fps={fps.numerator}/{fps.denominator}:start_time=0",
    ]
    pad_frames = max(2, math.ceil(fps / 2))
    return ChunkInput(args=args, filters=filters, pad=f"tpad=stop_mode=clone:stop={pad_frames}")


def build_unit_command(
    *,
    input_url: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    chunk: Chunk,
    rendition: VideoRendition,
    fps: Fraction,
    segment_seconds: int,
    source: VideoInfo,
    cached_input: str | os.PathLike[str] | None = None,
    cache_output: str | os.PathLike[str] | None = None,
    threads: int = 0,
) -> list[str]:
    """Arguments for one encode unit: exactly ``chunk.frame_count`` frames of one rendition.

    The range is read by :func:`chunk_input` (a seek half a frame early, re-timed onto the
    planned frame grid, the last frame cloned if the source ends early) and ``-frames:v``
    cuts at the exact count.

    Video only (audio is encoded once per file); autorotate is ffmpeg's default, so the
    output has the display orientation and no rotation metadata; ``setsar=1`` and 8-bit
    4:2:0 for every codec; an IDR at frame 0 and a closed GOP of exactly one segment. The
    MP4 output joins losslessly with the concat demuxer for all four codecs.

    :mod:`pipeline.decoded_cache`: with ``cache_output`` the same run also writes the chunk's
    frames as they enter scaling, uncompressed, to that file (Matroska); ``cached_input`` reads
    such a file instead of the source, re-timed onto the same 1/fps grid as :func:`chunk_input`
    gives, so the encoder sees the same frames with the same timestamps either way.

    ``threads`` > 0 caps every stage's threads at the unit's share of the CPUs: the decoder's,
    the filter graph's (scaling) and the encoder's (0: ffmpeg's own choice, one or more per
    CPU each). Where every CPU already runs a unit, threads only add overhead: one thread
    each encodes the same ladder with less CPU (x264: 5 % less on 2 CPUs with 2 workers; a
    single-threaded decoder and scaler another 6-9 % of a 720p unit that decodes its chunk).
    """
    fps = Fraction(fps)
    gop = segment_frames(fps=fps, segment_seconds=segment_seconds)
    width, height = rendition_size(source=source, height=rendition.height)
    scaling = [f"scale={width}:{height}", "setsar=1", "format=yuv420p"]
    tail = [
        *_encoder_args(rendition, gop=gop),
        *(["-threads", str(threads)] if threads > 0 else []),
        "-frames:v", str(chunk.frame_count),
        "-f", "mp4", str(output_path),
    ]  # fmt: skip
    # Global options first, then the decoder's (an input option).
    capped = ["-filter_threads", str(threads), "-filter_complex_threads", str(threads)] if threads > 0 else []
    decoder = ["-threads", str(threads)] if threads > 0 else []
    if cached_input is not None:
        grid = [f"settb=expr={fps.denominator}/{fps.numerator}", "setpts=N"]
        return [
            *capped, *decoder,
            "-i", str(cached_input), "-map", "0:v:0", *_VIDEO_ONLY,
            "-vf", ",".join([*grid, *scaling]), *tail,
        ]  # fmt: skip
    read = chunk_input(input_url=input_url, chunk=chunk, fps=fps, source=source)
    if cache_output is not None:
        return [
            *capped, *decoder,
            *_caching_unit_args(read, scaling=scaling, tail=tail, source=source, chunk=chunk, cache_output=cache_output),
        ]  # fmt: skip
    return [
        *capped, *decoder, *read.args,
        # The probed stream by absolute index: "0:v:0" could be cover art.
        "-map", f"0:{source.index}", *_VIDEO_ONLY,
        "-vf", ",".join([*read.filters, *scaling, read.pad]),
        *tail,
    ]  # fmt: skip


def _caching_unit_args(
    read: ChunkInput,
    *,
    scaling: list[str],
    tail: list[str],
    source: VideoInfo,
    chunk: Chunk,
    cache_output: str | os.PathLike[str],
) -> list[str]:
    """The source read once, split between the encode and the decoded-chunk cache file."""
    # The probed stream by absolute index: "0:v:0" could be cover art.
    graph = (
        f"[0:{source.index}]{','.join([*read.filters, read.pad])},split=2[enc][raw];"
        f"[enc]{','.join(scaling)}[v]"
    )
    return [
        *read.args, "-filter_complex", graph,
        "-map", "[v]", *_VIDEO_ONLY, *tail,
        "-map", "[raw]", *_VIDEO_ONLY, "-c:v", "rawvideo",
        "-frames:v", str(chunk.frame_count),
        # Matroska checksums every cluster by default; nothing reads those CRCs (the
        # cache is checked by its size) and over raw frames they cost as much CPU as
        # the rest of the write (0.65 CPU-s per 20 s of 720p, measured).
        "-f", "matroska", "-write_crc32", "0", str(cache_output),
    ]  # fmt: skip


def build_audio_command(
    *,
    input_url: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    rendition: AudioRendition,
    stream_index: int | None = None,
    video_start_offset_s: float = 0.0,
    duration_s: float | None = None,
) -> list[str]:
    """Arguments that encode one audio rendition of the WHOLE file, once.

    Per-chunk AAC clicks and drifts at every join (priming samples), so audio never follows
    the chunking. ``video_start_offset_s`` (``VideoInfo.start_offset_s``) trims audio that
    precedes the first video frame, and ``aresample=async=1:first_pts=0`` pads audio that
    starts late with silence, so audio and the video units both start at 0.
    ``stream_index`` is ``AudioInfo.index`` (absolute); by default the first audio stream.
    ``duration_s`` (the video's planned duration) pads audio that ends early with silence and
    cuts audio that runs long, so audio and video end within one audio frame of each other.
    """
    args = _input_options(input_url, reconnect=True)
    if video_start_offset_s > 0:
        args += ["-ss", _seconds(video_start_offset_s)]
    audio_filter = "aresample=async=1:first_pts=0"
    limit: list[str] = []
    if duration_s is not None:
        audio_filter += f",apad=whole_dur={duration_s:.6f}"
        limit = ["-t", f"{duration_s:.6f}"]
    args += [
        "-i", str(input_url),
        "-map", "0:a:0" if stream_index is None else f"0:{stream_index}", "-vn", "-sn", "-dn",
        "-map_metadata", "-1", "-map_chapters", "-1",
        "-af", audio_filter, *limit,
        "-c:a", rendition.codec, "-b:a", f"{rendition.bitrate_kbps}k",
        "-ac", str(rendition.channels), "-ar", str(rendition.sample_rate),
        "-movflags", "+faststart", "-f", "mp4", str(output_path),
    ]  # fmt: skip
    return args


def write_concat_list(*, paths: Sequence[str | os.PathLike[str]], list_file: str | os.PathLike[str]) -> None:
    """Write a concat-demuxer list; quotes are escaped the way the demuxer reads them."""
    lines = []
    for path in paths:
        escaped = str(path).replace("'", "'\\''")
        lines.append(f"file '{escaped}'\n")
    Path(list_file).write_text("".join(lines), encoding="utf-8")


def concat_command(*, list_file: str | os.PathLike[str], output_path: str | os.PathLike[str]) -> list[str]:
    """Join one rendition's unit outputs, in order, without re-encoding.

    The concat demuxer re-timestamps each unit after the previous one (units all start at
    0), ``-c copy`` keeps the exact frames and GOPs, ``+faststart`` puts the index first
    for progressive playback. Units may be local files or http(s) URLs.
    """
    return [
        *concat_input_args(list_file=list_file),
        "-map", "0", "-c", "copy", "-map_metadata", "-1",
        "-movflags", "+faststart", "-f", "mp4", str(output_path),
    ]  # fmt: skip


def concat_input_args(*, list_file: str | os.PathLike[str]) -> list[str]:
    """The input side of :func:`concat_command`: the units, in order, as one input."""
    return ["-f", "concat", "-safe", "0", "-protocol_whitelist", "file,http,https,tcp,tls,crypto", "-i", str(list_file)]
