"""The one wrapper around ffmpeg and ffprobe (STYLE rule 7).

Everything that knows an ffmpeg flag, parses ffmpeg output or decides whether an ffmpeg
failure is worth retrying lives in this package (packaging-side commands live next door in
``pipeline.packaging_cmds`` and run through :func:`run_ffmpeg`). Services and RQ jobs call
these functions and handle the typed errors; nothing here imports Django, so it is tested
against the real binaries on tiny generated clips without settings.

* :mod:`~pipeline.ffmpeg.errors`: the typed errors and how a failure is classified;
* :mod:`~pipeline.ffmpeg.mediainfo`: what ffprobe says about a source, as dataclasses;
* :mod:`~pipeline.ffmpeg.probe`: running ffprobe (sources, and counts of encoded files);
* :mod:`~pipeline.ffmpeg.validation`: which sources are refused, and why;
* :mod:`~pipeline.ffmpeg.inputs`: how a source is opened (path or presigned URL);
* :mod:`~pipeline.ffmpeg.renditions`: the ladder's rungs and their encoder options;
* :mod:`~pipeline.ffmpeg.graph`: ffmpeg-python, which compiles the builders' command lines;
* :mod:`~pipeline.ffmpeg.commands`: the command builders (units, audio, joins);
* :mod:`~pipeline.ffmpeg.running`: running ffmpeg with progress, cancel and timeout;
* :mod:`~pipeline.ffmpeg.versions`: the binaries, their versions and codecs.

Command builders return the arguments that follow the program name and its global flags,
compiled by ffmpeg-python from a graph of inputs, filters and outputs; :func:`run_ffmpeg`
adds ``ffmpeg -hide_banner -nostdin -loglevel error -progress pipe:1 -y``. The full command
line it ran is returned in :class:`RunResult` for lineage.

The binaries are the settings ``FFMPEG_BINARY`` / ``FFPROBE_BINARY`` (``ffmpeg``/``ffprobe`` on
``PATH`` by default, and outside Django), read at call time.
"""

from pipeline.ffmpeg.commands import (
    ChunkInput,
    build_audio_command,
    build_unit_command,
    chunk_input,
    concat_command,
    concat_input_args,
    write_concat_list,
)
from pipeline.ffmpeg.errors import (
    DISK_FULL_REASON,
    UNDECODABLE_REASON,
    CommandDefectError,
    MediaCancelledError,
    MediaError,
    PermanentMediaError,
    TransientMediaError,
    classify_failure,
)
from pipeline.ffmpeg.inputs import _input_options  # noqa: F401 - pipeline.quality.metrics reads sources the same way
from pipeline.ffmpeg.mediainfo import AudioInfo, MediaInfo, VideoInfo
from pipeline.ffmpeg.probe import count_frames, keyframe_indices, probe, stream_durations
from pipeline.ffmpeg.renditions import (
    AUDIO_CODECS,
    VIDEO_CODECS,
    AudioRendition,
    VideoRendition,
    _encoder_args,  # noqa: F401 - bench/pipeline.py's single-process baseline encodes with the units' options
    rendition_size,
)
from pipeline.ffmpeg.running import Progress, RunResult, run_ffmpeg
from pipeline.ffmpeg.validation import MIN_DIMENSION, validate_source
from pipeline.ffmpeg.versions import FFMPEG, FFPROBE, ffmpeg_version, ffprobe_version, warm_up

__all__ = [
    "AUDIO_CODECS",
    "DISK_FULL_REASON",
    "FFMPEG",
    "FFPROBE",
    "MIN_DIMENSION",
    "VIDEO_CODECS",
    "AudioInfo",
    "AudioRendition",
    "ChunkInput",
    "CommandDefectError",
    "MediaCancelledError",
    "MediaError",
    "MediaInfo",
    "PermanentMediaError",
    "Progress",
    "RunResult",
    "TransientMediaError",
    "UNDECODABLE_REASON",
    "VideoInfo",
    "VideoRendition",
    "build_audio_command",
    "build_unit_command",
    "chunk_input",
    "classify_failure",
    "concat_command",
    "concat_input_args",
    "count_frames",
    "ffmpeg_version",
    "ffprobe_version",
    "keyframe_indices",
    "probe",
    "rendition_size",
    "run_ffmpeg",
    "stream_durations",
    "validate_source",
    "warm_up",
    "write_concat_list",
]
