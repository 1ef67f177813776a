"""HLS and DASH manifests over single-file renditions, addressed by byte range.

Each rendition is stored once, as one fragmented MP4 with one fragment per segment and a
``sidx`` index at its head (written at assemble time by ffmpeg's DASH muxer in single-file
mode, :func:`pipeline.packaging_cmds.rendition_package_args`). The package then needs no
segment files of its own: HLS media playlists name byte ranges of that file
(``EXT-X-BYTERANGE``, RFC 8216 4.3.2.2, and ``EXT-X-MAP`` with ``BYTERANGE`` for the
initialization section), and the DASH manifest uses the on-demand profile (``SegmentBase``
with the ``sidx`` as its index). So packaging a job writes a few small text files and copies
one object per rendition, where a segment per file meant ~100 uploads for a minute of video.

ffmpeg's own single-file DASH manifest lists every segment in a ``SegmentList``; ffmpeg 5.1's
DASH demuxer reads wrong byte ranges from it (ffprobe hangs, "Invalid NAL unit size"), while it
reads a ``SegmentBase`` representation as one file. What ffmpeg knows best (codec strings,
frame rate, sample rate, channels) is taken from its per-rendition output by
:func:`rendition_layout`; the rest is written here. HLS playlists are read and written through
the ``m3u8`` package's model; the MPD is XML. No Django here.
"""

from __future__ import annotations

import math
import struct
import xml.etree.ElementTree as ET  # noqa: S405 - parses ffmpeg's own output, never user input
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import m3u8

MANIFEST_NAME = "manifest.mpd"
MASTER_NAME = "master.m3u8"
_MPD_NS = "urn:mpeg:dash:schema:mpd:2011"
_CHANNELS_SCHEME = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
AUDIO_GROUP = "audio"


class LayoutError(ValueError):
    """ffmpeg's per-rendition output is not what packaging relies on."""


@dataclass(frozen=True, slots=True)
class HlsVariant:
    """One #EXT-X-STREAM-INF entry as written by :func:`write_package`."""

    uri: str
    bandwidth: int
    average_bandwidth: int
    resolution: str | None
    codecs: str | None
    audio_group: str | None


def top_level_boxes(path: str | Path) -> list[tuple[str, int, int]]:
    """(type, offset, size) of each top-level ISO BMFF box of a file; LayoutError for a file
    cut short."""
    boxes = []
    end = Path(path).stat().st_size
    with open(path, "rb") as f:
        offset = 0
        while header := f.read(8):
            if len(header) < 8:
                raise LayoutError(f"{path}: truncated box header at byte {offset}")
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0]
            elif size == 0:
                size = end - offset
            if size < 8:
                raise LayoutError(f"{path}: a box of {size} bytes at byte {offset}")
            if offset + size > end:
                raise LayoutError(f"{path}: the {kind.decode('latin-1')} box at byte {offset} runs past the end (cut short)")
            boxes.append((kind.decode("latin-1"), offset, size))
            offset += size
            f.seek(offset)
    return boxes


@dataclass(frozen=True, slots=True)
class FragmentFacts:
    """What a single-track fragmented MP4 holds, read from its boxes (no ffprobe process)."""

    samples: int  # frames of video, AAC/Opus frames of audio: every fragment's trun counts
    duration_s: float  # the sidx's subsegment durations, summed, in its timescale
    media_bytes: int  # the samples themselves: every mdat's payload

    @property
    def bitrate_kbps(self) -> int | None:
        """The stream's own rate, without the container (what an encoder's maxrate bounds)."""
        return round(self.media_bytes * 8 / 1000 / self.duration_s) if self.duration_s > 0 else None


def _child_boxes(data: bytes, start: int = 0) -> list[tuple[str, int, int]]:
    """(type, payload offset, payload end) of the boxes laid end to end in ``data[start:]``."""
    boxes, at = [], start
    while at + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            if at + 16 > len(data):
                break
            size, header = struct.unpack_from(">Q", data, at + 8)[0], 16
        if size < header or at + size > len(data):
            raise LayoutError(f"a {kind.decode('latin-1')} box of {size} bytes overruns its parent")
        boxes.append((kind.decode("latin-1"), at + header, at + size))
        at += size
    return boxes


def _sidx_duration_s(payload: bytes) -> float:
    """ISO/IEC 14496-12 8.16.3: the media time the index covers."""
    version = payload[0]
    timescale = struct.unpack_from(">I", payload, 8)[0]
    at = 12 + (8 if version == 0 else 16) + 2
    count = struct.unpack_from(">H", payload, at)[0]
    at += 2
    if timescale == 0 or len(payload) < at + 12 * count:
        raise LayoutError("the sidx box is cut short or has no timescale")
    ticks = sum(struct.unpack_from(">I", payload, at + 12 * i + 4)[0] for i in range(count))
    return ticks / timescale


