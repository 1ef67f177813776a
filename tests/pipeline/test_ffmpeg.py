"""The ffmpeg wrapper against the real ffmpeg 5.1: units, renditions, audio, packaging and
pictures, on tiny generated clips (probing and failures: test_ffmpeg_probe.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import m3u8
import pytest

from pipeline import ffmpeg as ff
from pipeline import manifests
from pipeline import packaging_cmds as pk
from pipeline.chunking import Chunk, plan_chunks, planning_fps, segment_duration_s
from tests.pipeline.ffmpeg_support import FAST, SAMPLE, needs_sample, rendition

# --------------------------------------------------------------------------------------
# encode units
# --------------------------------------------------------------------------------------


def encode_units(
    source: Path,
    chunks: list[Chunk],
    rend: ff.VideoRendition,
    *,
    fps: Fraction,
    segment_seconds: int,
    out_dir: Path,
    video: ff.VideoInfo,
) -> list[Path]:
    outputs = []
    for chunk in chunks:
        output = out_dir / f"{rend.name}-{chunk.index:04d}.mp4"
        args = ff.build_unit_command(
            input_url=source,
            output_path=output,
            chunk=chunk,
            rendition=rend,
            fps=fps,
            segment_seconds=segment_seconds,
            source=video,
        )
        result = ff.run_ffmpeg(args, total_frames=chunk.frame_count)
        assert result.frames == chunk.frame_count
        outputs.append(output)
    return outputs


def concat(outputs: list[Path], joined: Path) -> Path:
    list_file = joined.with_suffix(".txt")
    ff.write_concat_list(paths=outputs, list_file=list_file)
    ff.run_ffmpeg(ff.concat_command(list_file=list_file, output_path=joined))
    return joined


@pytest.mark.parametrize("codec", sorted(FAST))
def test_units_have_exact_frames_idr_per_segment_and_join_losslessly(clip, tmp_path, codec):
    """Two middle chunks of a 6 s clip (2 s chunks, 1 s segments) for each encoder."""
    video = ff.probe(clip("six")).video
    plan = plan_chunks(duration_s=video.duration_s, fps=video.fps, chunk_seconds=2, segment_seconds=1)
    outputs = encode_units(
        clip("six"),
        plan[1:3],
        rendition(codec),
        fps=video.fps,
        segment_seconds=1,
        out_dir=tmp_path,
        video=video,
    )
    for output, chunk in zip(outputs, plan[1:3], strict=True):
        assert ff.count_frames(output) == chunk.frame_count == 50
        assert ff.keyframe_indices(output) == [0, 25]
        out = ff.probe(output).video
        assert (out.width, out.height, out.pix_fmt, out.sar, out.rotation) == (120, 90, "yuv420p", 1, 0)
        assert out.fps == Fraction(25)
        assert ff.probe(output).audio == ()

    joined = concat(outputs, tmp_path / "joined.mp4")
    assert ff.count_frames(joined) == 100
    assert ff.keyframe_indices(joined) == [0, 25, 50, 75]
    assert ff.stream_durations(joined)["video"] == pytest.approx(4.0, abs=0.04)


def test_unit_of_a_rotated_source_has_display_dimensions_and_no_rotation(clip, tmp_path):
    video = ff.probe(clip("rotated")).video
    chunk = plan_chunks(duration_s=video.duration_s, fps=video.fps, chunk_seconds=2, segment_seconds=1)[1]
    [output] = encode_units(
        clip("rotated"),
        [chunk],
        rendition(height=160),
        fps=video.fps,
        segment_seconds=1,
        out_dir=tmp_path,
        video=video,
    )
    out = ff.probe(output).video
    assert (out.width, out.height, out.rotation) == (120, 160, 0)
    assert ff.count_frames(output) == chunk.frame_count


def test_unit_of_a_vfr_source_is_constant_rate_with_the_planned_frames(clip, tmp_path):
    video = ff.probe(clip("vfr")).video
    fps = planning_fps(fps=video.fps, avg_fps=video.avg_fps, vfr=video.vfr)
    plan = plan_chunks(duration_s=video.duration_s, fps=fps, chunk_seconds=2, segment_seconds=1)
    outputs = encode_units(
        clip("vfr"), plan, rendition(), fps=fps, segment_seconds=1, out_dir=tmp_path, video=video
    )
    for output, chunk in zip(outputs, plan, strict=True):
        assert ff.count_frames(output) == chunk.frame_count
        out = ff.probe(output).video
        assert not out.vfr and out.fps == fps
    assert ff.count_frames(concat(outputs, tmp_path / "joined.mp4")) == sum(c.frame_count for c in plan)


def test_unit_of_an_odd_sized_444_source_is_even_and_420(clip, tmp_path):
    video = ff.probe(clip("odd")).video
    chunk = plan_chunks(duration_s=video.duration_s, fps=video.fps, chunk_seconds=4, segment_seconds=1)[0]
    [output] = encode_units(
        clip("odd"),
        [chunk],
        rendition(height=120),
        fps=video.fps,
        segment_seconds=1,
        out_dir=tmp_path,
        video=video,
    )
    out = ff.probe(output).video
    assert (out.width, out.height, out.pix_fmt, out.bit_depth) == (160, 120, "yuv420p", 8)


def test_unit_of_a_ten_bit_interlaced_source_is_eight_bit(clip, tmp_path):
    for name in ("ten_bit", "interlaced"):
        video = ff.probe(clip(name)).video
        chunk = plan_chunks(duration_s=video.duration_s, fps=video.fps, chunk_seconds=2, segment_seconds=1)[0]
        [output] = encode_units(
            clip(name),
            [chunk],
            rendition(codec="libx265"),
            fps=video.fps,
            segment_seconds=1,
            out_dir=tmp_path,
            video=video,
        )
        out = ff.probe(output).video
        assert (out.pix_fmt, out.bit_depth, out.interlaced) == ("yuv420p", 8, False)
        assert ff.count_frames(output) == chunk.frame_count


def _min_psnr(encoded: Path, source: Path, *, fps: Fraction, width: int, height: int) -> float:
    """Lowest per-frame PSNR of ``encoded`` against the source run through fps+scale once.

    A frame dropped or repeated at a unit join shifts everything after it, and moving test
    patterns then score far below the ~40 dB of a correct lossy match.
    """
    stats = encoded.with_suffix(".psnr")
    graph = (
        f"[1:v]setpts=PTS-STARTPTS,fps={fps.numerator}/{fps.denominator},scale={width}:{height},"
        f"setsar=1[ref];[0:v]setpts=PTS-STARTPTS[enc];[enc][ref]psnr=stats_file={stats}"
    )
    ff.run_ffmpeg(["-i", str(encoded), "-i", str(source), "-lavfi", graph, "-f", "null", "-"])
    values = re.findall(r"psnr_y:(\S+)", stats.read_text())
    return min(float(v) for v in values)


def test_ten_second_clip_in_two_second_units_concatenates_to_the_whole(clip, tmp_path):
    video = ff.probe(clip("ten_s")).video
    plan = plan_chunks(duration_s=video.duration_s, fps=video.fps, chunk_seconds=2, segment_seconds=2)
    assert len(plan) == 5
    rend = rendition(height=180, crf=18)
    joined = concat(
        encode_units(
            clip("ten_s"), plan, rend, fps=video.fps, segment_seconds=2, out_dir=tmp_path, video=video
        ),
        tmp_path / "joined.mp4",
    )
    assert ff.count_frames(joined) == 250
    assert ff.stream_durations(joined)["video"] == pytest.approx(10.0, abs=1 / 25)
    assert ff.keyframe_indices(joined) == [0, 50, 100, 150, 200]
    assert _min_psnr(joined, clip("ten_s"), fps=video.fps, width=320, height=180) > 30


@needs_sample
def test_real_ntsc_footage_joins_frame_exactly(tmp_path):
    video = ff.probe(SAMPLE).video
    plan = plan_chunks(duration_s=video.duration_s, fps=video.fps, chunk_seconds=2, segment_seconds=2)
    assert [c.frame_count for c in plan] == [60, 60, 30]
    rend = rendition(height=180, crf=18)
    joined = concat(
        encode_units(SAMPLE, plan, rend, fps=video.fps, segment_seconds=2, out_dir=tmp_path, video=video),
        tmp_path / "joined.mp4",
    )
    assert ff.count_frames(joined) == 150
    assert ff.keyframe_indices(joined) == [0, 60, 120]
    assert _min_psnr(joined, SAMPLE, fps=video.fps, width=320, height=180) > 30


@needs_sample
def test_rendition_width_follows_the_display_aspect():
    base = ff.probe(SAMPLE).video
    assert ff.rendition_size(source=base, height=360) == (640, 360)
    # 16:9 has exact sizes near every rung (heights that are multiples of 18): 240 -> 234.
    assert ff.rendition_size(source=base, height=240) == (416, 234)


@pytest.mark.parametrize(
    "kwargs",
    [{"codec": "mpeg2video"}, {"height": 241}, {"crf": None}, {"maxrate_kbps": 900}],
)
def test_impossible_renditions_are_refused(kwargs):
    arguments = {"name": "x", "codec": "libx264", "height": 240, "crf": 23, **kwargs}
    with pytest.raises(ValueError):
        ff.VideoRendition(**arguments)


# --------------------------------------------------------------------------------------
# audio, once per file
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["aac", "libopus"])
def test_audio_is_encoded_once_for_the_whole_file(clip, tmp_path, codec):
    output = tmp_path / f"audio-{codec}.mp4"
    audio = ff.AudioRendition(name=codec, codec=codec, bitrate_kbps=64, channels=2)
    ff.run_ffmpeg(ff.build_audio_command(input_url=clip("plain"), output_path=output, rendition=audio))
    info = ff.probe(output)
    assert info.video is None
    assert [(a.codec, a.channels, a.sample_rate) for a in info.audio] == [
        ({"aac": "aac", "libopus": "opus"}[codec], 2, 48000)
    ]
    assert ff.stream_durations(output)["audio"] == pytest.approx(4.0, abs=0.05)


def test_audio_starts_with_the_first_video_frame(clip, tmp_path):
    info = ff.probe(clip("late_video"))
    output = tmp_path / "audio.mp4"
    audio = ff.AudioRendition(name="aac", codec="aac", bitrate_kbps=64)
    ff.run_ffmpeg(
        ff.build_audio_command(
            input_url=clip("late_video"),
            output_path=output,
            rendition=audio,
            video_start_offset_s=info.video.start_offset_s,
        )
    )
    assert ff.stream_durations(output)["audio"] == pytest.approx(6.0 - 0.2, abs=0.05)


# --------------------------------------------------------------------------------------
# packaging: each rendition one fragmented file, HLS + DASH by byte range, poster, sprite
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packaged(clip, tmp_path_factory) -> Path:
    """Three video renditions (two H.264, one VP9) and one AAC, each written in its single-file
    form as the assemble step does, then packaged as the package step does."""
    work = tmp_path_factory.mktemp("package")
    source = clip("package")
    video = ff.probe(source).video
    [whole] = plan_chunks(duration_s=video.duration_s, fps=video.fps, chunk_seconds=6, segment_seconds=2)
    segment_s = segment_duration_s(fps=video.fps, segment_seconds=2)
    renditions = {
        "h264-180p": rendition(height=180, crf=28),
        "h264-90p": rendition(height=90, crf=30),
        "vp9-90p": rendition("libvpx-vp9", crf=40),
    }
    inputs = {}
    for name, rend in renditions.items():
        [inputs[name]] = encode_units(source, [whole], rend, fps=video.fps, segment_seconds=2, out_dir=work, video=video)
    audio = work / "audio.mp4"
    ff.run_ffmpeg(
        ff.build_audio_command(
            input_url=source,
            output_path=audio,
            rendition=ff.AudioRendition(name="aac", codec="aac", bitrate_kbps=64),
        )
    )
    inputs["aac-64k"] = audio
    out_dir = work / "out"
    out_dir.mkdir()
    layouts = []
    for name, path in inputs.items():
        single = work / name
        single.mkdir()
        stream = "0:a:0" if name.startswith("aac") else "0:v:0"
        ff.run_ffmpeg(["-i", str(path), *pk.rendition_package_args(
            out_dir=single, file_name=f"{name}.mp4", segment_seconds=segment_s, stream=stream)])  # fmt: skip
        layouts.append((name, manifests.rendition_layout(out_dir=single, file_name=f"{name}.mp4")))
        shutil.copy(single / f"{name}.mp4", out_dir / f"{name}.mp4")
    variants = manifests.write_package(
        out_dir=out_dir, renditions=layouts, duration_s=6.0, segment_s=segment_s, frame_rate=Fraction(25)
    )
    assert [v.uri for v in variants] == ["h264-180p.m3u8", "h264-90p.m3u8", "vp9-90p.m3u8"]
    return out_dir


def _ffprobe(*args: str) -> str:
    return subprocess.run(
        [ff.FFPROBE, "-v", "error", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_each_rendition_is_one_file_that_hls_and_dash_address_by_byte_range(packaged):
    # Nothing but the renditions' own files, the playlists and the manifest.
    media = sorted(p.name for p in packaged.glob("*.mp4"))
    assert media == ["aac-64k.mp4", "h264-180p.mp4", "h264-90p.mp4", "vp9-90p.mp4"]
    master = m3u8.load(str(packaged / pk.MASTER_NAME))
    assert master.is_variant
    assert [(p.stream_info.resolution, p.stream_info.codecs.split(",")[0][:4]) for p in master.playlists] == [
        ((320, 180), "avc1"),
        ((160, 90), "avc1"),
        ((160, 90), "vp09"),
    ]
    [audio_media] = [m for m in master.media if m.type == "AUDIO"]
    for playlist in master.playlists:
        assert playlist.stream_info.bandwidth > 0
        assert "mp4a.40.2" in playlist.stream_info.codecs
        assert playlist.stream_info.audio == audio_media.group_id
    for uri in [p.uri for p in master.playlists] + [audio_media.uri]:
        media_playlist = m3u8.load(str(packaged / uri))
        file_name = uri.replace(".m3u8", ".mp4")
        assert media_playlist.is_endlist and media_playlist.playlist_type == "vod"
        assert media_playlist.segment_map[0].uri == file_name and media_playlist.segment_map[0].byterange.endswith("@0")
        assert {s.uri for s in media_playlist.segments} == {file_name}
        assert sum(s.duration for s in media_playlist.segments) == pytest.approx(6.0, abs=0.1)
        # The byte ranges tile the file after its header: each one a moof + mdat fragment.
        size = (packaged / file_name).stat().st_size
        ranges = [tuple(map(int, s.byterange.split("@"))) for s in media_playlist.segments]
        assert ranges[-1][1] + ranges[-1][0] == size
        assert all(a[1] + a[0] == b[1] for a, b in zip(ranges, ranges[1:], strict=False))
        boxes = {offset: kind for kind, offset, _ in manifests.top_level_boxes(packaged / file_name)}
        assert all(boxes.get(offset) == "moof" for _, offset in ranges)
    # Players read each media playlist on its own: ffprobe decodes every frame through one.
    frames = _ffprobe("-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0",
                      str(packaged / "h264-180p.m3u8")).split()  # fmt: skip
    assert set(frames) == {"150"}  # the stream, and again under its program
    # DASH on-demand profile: one SegmentBase per representation, its index the file's sidx.
    mpd = (packaged / pk.MANIFEST_NAME).read_text()
    assert "isoff-on-demand" in mpd and "<SegmentBase indexRange=" in mpd and "SegmentList" not in mpd
    for match in re.finditer(r"<BaseURL>([^<]+)</BaseURL>\s*<SegmentBase indexRange=\"(\d+)-(\d+)\"", mpd):
        boxes = {offset: (kind, size) for kind, offset, size in manifests.top_level_boxes(packaged / match[1])}
        assert boxes[int(match[2])] == ("sidx", int(match[3]) - int(match[2]) + 1)
    probed = _ffprobe("-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", str(packaged / pk.MANIFEST_NAME))
    assert sorted(set(probed.split())) == ["aac", "h264,160,90", "h264,320,180", "vp9,160,90"]


def test_master_playlist_declares_peak_bandwidth(packaged):
    master = m3u8.load(str(packaged / pk.MASTER_NAME))
    audio = m3u8.load(str(packaged / "aac-64k.m3u8"))
    audio_peak = max(s.byterange and int(s.byterange.split("@")[0]) * 8 / s.duration for s in audio.segments)
    for playlist in master.playlists:
        info = playlist.stream_info
        media = m3u8.load(str(packaged / playlist.uri))
        rates = [int(s.byterange.split("@")[0]) * 8 / s.duration for s in media.segments]
        # RFC 8216 4.3.4.2: BANDWIDTH is the peak segment rate (video plus its audio), not the mean.
        assert info.bandwidth >= max(rates) + audio_peak - 2
        assert info.bandwidth >= info.average_bandwidth > 0
        assert info.resolution and info.codecs and info.audio and info.frame_rate == 25.0
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in (packaged / pk.MASTER_NAME).read_text()


def test_a_layout_needs_the_files_index(tmp_path, packaged):
    # A plain (non-fragmented) MP4 has no sidx: packaging it by byte range is refused.
    single = tmp_path / "single"
    shutil.copytree(packaged, single)
    plain = single / "h264-90p.mp4"
    ff.run_ffmpeg(["-i", str(packaged / "h264-90p.mp4"), "-c", "copy", "-f", "mp4", str(plain)])
    (single / pk.MASTER_NAME).write_text('#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nh264-90p.m3u8\n')
    with pytest.raises(manifests.LayoutError, match="no moov or sidx"):
        manifests.rendition_layout(out_dir=single, file_name="h264-90p.mp4")


def test_a_stored_rendition_is_checked_from_its_own_boxes(tmp_path, packaged):
    """The assemble step's frame count, duration and stream rate come from the fragmented
    file's trun, sidx and mdat boxes: the same figures ffprobe gives for that stream."""
    for name, kind in [("h264-180p", "v"), ("vp9-90p", "v"), ("aac-64k", "a")]:
        path = packaged / f"{name}.mp4"
        facts = manifests.fragment_facts(path)
        packets = _ffprobe("-select_streams", f"{kind}:0", "-count_packets", "-show_entries",
                           "stream=nb_read_packets", "-of", "csv=p=0", str(path))  # fmt: skip
        assert facts.samples == int(packets) > 0
        assert facts.duration_s == pytest.approx(6.0, abs=0.05)
        plain = tmp_path / f"{name}-plain.mp4"
        ff.run_ffmpeg(["-i", str(path), "-map", "0", "-c", "copy", "-f", "mp4", str(plain)])
        rate = int(_ffprobe("-select_streams", f"{kind}:0", "-show_entries", "stream=bit_rate", "-of", "csv=p=0", str(plain)))
        assert facts.bitrate_kbps == pytest.approx(rate / 1000, rel=0.02)
    # A file cut short (an upload or disk that failed) is refused with a reason, not miscounted.
    whole = (packaged / "h264-180p.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(manifests.LayoutError):
        manifests.fragment_facts(cut)
    plain = tmp_path / "no-index.mp4"
    ff.run_ffmpeg(["-i", str(packaged / "h264-90p.mp4"), "-c", "copy", "-f", "mp4", str(plain)])
    with pytest.raises(manifests.LayoutError, match="no sidx"):
        manifests.fragment_facts(plain)


def test_poster_is_one_frame_at_a_tenth_of_the_video(clip, tmp_path):
    video = ff.probe(clip("package")).video
    poster = tmp_path / "poster.jpg"
    ff.run_ffmpeg(
        pk.poster_command(
            input_url=clip("package"), output_path=poster, duration_s=6, source=video, height=90
        )
    )
    info = ff.probe(poster)
    assert (info.video.codec, info.video.width, info.video.height) == ("mjpeg", 160, 90)


def test_sprite_and_its_webvtt_map_every_thumbnail(clip, tmp_path):
    video = ff.probe(clip("package")).video
    layout = pk.sprite_layout(duration_s=6, source=video, interval_s=1, columns=4, thumb_height=36)
    sprite = tmp_path / "sprite.jpg"
    ff.run_ffmpeg(pk.sprite_command(input_url=clip("package"), output_path=sprite, layout=layout))
    info = ff.probe(sprite).video
    assert (layout.count, layout.columns, layout.rows) == (6, 4, 2)
    assert (info.width, info.height) == (4 * 64, 2 * 36)

    vtt = pk.sprite_vtt(layout=layout, duration_s=6, sprite_url="sprite.jpg")
    cues = re.findall(r"(\S+) --> (\S+)\n(\S+)", vtt)
    assert vtt.startswith("WEBVTT\n")
    assert len(cues) == 6
    assert cues[0] == ("00:00:00.000", "00:00:01.000", "sprite.jpg#xywh=0,0,64,36")
    assert cues[5] == ("00:00:05.000", "00:00:06.000", "sprite.jpg#xywh=64,36,64,36")
