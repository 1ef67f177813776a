"""Which ffmpeg and ffprobe run, their versions and what the build decodes.

The binaries are the settings ``FFMPEG_BINARY`` / ``FFPROBE_BINARY``, read at call time (the
plain names on ``PATH`` outside Django). Asking a binary for its
version or codec list is a query, not a media command, so nothing here goes through
ffmpeg-python (it builds graphs from inputs to outputs, and these have neither).
"""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache

from django.conf import settings

from pipeline.ffmpeg.errors import TransientMediaError

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"


def ffmpeg_binary() -> str:
    return settings.FFMPEG_BINARY if settings.configured else FFMPEG


def ffprobe_binary() -> str:
    return settings.FFPROBE_BINARY if settings.configured else FFPROBE


def _version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "-version"], capture_output=True, check=True, timeout=30).stdout.decode(
            errors="replace"
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise TransientMediaError(f"{binary} -version failed: {exc}") from exc
    match = re.match(r"\S+ version (\S+)", out)
    return match.group(1) if match else out.splitlines()[0] if out else "unknown"


@lru_cache(maxsize=4)
def _cached_version(binary: str) -> str:
    return _version(binary)


def ffmpeg_version() -> str:
    """e.g. "5.1.9-0+deb12u1"; recorded in every artifact's lineage. Cached per binary."""
    return _cached_version(ffmpeg_binary())


def ffprobe_version() -> str:
    return _cached_version(ffprobe_binary())


@lru_cache(maxsize=4)
def _decodable_codecs(binary: str) -> frozenset[str]:
    """Codec names this ffmpeg build can decode (``ffmpeg -codecs``, 'D' flag)."""
    out = subprocess.run(
        [binary, "-hide_banner", "-codecs"], capture_output=True, check=False, timeout=30
    ).stdout.decode(errors="replace")
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] == "D":
            names.add(parts[1])
    return frozenset(names)


def warm_up() -> None:
    """Ask ffmpeg once, ahead of the first job, what jobs ask it (each answer is cached per
    process): its version, for lineage records, and the codecs it decodes, for ingest's
    checks. About 0.1 s each on a job's critical path otherwise."""
    ffmpeg_version()
    _decodable_codecs(ffmpeg_binary())
