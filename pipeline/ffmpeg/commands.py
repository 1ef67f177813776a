"""Command builders: an encode unit's video, the audio of a whole file, the join of units.

Builders return the arguments that follow the program name and its global flags, compiled
by ffmpeg-python (:mod:`pipeline.ffmpeg.graph`); :func:`pipeline.ffmpeg.run_ffmpeg` adds the
rest.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import ffmpeg as ffmpeg_lib

from pipeline.chunking import Chunk, segment_frames
from pipeline.ffmpeg.graph import Filter, Stream, compile_args, input_args
from pipeline.ffmpeg.inputs import network_options
from pipeline.ffmpeg.mediainfo import VideoInfo
from pipeline.ffmpeg.renditions import AudioRendition, VideoRendition, _encoder_options, rendition_size

# Output options of a video-only output: no audio, subtitles, data, metadata or chapters.
_VIDEO_ONLY = {"an": None, "sn": None, "dn": None, "map_metadata": "-1", "map_chapters": "-1"}
# The units, in order, as one input: local files or http(s) URLs.
_CONCAT_INPUT = {"format": "concat", "safe": "0", "protocol_whitelist": "file,http,https,tcp,tls,crypto"}


def _seconds(value: float | Fraction) -> str:
    return f"{float(value):.6f}"


@dataclass(frozen=True, slots=True)
class ChunkInput:
    """How to read exactly one chunk's frames of a source: :meth:`open` reads them (the input
    options seek and bound the read, the ``steps`` put its frames on the planned grid with the
    first at 0), and ``padding`` (a filter to place after scaling) clones the last frame when
    the source ends a few frames early. ``args``, ``filters`` and ``pad`` are the same as
    command-line text (``args`` end with ``-i <source>``)."""

    url: str
    options: dict[str, str]
    steps: tuple[Filter, ...]
    padding: Filter

    def open(self, stream: str, **options: str) -> Stream:
        """Stream ``stream`` of the source (a stream specifier: the probed index, ``v:0``) with
        the steps applied, as ffmpeg-python; ``options`` are more input options (``threads``)."""
        frames = ffmpeg_lib.input(self.url, **{**self.options, **options})[stream]
        for step in self.steps:
            frames = step.on(frames)
        return frames

    @property
    def args(self) -> list[str]:
        return input_args(self.url, **self.options)

    @property
    def filters(self) -> list[str]:
        return [str(step) for step in self.steps]

    @property
    def pad(self) -> str:
        return str(self.padding)


def chunk_input(
    *, input_url: str | os.PathLike[str], chunk: Chunk, fps: Fraction, source: VideoInfo
) -> ChunkInput:
    """The source side of an encode unit, shared with quality measurement
    (:mod:`pipeline.quality.metrics`) so that both see the same frames, one to one.

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

    options = network_options(input_url, reconnect=True)
    seek = Fraction(0)
    if chunk.start_frame > 0:
        seek = Fraction(source.start_offset_s) + chunk_start - Fraction(1, 2) / fps
        options["ss"] = _seconds(seek)
    # After the seek, ffmpeg timestamps are relative to the seek point; shift them so the
    # chunk's first frame sits at 0.
    shift = seek - Fraction(source.start_offset_s) - chunk_start
    read_s = (chunk.frame_count + 1) / fps + Fraction(1, 2) / fps
    options["t"] = _seconds(read_s)

    steps = []
    if source.interlaced:
        steps.append(Filter("bwdif", options={"mode": "send_frame", "deint": "interlaced"}))
    steps += [
        Filter("setpts", (f"PTS{'+' if shift >= 0 else '-'}{float(abs(shift)):.9f}/TB",)),
        Filter("fps", options={"fps": f"{fps.numerator}/{fps.denominator}", "start_time": "0"}),
    ]
    pad_frames = max(2, math.ceil(fps / 2))
    padding = Filter("tpad", options={"stop_mode": "clone", "stop": str(pad_frames)})
    return ChunkInput(url=str(input_url), options=options, steps=tuple(steps), padding=padding)


