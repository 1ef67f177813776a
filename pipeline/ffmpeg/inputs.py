"""How a source is opened: a local path, or an http(s) presigned URL with network options."""

from __future__ import annotations

import os

from pipeline.ffmpeg.graph import option_args

_NETWORK_TIMEOUT_US = 30_000_000  # ffmpeg's -rw_timeout: a stalled read fails instead of hanging


def _is_url(url_or_path: str | os.PathLike[str]) -> bool:
    return str(url_or_path).startswith(("http://", "https://"))


def network_options(url_or_path: str | os.PathLike[str], *, reconnect: bool) -> dict[str, str]:
    """Protocol options for network inputs; file inputs take none (ffmpeg rejects them)."""
    if not _is_url(url_or_path):
        return {}
    options = {"rw_timeout": str(_NETWORK_TIMEOUT_US)}
    if reconnect:
        # A long unit read over HTTP survives a dropped connection by resuming with a range
        # request instead of failing the whole unit.
        options |= {"reconnect": "1", "reconnect_streamed": "1", "reconnect_delay_max": "5"}
    return options


def _input_options(url_or_path: str | os.PathLike[str], *, reconnect: bool) -> list[str]:
    """:func:`network_options` as arguments (ffprobe's command line is written by hand)."""
    return option_args(network_options(url_or_path, reconnect=reconnect))
