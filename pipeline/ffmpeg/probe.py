"""ffprobe: describe a source, and count what an encode wrote (frames, keyframes, durations).

ffprobe's command lines are written here by hand: ffmpeg-python 0.2.0's ``probe()`` takes no
timeout (a ``timeout=`` keyword would become ffprobe's own ``-timeout`` option) and its
process cannot be stopped, so a stalled probe would hang its job.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pipeline.ffmpeg.errors import (
    MediaError,
    PermanentMediaError,
    TransientMediaError,
    _decode,
    _tail_text,
    classify_failure,
)
from pipeline.ffmpeg.inputs import _input_options, _is_url
from pipeline.ffmpeg.mediainfo import MediaInfo, _float, _media_info
from pipeline.ffmpeg.versions import ffprobe_binary

# First-box types of an ISO BMFF (MP4/MOV) file: tells "truncated MP4" from "random bytes".
_BMFF_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"})
_PICTURE_SIZE_INVALID = re.compile(r"Picture size (\d+)x(\d+) is invalid")


def _sniff(url_or_path: str | os.PathLike[str], *, timeout: float) -> bytes:
    """The first bytes of the source, to tell a truncated MP4 from arbitrary bytes.

    Only used on the failure path, so an extra request to a URL costs nothing that matters.
    """
    if _is_url(url_or_path):
        import urllib.request

        # The scheme was checked by _is_url: only http(s) reaches urllib.
        request = urllib.request.Request(  # noqa: S310
            str(url_or_path), headers={"Range": "bytes=0-63"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return response.read(64)
        except OSError:
            return b""
    try:
        with open(url_or_path, "rb") as handle:
            return handle.read(64)
    except OSError:
        return b""


def _probe_failure(
    url_or_path: str | os.PathLike[str],
    *,
    returncode: int,
    stderr: str,
    command: str,
    timeout: float,
) -> MediaError:
    """Map an ffprobe failure to the reasons the pipeline shows publishers."""
    tail = _tail_text(stderr.splitlines())
    kwargs = {"stderr_tail": tail, "command": command}
    if not _is_url(url_or_path):
        path = Path(url_or_path)
        if not path.exists():
            return PermanentMediaError(f"file not found: {path}", **kwargs)
        if path.stat().st_size == 0:
            return PermanentMediaError("not a media file: the file is empty", **kwargs)
    oversized = _PICTURE_SIZE_INVALID.search(stderr)
    if oversized:
        # ffmpeg refuses to allocate a frame this large before any of our checks can run.
        return PermanentMediaError(
            f"dimensions {oversized[1]}x{oversized[2]} exceed what can be decoded (the limit is 8K)", **kwargs
        )
    if "moov atom not found" in stderr:
        head = _sniff(url_or_path, timeout=timeout)
        if len(head) >= 8 and head[4:8] in _BMFF_BOXES:
            return PermanentMediaError(
                "file is truncated: the MP4 index (moov atom) is missing; upload it again",
                **kwargs,
            )
        if not head:
            return PermanentMediaError("not a media file: the file is empty", **kwargs)
        return PermanentMediaError("not a media file (unrecognised data)", **kwargs)
    error = classify_failure(returncode=returncode, stderr_tail=tail, command=command, program="ffprobe")
    if isinstance(error, PermanentMediaError) and "Invalid data found" in stderr:
        return PermanentMediaError("not a media file (unrecognised data)", **kwargs)
    return error


def probe(
    url_or_path: str | os.PathLike[str],
    *,
    timeout: float = 60,
    count_packets: bool | None = None,
) -> MediaInfo:
    """Describe a source (local path or http(s) presigned URL) with one ffprobe run.

    ``count_packets`` makes ffprobe read every packet (no decoding) to get an exact frame
    count, which matters for VFR detection in containers without a frame index (MKV, TS).
    By default it is on for local files (a disk read) and off for URLs (it would download
    the whole object); MP4's index gives the count for free either way.

    Raises PermanentMediaError with a publisher-readable reason for bad input and
    TransientMediaError for network trouble. Does not judge the media: see
    :func:`validate_source`.
    """
    if count_packets is None:
        count_packets = not _is_url(url_or_path)
    argv = [
        ffprobe_binary(), "-hide_banner", "-v", "error",
        *_input_options(url_or_path, reconnect=False),
        "-show_format", "-show_streams", *(["-count_packets"] if count_packets else []),
        "-of", "json", str(url_or_path),
    ]  # fmt: skip
    command = shlex.join(argv)
    try:
        completed = subprocess.run(
            argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise TransientMediaError(
            f"ffprobe did not answer within {timeout:g} s",
            command=command,
            stderr_tail=_tail_text(_decode(exc.stderr).splitlines()),
        ) from exc
    except OSError as exc:
        raise TransientMediaError(f"ffprobe could not be started: {exc}", command=command) from exc
    stderr = _decode(completed.stderr)
    if completed.returncode != 0:
        raise _probe_failure(
            url_or_path, returncode=completed.returncode, stderr=stderr, command=command, timeout=timeout
        )
    try:
        data = json.loads(completed.stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise TransientMediaError(
            "ffprobe printed unreadable output", command=command, stderr_tail=_tail_text(stderr.splitlines())
        ) from exc
    return _media_info(data, count_packets=count_packets)



def _ffprobe_json(argv_tail: Sequence[str], *, timeout: float = 120) -> dict:
    argv = [ffprobe_binary(), "-hide_banner", "-v", "error", *argv_tail, "-of", "json"]
    command = shlex.join(argv)
    try:
        completed = subprocess.run(
            argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise TransientMediaError(f"ffprobe did not answer within {timeout:g} s", command=command) from exc
    if completed.returncode != 0:
        tail = _tail_text(_decode(completed.stderr).splitlines())
        raise classify_failure(
            returncode=completed.returncode, stderr_tail=tail, command=command, program="ffprobe"
        )
    return json.loads(completed.stdout or b"{}")


def count_frames(path: str | os.PathLike[str]) -> int:
    """Video frames in a file, counted from packets (no decoding: fast)."""
    data = _ffprobe_json(
        ["-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets", str(path)]
    )
    streams = data.get("streams") or []
    if not streams:
        raise PermanentMediaError(f"no video stream in {path}")
    return int(streams[0].get("nb_read_packets") or 0)


def keyframe_indices(path: str | os.PathLike[str]) -> list[int]:
    """Presentation-order indices of the video keyframes (QC: GOP alignment)."""
    data = _ffprobe_json(["-select_streams", "v:0", "-show_entries", "packet=pts,flags", str(path)])
    packets = sorted(
        (int(p["pts"]), "K" in p.get("flags", ""))
        for p in data.get("packets") or []
        if p.get("pts") not in (None, "N/A")
    )
    return [index for index, (_, key) in enumerate(packets) if key]


def stream_durations(path: str | os.PathLike[str]) -> dict[str, float | None]:
    """Container, first video and first audio duration in seconds (QC: A/V drift)."""
    data = _ffprobe_json(["-show_entries", "format=duration:stream=codec_type,duration", str(path)])
    result: dict[str, float | None] = {
        "format": _float((data.get("format") or {}).get("duration")),
        "video": None,
        "audio": None,
    }
    for stream in data.get("streams") or []:
        kind = stream.get("codec_type")
        if kind in ("video", "audio") and result[kind] is None:
            result[kind] = _float(stream.get("duration"))
    return result