def fragment_facts(path: str | Path) -> FragmentFacts:
    """Sample count, duration and media bytes of a one-track fragmented MP4 with a ``sidx``
    (a stored rendition): the assemble step's checks of what is stored, without an ffprobe
    process (~0.15 s each)."""
    try:
        return _fragment_facts(path)
    except struct.error as exc:  # a box shorter than its fields
        raise LayoutError(f"{path}: {exc}") from exc


def _fragment_facts(path: str | Path) -> FragmentFacts:
    samples = media = 0
    duration = None
    with open(path, "rb") as f:
        for kind, offset, size in top_level_boxes(path):
            if kind not in ("mdat", "moof", "sidx"):
                continue
            f.seek(offset)
            header = 16 if struct.unpack(">I", f.read(4))[0] == 1 else 8
            if kind == "mdat":
                media += size - header
                continue
            f.seek(offset + header)
            payload = f.read(size - header)
            if kind == "sidx":
                duration = _sidx_duration_s(payload) if duration is None else duration
                continue
            for child, start, end in _child_boxes(payload):
                if child == "traf":
                    for grandchild, g_start, _ in _child_boxes(payload[:end], start):
                        if grandchild == "trun":  # version and flags, then sample_count
                            samples += struct.unpack_from(">I", payload, g_start + 4)[0]
    if duration is None:
        raise LayoutError(f"{path}: no sidx box")
    return FragmentFacts(samples=samples, duration_s=duration, media_bytes=media)


def _byte_range(text: str | None, *, follows: int) -> tuple[int, int]:
    """An HLS byte range ``length[@offset]`` as (length, offset); without an offset it starts
    where the previous range of the same file ended (RFC 8216 4.3.2.2)."""
    length, at, offset = (text or "").partition("@")
    try:
        return int(length), int(offset) if at else follows
    except ValueError as exc:
        raise LayoutError(f"unreadable byte range {text!r}") from exc


def _hls_layout(out: Path, file_name: str) -> tuple[str | None, list[int] | None, list[list]]:
    """From ffmpeg's master playlist and the media playlist it names: the variant's codecs, the
    initialization section's [length, offset] and each segment's [duration, length, offset]."""
    master = m3u8.loads((out / MASTER_NAME).read_text(encoding="utf-8"))
    uris = [playlist.uri for playlist in master.playlists] or [media.uri for media in master.media if media.uri]
    if not uris:
        raise LayoutError(f"{file_name}: ffmpeg's master playlist names no media playlist")
    codecs = master.playlists[0].stream_info.codecs if master.playlists else None
    media = m3u8.loads((out / uris[0]).read_text(encoding="utf-8"))
    init = media.segment_map[0] if media.segment_map else None
    map_range = list(_byte_range(init.byterange, follows=0)) if init is not None and init.byterange else None
    segments, follows = [], 0
    for segment in media.segments:
        if not segment.byterange:
            raise LayoutError(f"{file_name}: ffmpeg's playlist has no byte-range segments")
        length, offset = _byte_range(segment.byterange, follows=follows)
        segments.append([segment.duration, length, offset])
        follows = offset + length
    return codecs, map_range, segments


def rendition_layout(*, out_dir: str | Path, file_name: str) -> dict:
    """Everything the package needs of one rendition, as JSON-able data, from what ffmpeg's DASH
    muxer wrote in ``out_dir`` (the single file, its manifest, master and media playlists).

    Raises LayoutError when the file lacks its ``sidx`` or a segment's byte range is off."""
    out = Path(out_dir)
    media = out / file_name
    boxes = top_level_boxes(media)
    kinds = [kind for kind, _, _ in boxes]
    if "moov" not in kinds or "sidx" not in kinds:
        raise LayoutError(f"{file_name}: no moov or sidx box ({' '.join(kinds[:6])})")
    _, moov_at, moov_size = boxes[kinds.index("moov")]
    _, sidx_at, sidx_size = boxes[kinds.index("sidx")]

    root = ET.parse(out / MANIFEST_NAME).getroot()  # noqa: S314 - ffmpeg's own output
    ns = {"d": _MPD_NS}
    adaptation = root.find(".//d:AdaptationSet", ns)
    representation = root.find(".//d:Representation", ns)
    if adaptation is None or representation is None:
        raise LayoutError(f"{file_name}: ffmpeg wrote no representation")
    channels = representation.find("d:AudioChannelConfiguration", ns)

    hls_codecs, map_range, segments = _hls_layout(out, file_name)
    size = media.stat().st_size
    if not segments or map_range is None or any(d is None or d <= 0 for d, _, _ in segments):
        raise LayoutError(f"{file_name}: ffmpeg's playlist has no byte-range segments")
    if segments[0][2] != sidx_at + sidx_size or sum(n for _, n, _ in segments) != size - segments[0][2]:
        raise LayoutError(f"{file_name}: the playlist's byte ranges do not cover the file's fragments")
    return {
        "file": file_name,
        "content_type": adaptation.get("contentType") or representation.get("mimeType", "").split("/")[0],
        "mime": representation.get("mimeType"),
        "codecs": representation.get("codecs") or hls_codecs,
        "width": int(representation.get("width") or 0) or None,
        "height": int(representation.get("height") or 0) or None,
        "sar": representation.get("sar"),
        "par": adaptation.get("par"),
        "frame_rate": adaptation.get("frameRate") or representation.get("frameRate"),
        "sampling_rate": representation.get("audioSamplingRate"),
        "channels": channels.get("value") if channels is not None else None,
        "init": [0, moov_at + moov_size - 1],
        "index": [sidx_at, sidx_at + sidx_size - 1],
        "map": map_range,
        "segments": segments,
        "size": size,
    }