def _scaled(frames: Stream, width: int, height: int) -> Stream:
    """A rendition's picture: its size, square pixels, 8-bit 4:2:0 for every codec."""
    return frames.filter("scale", width, height).filter("setsar", 1).filter("format", "yuv420p")


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
    capped = {"threads": str(threads)} if threads > 0 else {}
    encode = {**_encoder_options(rendition, gop=gop), **capped, "frames:v": str(chunk.frame_count), **_VIDEO_ONLY}
    if cached_input is not None:
        # Re-timed onto the 1/fps grid chunk_input's frames have.
        frames = ffmpeg_lib.input(str(cached_input), **capped)["v:0"]
        frames = frames.filter("settb", expr=f"{fps.denominator}/{fps.numerator}").filter("setpts", "N")
        outputs = [_scaled(frames, width, height).output(str(output_path), format="mp4", **encode)]
    else:
        read = chunk_input(input_url=input_url, chunk=chunk, fps=fps, source=source)
        # The probed stream by absolute index: "v:0" could be cover art.
        frames = read.open(str(source.index), **capped)
        if cache_output is None:
            outputs = [read.padding.on(_scaled(frames, width, height)).output(str(output_path), format="mp4", **encode)]
        else:
            enc, raw = _split(read.padding.on(frames))
            outputs = [
                _scaled(enc, width, height).output(str(output_path), format="mp4", **encode),
                _cache_output(raw, cache_output, frame_count=chunk.frame_count),
            ]
    # The decoder's threads are an input option (above), the encoder's an output option, the
    # filter graph's a global one (-filter_complex_threads: ffmpeg-python writes no -vf graph).
    return compile_args(*outputs, global_options={"filter_complex_threads": str(threads)} if threads > 0 else None)


def _split(frames: Stream) -> tuple[Stream, Stream]:
    node = frames.split()
    return node[0], node[1]


def _cache_output(frames: Stream, path: str | os.PathLike[str], *, frame_count: int) -> Stream:
    """The chunk's frames as they enter scaling, uncompressed, for :mod:`pipeline.decoded_cache`."""
    # Matroska checksums every cluster by default; nothing reads those CRCs (the cache is
    # checked by its size) and over raw frames they cost as much CPU as the rest of the write
    # (0.65 CPU-s per 20 s of 720p, measured).
    return frames.output(
        str(path), format="matroska", write_crc32="0", **{"c:v": "rawvideo", "frames:v": str(frame_count)}, **_VIDEO_ONLY
    )


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
    options = network_options(input_url, reconnect=True)
    if video_start_offset_s > 0:
        options["ss"] = _seconds(video_start_offset_s)
    audio = ffmpeg_lib.input(str(input_url), **options)["a:0" if stream_index is None else str(stream_index)]
    audio = audio.filter("aresample", **{"async": "1", "first_pts": "0"})
    limit = {}
    if duration_s is not None:
        audio = audio.filter("apad", whole_dur=f"{duration_s:.6f}")
        limit = {"t": f"{duration_s:.6f}"}
    encode = {
        "c:a": rendition.codec, "b:a": f"{rendition.bitrate_kbps}k",
        "ac": str(rendition.channels), "ar": str(rendition.sample_rate), "movflags": "+faststart",
    }  # fmt: skip
    no_others = {"vn": None, "sn": None, "dn": None, "map_metadata": "-1", "map_chapters": "-1"}
    return compile_args(audio.output(str(output_path), format="mp4", **limit, **encode, **no_others))


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
    units = ffmpeg_lib.input(str(list_file), **_CONCAT_INPUT)
    # ffmpeg-python maps a whole input by writing no -map (ffmpeg would then pick one stream
    # of each kind): -map 0 keeps them all.
    joined = units.output(str(output_path), format="mp4", map="0", c="copy", map_metadata="-1", movflags="+faststart")
    return compile_args(joined)


def concat_input_args(*, list_file: str | os.PathLike[str]) -> list[str]:
    """The input side of :func:`concat_command`: the units, in order, as one input."""
    return input_args(list_file, **_CONCAT_INPUT)
