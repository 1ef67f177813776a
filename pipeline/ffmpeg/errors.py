"""Typed ffmpeg/ffprobe failures and how a failed run is classified (permanent, transient)."""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence

_STDERR_TAIL_LINES = 40
_STDERR_LINE_MAX = 500


class MediaError(Exception):
    """An ffmpeg/ffprobe failure with a reason a person can act on.

    ``reason`` is one sentence for the asset page and the event log; ``stderr_tail`` keeps
    the last lines ffmpeg printed, for whoever has to debug it.
    """

    def __init__(self, reason: str, *, stderr_tail: str = "", command: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.stderr_tail = stderr_tail
        self.command = command


class PermanentMediaError(MediaError):
    """The input (or the command) is bad: retrying cannot help, fail at once."""


class CommandDefectError(PermanentMediaError):
    """ffmpeg rejected a command Reelflow built: a defect, not bad input (never retried)."""


class TransientMediaError(MediaError):
    """I/O, network, a full disk, a killed process: the same step may well succeed later."""


class MediaCancelledError(MediaError):
    """ffmpeg was stopped because its cancel event was set; neither retry nor failure."""


UNDECODABLE_REASON = (
    "no frame of the video can be decoded: the file is damaged or incomplete (its index points at missing "
    "data); export or copy it again and upload the new file"
)

# (pattern, error class, reason). Checked in order, first match wins. Transient patterns come
# first: a network drop mid-file makes the demuxer print "Invalid data" too, and a retry is
# the cheaper mistake.
_FAILURE_RULES: tuple[tuple[re.Pattern[str], type[MediaError], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), cls, reason)
    for pattern, cls, reason in (
        (r"Server returned 5\d\d|Server returned 5XX", TransientMediaError,
         "the storage server returned a 5xx error; retry later"),
        (r"Server returned 403", TransientMediaError,
         "the storage server refused access (HTTP 403); the presigned URL may have expired "
         "and a retry presigns a new one"),
        (r"Connection refused", TransientMediaError,
         "could not connect to the storage server (connection refused)"),
        (r"timed out|Operation timed out", TransientMediaError,
         "the connection to the storage server timed out"),
        (r"Connection reset by peer|Broken pipe|Network is unreachable|"
         r"Temporary failure in name resolution|End of file.*http", TransientMediaError,
         "the network connection to the storage server failed"),
        (r"Input/output error|I/O error", TransientMediaError,
         "an input/output error occurred reading or writing media"),
        (r"Cannot allocate memory|Out of memory", TransientMediaError,
         "the worker ran out of memory"),
        (r"Server returned 404|Server returned 4\d\d", PermanentMediaError,
         "the source object could not be fetched (HTTP 4xx): it does not exist or is not "
         "readable"),
        (r"No such file or directory", PermanentMediaError,
         "a file ffmpeg needed does not exist"),
        (r"moov atom not found", PermanentMediaError,
         "file is truncated or not a media file (moov atom not found)"),
        (r"does not contain any stream", PermanentMediaError,
         "not a media file: it contains no audio or video streams"),
        (r"matches no streams", PermanentMediaError,
         "the source has no stream of the kind this step needs"),
        (r"Decoder \(codec .*\) not found|Unsupported codec|Could not find codec parameters|"
         r"Failed to open codec|no decoder", PermanentMediaError,
         "unsupported or undecodable codec"),
        # Frames never reached the filters: the input opened but nothing in it decodes (an
        # MP4 whose media data is gone, an index that points at the wrong bytes).
        (r"Error marking filters as finished|Cannot determine format of input stream .* after EOF",
         PermanentMediaError, UNDECODABLE_REASON),
        (r"Invalid data found when processing input", PermanentMediaError,
         "not a media file, or its data is corrupt (Invalid data found when processing input)"),
        (r"Unknown encoder|Unrecognized option|Option not found|Error parsing|"
         r"Invalid argument|Error initializing", CommandDefectError,
         "ffmpeg rejected the command it was given (a bug in the command builder)"),
    )
)  # fmt: skip

_CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT})
_NO_SPACE = re.compile(r"No space left on device", re.IGNORECASE)
DISK_FULL_REASON = "the worker's disk is full (No space left on device)"
_OUTPUT_NOT_FINISHED = re.compile(r"Error writing trailer|Error closing file|No space left on device", re.IGNORECASE)

# A corrupt packet in the middle of a usable file is logged at error level but ffmpeg goes
# on; such lines must not turn an unrelated failure into a permanent one.
_IGNORED_FOR_CLASSIFICATION = re.compile(r"Error while decoding stream|error while decoding MB")


def classify_failure(
    *, returncode: int, stderr_tail: str, command: str = "", program: str = "ffmpeg"
) -> MediaError:
    """Turn a non-zero exit into a typed error (returned, for the caller to raise).

    Order: a full disk (clear reason, transient), then death by signal (OOM killer, a worker
    shutting down: transient), then the stderr rules above, then ffmpeg's 255 ("received a
    signal"), then transient by default: an unknown failure is retried a bounded number of
    times, whereas a wrong "permanent" would throw away good sources.
    """
    lines = [line for line in stderr_tail.splitlines() if not _IGNORED_FOR_CLASSIFICATION.search(line)]
    text = "\n".join(lines)
    kwargs = {"stderr_tail": stderr_tail, "command": command}

    if _NO_SPACE.search(text):
        return TransientMediaError(f"{DISK_FULL_REASON}; free space, then retry", **kwargs)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if -returncode in _CRASH_SIGNALS:
            # The program crashed on this input: it will crash the same way on every attempt.
            return PermanentMediaError(
                f"{program} crashed ({name}) on this file; the file may be damaged: export it again, or ask "
                "operations staff to look at it",
                **kwargs,
            )
        return TransientMediaError(
            f"{program} was killed by {name} (out of memory, or the worker was stopped)",
            **kwargs,
        )
    for pattern, cls, reason in _FAILURE_RULES:
        if pattern.search(text):
            return cls(reason, **kwargs)
    if returncode == 255:
        return TransientMediaError(f"{program} was interrupted by a signal", **kwargs)
    # ffmpeg's own last line stays in stderr_tail (for operations), not in the reason.
    return TransientMediaError(f"{program} failed (exit code {returncode}) for an unrecognised reason", **kwargs)


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


def _tail_text(lines: Sequence[str]) -> str:
    return "\n".join(line[:_STDERR_LINE_MAX] for line in list(lines)[-_STDERR_TAIL_LINES:])