def bit_rates(layout: dict) -> tuple[int, int]:
    """(peak, average) bits per second over a rendition's segments."""
    peak = max(n * 8 / d for d, n, _ in layout["segments"])
    average = sum(n for _, n, _ in layout["segments"]) * 8 / sum(d for d, _, _ in layout["segments"])
    return math.ceil(peak), math.ceil(average)


def media_playlist(layout: dict, *, uri: str) -> str:
    """A VOD media playlist naming byte ranges of ``uri`` (the rendition's single file)."""
    playlist = m3u8.M3U8()
    playlist.version = 7
    playlist.target_duration = max(1, max(math.floor(d + 0.5) for d, _, _ in layout["segments"]))
    playlist.playlist_type = "vod"
    playlist.is_independent_segments = True
    playlist.is_endlist = True
    length, start = layout["map"]
    init = {"uri": uri, "byterange": f"{length}@{start}"}  # EXT-X-MAP, written before the first segment
    for duration, size, offset in layout["segments"]:
        playlist.add_segment(m3u8.Segment(uri=uri, duration=duration, byterange=f"{size}@{offset}", init_section=init))
    # The media sequence starts at 0, the default: m3u8 writes no EXT-X-MEDIA-SEQUENCE for it.
    return playlist.dumps(infspec="microseconds")


def _iso_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _representation(parent: ET.Element, name: str, layout: dict, bandwidth: int) -> None:
    attrs = {"id": name, "mimeType": layout["mime"], "codecs": layout["codecs"], "bandwidth": str(bandwidth)}
    if layout["content_type"] == "video":
        attrs |= {"width": str(layout["width"]), "height": str(layout["height"]), "sar": layout["sar"] or "1:1"}
        if layout["frame_rate"]:
            attrs["frameRate"] = layout["frame_rate"]
    elif layout["sampling_rate"]:
        attrs["audioSamplingRate"] = layout["sampling_rate"]
    element = ET.SubElement(parent, f"{{{_MPD_NS}}}Representation", {k: v for k, v in attrs.items() if v})
    if layout["channels"]:
        ET.SubElement(element, f"{{{_MPD_NS}}}AudioChannelConfiguration", {"schemeIdUri": _CHANNELS_SCHEME, "value": layout["channels"]})
    ET.SubElement(element, f"{{{_MPD_NS}}}BaseURL").text = layout["file"]
    base = ET.SubElement(element, f"{{{_MPD_NS}}}SegmentBase", {"indexRange": "{}-{}".format(*layout["index"])})
    ET.SubElement(base, f"{{{_MPD_NS}}}Initialization", {"range": "{}-{}".format(*layout["init"])})


def dash_manifest(renditions: Sequence[tuple[str, dict]], *, duration_s: float, segment_s: float) -> str:
    """A static on-demand MPD over ``(name, layout)`` renditions: video in one adaptation set
    per codec family and picture aspect (players switch within a set only), audio in one."""
    ET.register_namespace("", _MPD_NS)
    mpd = ET.Element(f"{{{_MPD_NS}}}MPD", {
        "profiles": "urn:mpeg:dash:profile:isoff-on-demand:2011", "type": "static",
        "mediaPresentationDuration": _iso_duration(duration_s), "minBufferTime": _iso_duration(2 * segment_s),
        "maxSegmentDuration": _iso_duration(max(d for _, layout in renditions for d, _, _ in layout["segments"])),
    })  # fmt: skip
    period = ET.SubElement(mpd, f"{{{_MPD_NS}}}Period", {"id": "0", "start": "PT0S"})
    sets: dict[tuple, list[tuple[str, dict]]] = {}
    for name, layout in renditions:
        if layout["content_type"] == "video":
            key = ("video", layout["codecs"].split(".")[0], Fraction(layout["width"], layout["height"]))
        else:
            key = ("audio",)
        sets.setdefault(key, []).append((name, layout))
    for index, (key, members) in enumerate(sorted(sets.items(), key=lambda item: item[0][0] != "video")):
        attrs = {
            "id": str(index), "contentType": key[0], "segmentAlignment": "true", "subsegmentAlignment": "true",
            "subsegmentStartsWithSAP": "1", "startWithSAP": "1",
        }  # fmt: skip
        if key[0] == "video":
            attrs["maxWidth"] = str(max(layout["width"] for _, layout in members))
            attrs["maxHeight"] = str(max(layout["height"] for _, layout in members))
            if members[0][1]["par"]:
                attrs["par"] = members[0][1]["par"]
        else:
            attrs["lang"] = "und"
        adaptation = ET.SubElement(period, f"{{{_MPD_NS}}}AdaptationSet", attrs)
        for name, layout in members:
            _representation(adaptation, name, layout, bit_rates(layout)[0])
    ET.indent(mpd)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(mpd, encoding="unicode") + "\n"


