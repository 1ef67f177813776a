"""What the ffmpeg wrapper's tests share: tiny generated clips (once per module), the real
sample, fast encoder presets."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import ffmpeg as ff
from tests.conftest import sample_path
from tests.pipeline import clips

# shared/ sits beside the repository (CI lays a copy beside its fresh clone).
SAMPLE = sample_path("flower.mp4")
needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason=f"sample footage missing: {SAMPLE}")
FAST = {"libx264": "ultrafast", "libx265": "ultrafast", "libvpx-vp9": "realtime:8", "libsvtav1": "12"}


def rendition(codec: str = "libx264", height: int = 90, crf: int = 32, **extra) -> ff.VideoRendition:
    return ff.VideoRendition(
        name=f"{codec}-{height}", codec=codec, height=height, crf=crf, preset=FAST[codec], **extra
    )


class ClipCache:
    """Generates each named clip once per module (generation is most of the cost)."""

    SPECS = {
        "plain": {},
        "no_audio": {"audio": False},
        "odd": {"width": 321, "height": 241, "pix_fmt": "yuv444p", "audio": False},
        "ten_bit": {"pix_fmt": "yuv420p10le", "audio": False, "duration": 2},
        "vfr": {"vfr": True, "audio": False},
        "rotated": {"rotate": 90, "audio": False},
        "interlaced": {"interlaced": True, "audio": False, "duration": 2},
        "late_video": {"video_delay": 0.2, "duration": 6},
        "six": {"duration": 6, "audio": False},
        "ten_s": {"duration": 10, "width": 320, "height": 180, "audio": False},
        "http": {"faststart": True, "duration": 2, "width": 160, "height": 120},
        "package": {"duration": 6, "width": 320, "height": 180},
    }

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: dict[str, Path] = {}

    def __call__(self, name: str) -> Path:
        if name not in self.made:
            self.made[name] = clips.make_clip(self.root / f"{name}.mp4", **self.SPECS[name])
        return self.made[name]
