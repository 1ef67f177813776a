#!/usr/bin/env python3
"""Generate the bad-input corpus: every kind of file a publisher might upload that is not a
plain, healthy H.264/AAC MP4 — broken, hostile, odd or merely unusual.

    python scripts/bad_inputs.py OUT_DIR            # writes the files and OUT_DIR/manifest.json
    python scripts/bad_inputs.py OUT_DIR --list     # prints kind, file, expected outcome

Each kind names the file to upload (its upload name may differ from the file on disk: unicode,
very long, `../`), the content type to claim, and what must happen: ``publish`` (valid input,
however unusual) or a piece of the failure reason a person reads on the asset page and in the
CLI. tests/hardening/test_bad_inputs.py runs every kind through the real pipeline.

Everything is tiny (160x120, 2 s, ultrafast) so the corpus builds in a few seconds and a run
of the whole corpus stays within a couple of minutes on two cores. Needs only ffmpeg.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

FFMPEG = os.environ.get("FFMPEG_BINARY", "ffmpeg")
PUBLISH = "publish"
# Size limit the corpus is judged against (REELFLOW_MAX_UPLOAD_BYTES for the workers); every
# file is far below it except `over_size_limit`, which is far above.
SIZE_LIMIT_BYTES = 2 * 1024 * 1024
# Duration limit (REELFLOW_MAX_DURATION_SECONDS for the workers).
DURATION_LIMIT_S = 60


@dataclass(frozen=True)
class Kind:
    name: str
    file: str  # on disk, in the corpus folder
    expect: str  # PUBLISH, or a piece of the failure reason
    upload_name: str = ""  # the name it is uploaded under, when not `file`
    content_type: str = ""  # the Content-Type claimed on upload ("" lets S3 guess)
    # "bucket": put straight into the ingest bucket, then the storage event (what `aws s3 cp`
    # and the filer webhook do); "studio": the publishers' upload API (names are cleaned there).
    route: str = "bucket"
    note: str = ""


def ffmpeg(*args: str) -> None:
    argv = [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr[-2000:]}")


def lavfi_video(
    size: str = "160x120", rate: str = "25", duration: float = 2, source: str = "testsrc2"
) -> list[str]:
    return ["-f", "lavfi", "-i", f"{source}=size={size}:rate={rate}:duration={duration}"]


def lavfi_audio(duration: float = 2, freq: int = 440) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate=48000:duration={duration}"]


X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"]
AAC = ["-c:a", "aac", "-b:a", "64k", "-ac", "2"]


def clip(
    path: Path, *, video: list[str] | None = None, extra: list[str] | None = None, audio: bool = True
) -> Path:
    """A healthy little clip, with `extra` output options (the oddity)."""
    args = list(video or lavfi_video())
    if audio:
        args += lavfi_audio()
        args += ["-map", "0:v", "-map", "1:a", *AAC]
    ffmpeg(*args, *X264, "-pix_fmt", "yuv420p", *(extra or []), str(path))
    return path


# --- Broken or not media at all -------------------------------------------------------------


def make_empty(path: Path) -> None:
    path.write_bytes(b"")


def make_random(path: Path) -> None:
    path.write_bytes(os.urandom(96 * 1024))


def make_text(path: Path) -> None:
    path.write_text("This is not a video.\nIt is a shopping list: milk, eggs, tea.\n" * 20, encoding="utf-8")


def make_html(path: Path) -> None:
    path.write_text("<!doctype html><html><body><video src=x.mp4></video></body></html>\n", encoding="utf-8")


def make_truncated_moov_end(path: Path) -> None:
    """Index (moov) at the end, the tail lost: an interrupted upload of a camera file."""
    full = clip(path.with_name("full-" + path.name))
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    full.unlink()


def make_truncated_faststart(path: Path) -> None:
    """Index first (faststart), the media it describes cut short."""
    full = clip(path.with_name("full-" + path.name), extra=["-movflags", "+faststart"])
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    full.unlink()


def make_header_only(path: Path) -> None:
    """An MP4 `ftyp` box followed by nothing useful: the first 2 KiB of a real file."""
    full = clip(path.with_name("full-" + path.name))
    path.write_bytes(full.read_bytes()[:2048])
    full.unlink()


def make_corrupt_middle(path: Path) -> None:
    """A valid faststart MP4 whose middle 10 % of media bytes were overwritten with noise
    (bit rot, a bad disk): it probes fine, the decoder meets garbage half way."""
    full = clip(path.with_name("full-" + path.name), extra=["-movflags", "+faststart"], audio=False)
    data = bytearray(full.read_bytes())
    start, length = int(len(data) * 0.45), int(len(data) * 0.10)
    data[start : start + length] = os.urandom(length)
    path.write_bytes(bytes(data))
    full.unlink()


def make_audio_only(path: Path) -> None:
    ffmpeg(*lavfi_audio(), *AAC, str(path))


def make_cover_art_only(path: Path) -> None:
    """An M4A with cover art: the only picture is an attached still, not video."""
    cover = path.with_name("cover.png")
    make_png(cover)
    ffmpeg(*lavfi_audio(), "-i", str(cover), "-map", "0:a", "-map", "1:v", *AAC, "-c:v", "png",
           "-disposition:v:0", "attached_pic", "-f", "mp4", str(path))  # fmt: skip
    cover.unlink()


def make_png(path: Path, width: int = 160, height: int = 120) -> None:
    """A real PNG, written by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in ((x * 3) % 256, (y * 2) % 256, 90))
        for y in range(height)
    )
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    path.write_bytes(png + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def make_jpeg(path: Path) -> None:
    ffmpeg(*lavfi_video(duration=0.04), "-frames:v", "1", "-c:v", "mjpeg", "-f", "image2", str(path))


def make_gif(path: Path) -> None:
    """An animated GIF: a moving picture, no audio. Decodable, so it is valid input."""
    ffmpeg(*lavfi_video(size="160x120", rate="10", duration=2), "-f", "gif", str(path))


def make_zero_duration(path: Path) -> None:
    """The container says 0 s: a `-t 0` stream copy keeps an empty track."""
    full = clip(path.with_name("full-" + path.name))
    ffmpeg("-i", str(full), "-t", "0", "-c", "copy", str(path))
    full.unlink()


def make_huge_dimensions(path: Path) -> None:
    """A crafted Y4M header declaring 16384x16384 (one frame would be 384 MiB), then a few
    KiB: a real file that size would not fit here, the header is what a parser must refuse."""
    header = b"YUV4MPEG2 W16384 H16384 F25:1 Ip A1:1 C420jpeg\n"
    path.write_bytes(header + b"FRAME\n" + os.urandom(8192))


def make_huge_duration_header(path: Path) -> None:
    """A 2 s MP4 whose movie and track headers claim about 1000 hours."""
    full = clip(path.with_name("full-" + path.name), audio=False)
    data = bytearray(full.read_bytes())
    full.unlink()
    for box in (b"mvhd", b"tkhd", b"mdhd"):
        at = data.find(box)
        while at != -1:
            version = data[at + 4]
            if box == b"mvhd" or box == b"mdhd":
                # version 0: creation(4) modification(4) timescale(4) duration(4)
                timescale_at = at + 4 + 4 + (16 if version else 8)
                timescale = struct.unpack(">I", data[timescale_at : timescale_at + 4])[0]
                duration_at = timescale_at + 4
                if not version:
                    data[duration_at : duration_at + 4] = struct.pack(
                        ">I", min(2**32 - 1, timescale * 3_600_000)
                    )
            else:
                # tkhd version 0: creation(4) modification(4) track_id(4) reserved(4) duration(4)
                duration_at = at + 4 + 4 + 16
                if not version:
                    data[duration_at : duration_at + 4] = struct.pack(">I", 2**32 - 1)
            at = data.find(box, at + 4)
    path.write_bytes(bytes(data))


def make_over_duration_limit(path: Path) -> None:
    """Really longer than the duration limit (tiny and slow: 64x64 at 2 fps)."""
    ffmpeg(
        *lavfi_video(size="64x64", rate="2", duration=DURATION_LIMIT_S + 5),
        *X264,
        "-pix_fmt",
        "yuv420p",
        str(path),
    )


def make_over_size_limit(path: Path) -> None:
    """A valid clip padded with a `free` box to four times the size limit."""
    clip(path)
    pad = SIZE_LIMIT_BYTES * 4
    with path.open("ab") as handle:
        handle.write(struct.pack(">I", pad) + b"free")
        handle.write(b"\0" * (pad - 8))


def make_one_pixel(path: Path) -> None:
    ffmpeg(*lavfi_video(), "-vf", "scale=1:1", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv444p", str(path))  # fmt: skip


def make_raw_h264(path: Path) -> None:
    """A bare H.264 elementary stream (no container, no timestamps, no duration)."""
    ffmpeg(*lavfi_video(), *X264, "-pix_fmt", "yuv420p", "-f", "h264", str(path))


def make_undecodable_codec(path: Path) -> None:
    """An MP4 whose video sample entry names a codec nobody knows (`zzzz` instead of `avc1`)."""
    full = clip(path.with_name("full-" + path.name), audio=False)
    data = full.read_bytes().replace(b"avc1", b"zzzz")
    full.unlink()
    path.write_bytes(data)


def make_over_8k(path: Path) -> None:
    """A real H.264 file a little wider and taller than 8K (two flat frames: small and quick)."""
    ffmpeg("-f", "lavfi", "-i", "color=size=8200x4400:rate=2:duration=2", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", str(path))  # fmt: skip


# --- Unusual but valid ----------------------------------------------------------------------


def make_healthy(path: Path) -> None:
    clip(path)


def make_video_only(path: Path) -> None:
    clip(path, audio=False)


def make_interlaced(path: Path) -> None:
    clip(path, video=lavfi_video(size="320x240"), extra=["-flags", "+ildct+ilme", "-x264opts", "tff=1"])


def make_ten_bit(path: Path) -> None:
    clip(path, extra=["-pix_fmt", "yuv420p10le", "-profile:v", "high10"])


def make_chroma_444(path: Path) -> None:
    clip(path, extra=["-pix_fmt", "yuv444p", "-profile:v", "high444"])


def make_vfr(path: Path) -> None:
    clip(path, extra=["-vf", r"select='not(between(mod(n\,10)\,3\,6))'", "-fps_mode", "vfr"])


def make_rotated(path: Path) -> None:
    plain = clip(path.with_name("plain-" + path.name))
    ffmpeg("-i", str(plain), "-map", "0", "-c", "copy", "-metadata:s:v:0", "rotate=90", str(path))
    plain.unlink()


def make_multi_audio(path: Path) -> None:
    ffmpeg(*lavfi_video(), *lavfi_audio(freq=440), *lavfi_audio(freq=880), *lavfi_audio(freq=220),
           "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:a", *X264, "-pix_fmt", "yuv420p", *AAC,
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra",
           "-metadata:s:a:2", "language=deu", str(path))  # fmt: skip


def make_subtitles(path: Path) -> None:
    srt = path.with_name("subs.srt")
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nHello\n\n2\n00:00:01,000 --> 00:00:02,000\nWorld\n")
    ffmpeg(*lavfi_video(), *lavfi_audio(), "-i", str(srt), "-map", "0:v", "-map", "1:a", "-map", "2:s",
           *X264, "-pix_fmt", "yuv420p", *AAC, "-c:s", "mov_text", str(path))  # fmt: skip
    srt.unlink()


def make_odd_dimensions(path: Path) -> None:
    ffmpeg(*lavfi_video(size="161x121", source="testsrc"), *X264, "-pix_fmt", "yuv444p", str(path))


def make_tiny(path: Path) -> None:
    clip(path, video=lavfi_video(size="32x18"), audio=False)


def make_odd_rate(path: Path) -> None:
    """NTSC-style 29.97 fps with a 1/90000 timescale."""
    clip(path, video=lavfi_video(rate="30000/1001"), extra=["-video_track_timescale", "90000"])


def make_low_rate(path: Path) -> None:
    """One frame a second: a slide show."""
    clip(path, video=lavfi_video(rate="1", duration=4), audio=False)


def make_late_video(path: Path) -> None:
    """Audio starts 0.5 s before the first video frame."""
    ffmpeg("-itsoffset", "0.5", *lavfi_video(), *lavfi_audio(duration=2.5), "-map", "0:v", "-map", "1:a",
           *X264, "-pix_fmt", "yuv420p", *AAC, "-fps_mode", "passthrough", str(path))  # fmt: skip


def make_webm(path: Path) -> None:
    ffmpeg(*lavfi_video(), *lavfi_audio(), "-map", "0:v", "-map", "1:a", "-c:v", "libvpx-vp9", "-deadline",
           "realtime", "-cpu-used", "8", "-b:v", "200k", "-c:a", "libopus", str(path))  # fmt: skip


def make_mpegts(path: Path) -> None:
    clip(path, extra=["-f", "mpegts"])


def make_mkv_named_mp4(path: Path) -> None:
    clip(path, extra=["-f", "matroska"])


KINDS: list[tuple[Kind, Callable[[Path], None]]] = [
    # not media, or broken beyond use
    (Kind("empty", "empty.mp4", "the file is empty"), make_empty),
    (Kind("random_bytes", "random.mp4", "not a media file"), make_random),
    (Kind("text", "notes.mp4", "not a media file"), make_text),
    (Kind("html_as_video", "page.mp4", "not a media file", content_type="video/mp4",
          note="HTML uploaded with a video content type: the claim is not believed"), make_html),
    (Kind("lying_content_type", "lie.mp4", "not a media file", content_type="video/mp4",
          note="text claiming to be video/mp4"), make_text),
    (Kind("truncated_moov_at_end", "cut.mp4", "file is truncated"), make_truncated_moov_end),
    (Kind("truncated_faststart", "cut-faststart.mp4", "file is truncated"), make_truncated_faststart),
    (Kind("header_only", "header.mp4", "file is truncated"), make_header_only),

    (Kind("audio_only", "song.m4a", "no video stream: the file is audio only"), make_audio_only),
    (Kind("cover_art_only", "album.m4a", "no video stream"), make_cover_art_only),
    (Kind("png_renamed", "still.mp4", "image, not a video"), make_png),
    (Kind("jpeg_renamed", "photo.mp4", "image, not a video"), make_jpeg),
    (Kind("zero_duration", "nothing.mp4", "zero duration"), make_zero_duration),
    (Kind("huge_dimensions", "huge.mp4", "dimensions 16384x16384 exceed what can be decoded"), make_huge_dimensions),
    (Kind("huge_duration_header", "forever.mp4", "longer than"), make_huge_duration_header),
    (Kind("over_duration_limit", "long.mp4", "longer than"), make_over_duration_limit),
    (Kind("over_size_limit", "big.mp4", "over the"), make_over_size_limit),
    (Kind("one_pixel", "dot.mp4", "too small"), make_one_pixel),
    (Kind("raw_h264_stream", "bare.mp4", "duration unknown"), make_raw_h264),
    (Kind("undecodable_codec", "alien.mp4", "unsupported video codec"), make_undecodable_codec),
    (Kind("over_8k", "eight-k.mp4", "dimensions 8200x4400 exceed the 8K limit"), make_over_8k),
    # unusual, valid: must publish
    (Kind("video_only", "silent.mp4", PUBLISH), make_video_only),
    (Kind("corrupt_middle", "rot.mp4", PUBLISH,
          note="the decoder conceals the damaged frames; every frame is still there"), make_corrupt_middle),
    (Kind("interlaced", "interlaced.mp4", PUBLISH), make_interlaced),
    (Kind("ten_bit", "tenbit.mp4", PUBLISH), make_ten_bit),
    (Kind("chroma_444", "full-chroma.mp4", PUBLISH), make_chroma_444),
    (Kind("variable_frame_rate", "vfr.mp4", PUBLISH), make_vfr),
    (Kind("rotated", "rotated.mp4", PUBLISH), make_rotated),
    (Kind("multiple_audio_tracks", "dubbed.mp4", PUBLISH), make_multi_audio),
    (Kind("subtitle_streams", "subtitled.mp4", PUBLISH), make_subtitles),
    (Kind("odd_dimensions", "odd.mp4", PUBLISH), make_odd_dimensions),
    (Kind("tiny", "tiny.mp4", PUBLISH), make_tiny),
    (Kind("ntsc_rate", "ntsc.mp4", PUBLISH), make_odd_rate),
    (Kind("one_fps", "slides.mp4", PUBLISH), make_low_rate),
    (Kind("late_video_start", "late.mp4", PUBLISH), make_late_video),
    (Kind("webm_vp9_opus", "clip.webm", PUBLISH), make_webm),
    (Kind("mpeg_ts", "clip.ts", PUBLISH), make_mpegts),
    (Kind("mkv_named_mp4", "matroska.mp4", PUBLISH), make_mkv_named_mp4),
    (Kind("animated_gif", "loop.gif", PUBLISH), make_gif),
    (Kind("unicode_name", "unicode.mp4", PUBLISH, upload_name="vidéo 日本語 🎬 ünïcødé.mp4", route="studio"), make_healthy),
    (Kind("very_long_name", "long-name.mp4", PUBLISH, upload_name=("a-very-long-title-" * 13)[:230] + ".mp4",
          route="studio"),
     make_healthy),
    (Kind("dot_dot_slash_name", "traversal.mp4", PUBLISH, upload_name="../../../etc/passwd.mp4",
          route="studio", note="the name is cut to its last part; outputs are keyed by id"), make_healthy),
    (Kind("control_chars_name", "ctrl.mp4", PUBLISH, upload_name="evil\r\nname\x00\x1b[31m.mp4", route="studio"),
     make_healthy),
    (Kind("wrong_content_type", "plain.mp4", PUBLISH, content_type="text/plain",
          note="a real video claiming to be text: the bytes decide"), make_healthy),
]  # fmt: skip


def build(out_dir: Path, *, only: set[str] | None = None) -> list[Kind]:
    """Write every kind's file into `out_dir` and a manifest; returns the kinds written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, make in KINDS:
        if only and kind.name not in only:
            continue
        target = out_dir / kind.file
        if not target.exists():
            make(target)
        written.append(kind)
    (out_dir / "manifest.json").write_text(
        json.dumps([asdict(k) for k in written], indent=1, ensure_ascii=False)
    )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--list", action="store_true", help="print the kinds instead of writing them")
    parser.add_argument("--only", nargs="*", help="only these kinds")
    args = parser.parse_args(argv)
    if args.list:
        for kind, _ in KINDS:
            print(f"{kind.name:24} {kind.file:20} {kind.expect}")  # noqa: T201
        return 0
    kinds = build(args.out_dir, only=set(args.only) if args.only else None)
    print(f"{len(kinds)} kinds written to {args.out_dir}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
