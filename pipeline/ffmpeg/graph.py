"""ffmpeg-python, through which the builders write their command lines.

A builder makes an ffmpeg-python graph (inputs with their options, filters, outputs with
theirs) and compiles it to the argument list :func:`pipeline.ffmpeg.run_ffmpeg` runs, so the
lists stay inspectable. Two habits of ffmpeg-python show in them and change nothing ffmpeg
does: every filter graph is a ``-filter_complex`` with labelled links (``[s0]``, ``[s1]``...,
never ``-vf``/``-af``), and each input's and output's options come in alphabetical order.

The top-level module ``ffmpeg`` is ffmpeg-python; it is imported as ``ffmpeg_lib`` because
this package is ``pipeline.ffmpeg``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ffmpeg as ffmpeg_lib

# ffmpeg-python's streams and nodes are untyped.
Stream = Any

# A file name ffmpeg-python compiles in place of the part of a command a caller writes itself.
_PLACEHOLDER = "-"


@dataclass(frozen=True, slots=True)
class Filter:
    """One filter as ffmpeg-python takes it: a name, positional and named options."""

    name: str
    args: tuple[object, ...] = ()
    options: Mapping[str, object] = field(default_factory=dict)

    def on(self, stream: Stream) -> Stream:
        return stream.filter(self.name, *self.args, **self.options)

    def __str__(self) -> str:
        """The filter as it reads in the compiled graph (ffmpeg-python's own rendering)."""
        return self.on(ffmpeg_lib.input(_PLACEHOLDER)).node._get_filter([])


def compile_args(*outputs: Stream, global_options: Mapping[str, object] | None = None) -> list[str]:
    """The argument list of one command writing ``outputs``, without the program name.

    ``global_options`` (e.g. ``filter_complex_threads``) come last, where ffmpeg-python puts
    them; ffmpeg reads a global option wherever it stands."""
    stream = outputs[0] if len(outputs) == 1 else ffmpeg_lib.merge_outputs(*outputs)
    if global_options:
        stream = stream.global_args(*option_args(global_options))
    return ffmpeg_lib.compile(stream, cmd=[])


def input_args(url: str | os.PathLike[str], **options: object) -> list[str]:
    """One input's options and its ``-i``, as ffmpeg-python compiles them, for a caller that
    writes outputs of its own after them."""
    args = compile_args(ffmpeg_lib.input(str(url), **options).output(_PLACEHOLDER))
    if args[-1] != _PLACEHOLDER:
        raise ValueError(f"unexpected output arguments in {args}")
    return args[:-1]


def output_args(stream: str, filename: str | os.PathLike[str], **options: object) -> list[str]:
    """One output's arguments (its ``-map``, options and file name), as ffmpeg-python compiles
    them, for a caller that writes the inputs itself. ``stream`` is a stream of the first
    input: ``0`` for all of it, ``0:v:0``, ``0:a:0``..."""
    index, _, selector = stream.partition(":")
    if index != "0":
        raise ValueError(f"output_args maps streams of the first input only, not {stream!r}")
    source = ffmpeg_lib.input(_PLACEHOLDER)
    if not selector:
        # ffmpeg-python maps a whole input by writing no -map at all, which leaves ffmpeg to
        # pick one stream of each kind; -map 0 keeps every stream.
        options = {"map": "0", **options}
    args = compile_args((source[selector] if selector else source).output(str(filename), **options))
    if args[:2] != ["-i", _PLACEHOLDER]:
        raise ValueError(f"unexpected input arguments in {args}")
    return args[2:]


def option_args(options: Mapping[str, object]) -> list[str]:
    """``{"c:v": "libx264", "an": None}`` as ``["-c:v", "libx264", "-an"]``, in the given order:
    for the argument lists that are not compiled from a graph (ffprobe's, and the encoder
    options :func:`pipeline.ffmpeg.renditions._encoder_args` hands to the benchmark)."""
    args: list[str] = []
    for key, value in options.items():
        args += [f"-{key}"] if value is None else [f"-{key}", str(value)]
    return args
