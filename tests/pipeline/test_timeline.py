"""pipeline.ffmpeg.timeline on real generated files: what decodes, against what is declared."""

from fractions import Fraction

from pipeline import ffmpeg
from pipeline.ffmpeg import timeline
from tests.pipeline import odd_clips
from tests.pipeline.clips import make_clip


def test_a_joined_transport_stream_shows_its_clock_reset(tmp_path):
    path = odd_clips.make_ts_with_reset(tmp_path / "joined.ts")
    info = ffmpeg.probe(path, count_packets=False)
    found = timeline.scan(path, stream_index=info.video.index)
    assert found.packets == 150 and found.resets == 1
    assert info.video.duration_s == 3.0, "the header declares the first recording only"
    copy = tmp_path / "rebased.mkv"
    timeline.rebase_copy(path, copy, stream_index=info.video.index)
    rebased = ffmpeg.probe(copy)
    again = timeline.scan(copy, stream_index=rebased.video.index)
    assert (again.packets, again.resets) == (150, 0) and abs(again.duration_s - 6.0) < 0.05


def test_a_short_declared_duration_is_replaced_by_the_frames_extent(tmp_path):
    path = odd_clips.make_short_declared_mkv(tmp_path / "camera.mkv", duration=3, declared=2.2)
    info = ffmpeg.probe(path, count_packets=False)
    assert abs(info.duration - 2.2) < 0.01
    seen = timeline.with_timeline(info, timeline.scan(path, stream_index=info.video.index))
    assert seen.video.frame_count == 75 and abs(seen.video.duration_s - 3.0) < 1e-6
    assert seen.duration >= 3.0 and not seen.video.vfr


def test_irregular_frames_are_judged_variable_rate_from_their_packets(tmp_path):
    path = odd_clips.make_extreme_vfr(tmp_path / "phone.mp4")
    info = ffmpeg.probe(path, count_packets=False)
    seen = timeline.with_timeline(info, timeline.scan(path, stream_index=info.video.index))
    assert seen.video.vfr and seen.video.frame_count == 84
    assert 7 < float(seen.video.avg_fps) < 8


def test_field_pictures_count_one_frame_per_two_packets():
    fields = timeline.Timeline(packets=100, first_s=0, end_s=2, resets=0, median_interval_s=0.02)
    assert timeline.packets_per_frame(fields, Fraction(25)) == 2
    assert timeline.packets_per_frame(fields, Fraction(50)) == 1


def test_a_file_whose_media_data_is_gone_decodes_no_frame(tmp_path):
    good = make_clip(tmp_path / "good.mp4", duration=1, audio=False)
    assert timeline.first_frame_decodes(good, stream_index=0)
    bad = odd_clips.make_undecodable_mp4(tmp_path / "bad.mp4")
    try:
        decodes = timeline.first_frame_decodes(bad, stream_index=0)
    except ffmpeg.PermanentMediaError as exc:
        assert exc.reason == ffmpeg.UNDECODABLE_REASON
    else:
        assert not decodes