def write_package(
    *,
    out_dir: str | Path,
    renditions: Sequence[tuple[str, dict]],
    duration_s: float,
    segment_s: float,
    frame_rate: Fraction | None = None,
) -> list[HlsVariant]:
    """Write the HLS master and media playlists and the DASH manifest into ``out_dir`` for
    ``(name, layout)`` renditions whose files sit beside them under ``layout["file"]``.

    Master: BANDWIDTH is the peak segment rate of the video plus the peak of its audio group
    (RFC 8216 4.3.4.2: players that trust an average stall on busy scenes), AVERAGE-BANDWIDTH
    the mean, CODECS lists the audio codecs of the group too, and every segment starts with
    an IDR (#EXT-X-INDEPENDENT-SEGMENTS). Videos are listed tallest first."""
    out = Path(out_dir)
    videos = sorted(
        ((n, lay) for n, lay in renditions if lay["content_type"] == "video"), key=lambda item: -(item[1]["height"] or 0)
    )
    audios = [(n, lay) for n, lay in renditions if lay["content_type"] != "video"]
    if not videos:
        raise LayoutError("packaging needs at least one video rendition")
    for name, layout in renditions:
        (out / f"{name}.m3u8").write_text(media_playlist(layout, uri=layout["file"]), encoding="utf-8")

    master, variants = master_playlist(videos=videos, audios=audios, frame_rate=frame_rate)
    (out / MASTER_NAME).write_text(master, encoding="utf-8")
    (out / MANIFEST_NAME).write_text(dash_manifest([*videos, *audios], duration_s=duration_s, segment_s=segment_s), encoding="utf-8")
    return variants


def master_playlist(
    *, videos: Sequence[tuple[str, dict]], audios: Sequence[tuple[str, dict]], frame_rate: Fraction | None
) -> tuple[str, list[HlsVariant]]:
    """The HLS master playlist over the renditions' media playlists (``<name>.m3u8``), in the
    given order, and its variants (see :func:`write_package`)."""
    master = m3u8.M3U8()
    master.version = 7
    master.is_independent_segments = True
    audio_peak = audio_average = 0
    for position, (name, layout) in enumerate(audios):
        peak, average = bit_rates(layout)
        audio_peak, audio_average = max(audio_peak, peak), max(audio_average, average)
        master.add_media(m3u8.Media(
            uri=f"{name}.m3u8", type="AUDIO", group_id=AUDIO_GROUP, name=name, default="YES" if position == 0 else "NO",
            autoselect="YES", channels=layout["channels"] or None,
        ))  # fmt: skip
    audio_codecs = list(dict.fromkeys(layout["codecs"] for _, layout in audios if layout["codecs"]))
    variants = []
    for name, layout in videos:
        peak, average = bit_rates(layout)
        variant = HlsVariant(
            uri=f"{name}.m3u8", bandwidth=peak + audio_peak, average_bandwidth=average + audio_average,
            resolution=f"{layout['width']}x{layout['height']}", codecs=",".join([layout["codecs"], *audio_codecs]),
            audio_group=AUDIO_GROUP if audios else None,
        )  # fmt: skip
        stream_info = {
            "bandwidth": variant.bandwidth, "average_bandwidth": variant.average_bandwidth,
            "resolution": variant.resolution, "codecs": variant.codecs, "audio": variant.audio_group,
            "frame_rate": float(frame_rate) if frame_rate else None,
        }  # fmt: skip
        # m3u8 writes AUDIO="<group>" from the media of that group it is given.
        master.add_playlist(m3u8.Playlist(uri=variant.uri, stream_info=stream_info, media=master.media, base_uri=None))
        variants.append(variant)
    return master.dumps(), variants
