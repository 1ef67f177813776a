"""Quality tests use the pipeline's fixtures: the shipped ladders, publishers, uploads to the
session's SeaweedFS and burst workers on every pipeline queue (the "quality" one included)."""

import shutil

import pytest

from tests.pipeline.conftest import ladders, publisher, run_workers, upload  # noqa: F401 - fixtures

DEBIAN_FFMPEG = "/usr/bin/ffmpeg"


@pytest.fixture(scope="session")
def vmaf_ffmpeg() -> str:
    """The default measuring ffmpeg (imageio-ffmpeg's build), which must have libvmaf."""
    import imageio_ffmpeg

    from pipeline.quality.metrics import qc_tool

    binary = imageio_ffmpeg.get_ffmpeg_exe()
    assert qc_tool(binary).has_libvmaf, f"{binary} should be built with libvmaf"
    return binary


@pytest.fixture(scope="session")
def plain_ffmpeg() -> str:
    """Debian's ffmpeg: no libvmaf, the PSNR + SSIM fallback."""
    from pipeline.quality.metrics import qc_tool

    assert shutil.which(DEBIAN_FFMPEG), "the pipeline's own ffmpeg is Debian's"
    assert not qc_tool(DEBIAN_FFMPEG).has_libvmaf
    return DEBIAN_FFMPEG
