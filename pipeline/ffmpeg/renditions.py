"""The encoding ladder's rungs and the encoder options every unit of a rung shares."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from pipeline.ffmpeg.errors import PermanentMediaError
from pipeline.ffmpeg.graph import option_args
from pipeline.ffmpeg.mediainfo import VideoInfo

VIDEO_CODECS = frozenset({"libx264", "libx265", "libvpx-vp9", "libsvtav1"})
AUDIO_CODECS = frozenset({"aac", "libopus"})


@dataclass(frozen=True, slots=True)
class VideoRendition:
    """One rung of the ladder.

    ``preset`` is the encoder's own: x264/x265 names ("veryfast"), SVT-AV1 a number
    ("8"), VP9 "deadline:cpu-used" ("good:4", "realtime:8"). Give ``crf`` (quality target),
    ``bitrate_kbps`` (average), or both (VP9 constrained quality); ``maxrate_kbps`` with
    ``bufsize_kbps`` caps peaks (capped CRF).
    """

    name: str
    codec: str
    height: int
    crf: int | None = None
    bitrate_kbps: int | None = None
    maxrate_kbps: int | None = None
    bufsize_kbps: int | None = None
    preset: str | None = None
    profile: str | None = None

    def __post_init__(self) -> None:
        if self.codec not in VIDEO_CODECS:
            raise ValueError(f"codec must be one of {sorted(VIDEO_CODECS)}, got {self.codec!r}")
        if self.height <= 0 or self.height % 2:
            raise ValueError(f"height must be a positive even number, got {self.height}")
        if self.crf is None and self.bitrate_kbps is None:
            raise ValueError("a rendition needs crf, bitrate_kbps or both")
        if (self.maxrate_kbps is None) != (self.bufsize_kbps is None):
            raise ValueError("maxrate_kbps and bufsize_kbps go together")


@dataclass(frozen=True, slots=True)
class AudioRendition:
    name: str
    codec: str
    bitrate_kbps: int
    channels: int = 2
    sample_rate: int = 48000

    def __post_init__(self) -> None:
        if self.codec not in AUDIO_CODECS:
            raise ValueError(f"codec must be one of {sorted(AUDIO_CODECS)}, got {self.codec!r}")
        if self.bitrate_kbps <= 0 or self.channels <= 0:
            raise ValueError("bitrate_kbps and channels must be positive")


def _even(value: Fraction | float) -> int:
    """Nearest even integer >= 2 (4:2:0 chroma needs even dimensions)."""
    return max(2, 2 * math.floor(Fraction(value) / 2 + Fraction(1, 2)))


def rendition_size(*, source: VideoInfo, height: int) -> tuple[int, int]:
    """Output width and height for a rendition: the source's display aspect, both even.

    Uses the display size (rotation and SAR applied), so a portrait phone clip stays portrait
    and anamorphic DVD footage gets square pixels.
    """
    if source.display_width <= 0 or source.display_height <= 0:
        raise PermanentMediaError("the video stream has no picture size (undecodable)")
    aspect = Fraction(source.display_width, source.display_height)
    # Prefer a size with EXACTLY the source's aspect (416x234 rather than 426x240 for 16:9):
    # the DASH muxer only puts renditions of one aspect ratio in one adaptation set, and
    # players switch bitrates within a set only. Such heights are multiples of
    # 2*denominator; take the nearest one within 7 % of the rung, else round to even.
    step = 2 * aspect.denominator
    exact = step * max(1, math.floor(Fraction(height, step) + Fraction(1, 2)))
    if abs(exact - height) <= height * 0.07 and exact <= max(height, source.display_height):
        return int(exact * aspect), exact
    out_height = _even(height)
    return _even(out_height * aspect), out_height



def _rate_options(rendition: VideoRendition) -> dict[str, str]:
    options: dict[str, str] = {}
    if rendition.crf is not None:
        options["crf"] = str(rendition.crf)
    if rendition.bitrate_kbps is not None:
        options["b:v"] = f"{rendition.bitrate_kbps}k"
    elif rendition.codec == "libvpx-vp9":
        # libvpx: CRF with -b:v 0 is constant quality; CRF capped by a maxrate needs the cap
        # as -b:v (constrained quality), it refuses a maxrate "without a bitrate".
        options["b:v"] = f"{rendition.maxrate_kbps}k" if rendition.maxrate_kbps else "0"
    if rendition.maxrate_kbps is not None:
        options |= {"maxrate": f"{rendition.maxrate_kbps}k", "bufsize": f"{rendition.bufsize_kbps}k"}
    return options


def _encoder_options(rendition: VideoRendition, *, gop: int) -> dict[str, str]:
    """Codec, preset and the closed, fixed GOP every segment boundary depends on, as output
    options (ffmpeg-python keywords)."""
    force = {"force_key_frames": f"expr:eq(mod(n,{gop}),0)"}
    codec = rendition.codec
    options = {"c:v": codec}
    if rendition.profile:
        options["profile:v"] = rendition.profile
    if codec == "libx264":
        options |= {
            "preset": rendition.preset or "veryfast",
            **_rate_options(rendition),
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
            "forced-idr": "1",
            **force,
        }
    elif codec == "libx265":
        options |= {
            "preset": rendition.preset or "veryfast",
            **_rate_options(rendition),
            "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0:log-level=error",
            "forced-idr": "1",
            **force,
            "tag:v": "hvc1",  # Apple players want hvc1 (parameter sets out of band)
        }
    elif codec == "libvpx-vp9":
        deadline, _, cpu_used = (rendition.preset or "good:4").partition(":")
        options |= {
            "deadline": deadline,
            "cpu-used": cpu_used or "4",
            "row-mt": "1",
            **_rate_options(rendition),
            "g": str(gop),
            "keyint_min": str(gop),
            **force,
        }
    else:  # libsvtav1: ffmpeg 5.1's wrapper ignores forced keyframes, so the GOP does it.
        options |= {
            "preset": rendition.preset or "8",
            **_rate_options(rendition),
            "g": str(gop),
            "svtav1-params": f"keyint={gop}:irefresh-type=2:scd=0",
        }
    return options


def _encoder_args(rendition: VideoRendition, *, gop: int) -> list[str]:
    """:func:`_encoder_options` as arguments, for a command line written by hand (the
    benchmark's single-process baseline)."""
    return option_args(_encoder_options(rendition, gop=gop))
