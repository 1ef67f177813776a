"""The measurement itself, on real ffmpeg runs over tiny generated clips: the comparison size,
the statistics, the log parsers, and that frames pair up one to one (a good encode scores
high, a crf 51 encode and a one-frame misalignment score clearly lower)."""

from fractions import Fraction

import pytest

from pipeline import ffmpeg
from pipeline.chunking import Chunk
from pipeline.quality import metrics
from tests.pipeline.clips import make_clip

FPS = Fraction(25)
# The second 2 s chunk of a 4 s clip: the source read starts with a seek, as most chunks do.
CHUNK = Chunk(index=1, start_s=2.0, end_s=4.0, start_frame=50, frame_count=50)


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        ((1280, 720), (1280, 720)),  # compared at the source's own size
        ((3840, 2160), (1920, 1080)),  # capped at 1080 lines, aspect kept
        ((1080, 1920), (608, 1080)),  # portrait: 1080 lines high
        ((853, 480), (854, 480)),  # even sides for 4:2:0
        ((1024, 576), (1024, 576)),  # anamorphic source, compared at its display size
    ],
)
def test_compare_size_is_the_display_size_capped_at_1080_lines(display, expected):
    assert metrics.compare_size(display_width=display[0], display_height=display[1]) == expected


@pytest.mark.parametrize(
    ("total", "gop", "expected"),
    [
        (1500, 100, 19),  # the benchmark: 60 s at 25 fps, 4 s segments
        (1798, 60, 19),  # 60 s at 29.97 fps, 2 s segments
        (1500, 95, 17),  # 19 divides the GOP: the next step coprime with it and with 6
        (1500, 0, 19),
        (350, 50, 7),  # at least 50 frames scored: 7 at most
        (300, 60, 1),  # only 5 fits, and 5 divides the GOP: every frame
        (150, 60, 1),  # too short to sample (flower.mp4): every frame
    ],
)
def test_frame_step_is_coprime_with_the_gop_and_keeps_enough_frames(total, gop, expected):
    assert metrics.frame_step(total_frames=total, max_step=20, min_frames=50, gop=gop) == expected
    assert metrics.frame_step(total_frames=total, max_step=1, min_frames=50, gop=gop) == 1


def test_sampled_frames_start_half_a_step_in():
    assert metrics.sampled_indices(60, 19) == [9, 28, 47]
    assert metrics.sampled_indices(12, 5) == [0, 5, 10], "below 7 the sample starts at frame 0"
    assert metrics.sampled_indices(6, 19) == [0], "a chunk shorter than the offset"
    assert metrics.sampled_indices(3, 1) == [0, 1, 2]
    assert metrics.index_unpack(metrics.index_pack([9, 28, 47])) == [9, 28, 47]


def test_summary_is_mean_fifth_percentile_and_minimum():
    values = [float(v) for v in range(100, 0, -1)]
    summary = metrics.summarize(values)
    assert summary["mean"] == pytest.approx(50.5)
    assert summary["p5"] == pytest.approx(5.95)  # linear between closest ranks (numpy's default)
    assert summary["min"] == 1.0
    assert metrics.summarize([42.0]) == {"mean": 42.0, "p5": 42.0, "min": 42.0}


def test_per_frame_values_pack_to_four_bytes_a_frame():
    values = [93.12345, 0.0, 100.0, 41.5, 0.987654]
    packed = metrics.frames_pack(values)
    assert len(packed) <= 4 * len(values) * 4 / 3 + 4
    assert metrics.frames_unpack(packed) == pytest.approx(values, rel=1e-6)


def test_the_default_build_has_libvmaf_and_debians_does_not(vmaf_ffmpeg, plain_ffmpeg):
    with_vmaf, without = metrics.qc_tool(vmaf_ffmpeg), metrics.qc_tool(plain_ffmpeg)
    assert with_vmaf.metrics == ("vmaf", "psnr", "ssim") and "libvmaf" in with_vmaf.label
    assert without.metrics == ("psnr", "ssim") and "no libvmaf" in without.label
    assert with_vmaf.version != without.version


def test_stats_files_parse_and_identical_frames_cap_at_60_db(tmp_path, plain_ffmpeg):
    clip = make_clip(tmp_path / "same.mp4", duration=1, width=160, height=120, audio=False)
    tool = metrics.qc_tool(plain_ffmpeg)
    video = ffmpeg.probe(str(clip)).video
    chunk = Chunk(index=0, start_s=0, end_s=1, start_frame=0, frame_count=25)
    args = metrics.measure_command(
        distorted_urls=[clip],
        source_url=clip,
        chunk=chunk,
        fps=FPS,
        source=video,
        size=(160, 120),
        tool=tool,
        log_dir=tmp_path,
    )
    ffmpeg.run_ffmpeg(args, binary=tool.binary)
    assert "psnr_y:inf" in metrics.log_file(tmp_path, metrics.PSNR_LOG).read_text()
    scores = metrics.read_scores(tool=tool, log_dir=tmp_path, frame_count=25)
    assert scores.values["psnr"] == [metrics.PSNR_MAX_DB] * 25
    assert scores.values["ssim"] == [1.0] * 25
    assert scores.indices == list(range(25))
    with pytest.raises(ffmpeg.PermanentMediaError, match="did not pair up"):
        metrics.read_scores(tool=tool, log_dir=tmp_path, frame_count=24)


def test_log_paths_may_hold_colons_and_quotes(tmp_path, plain_ffmpeg):
    """ffmpeg-python escapes filter options, so a log folder's name cannot break the graph."""
    clip = make_clip(tmp_path / "same.mp4", duration=1, width=160, height=120, audio=False)
    logs = tmp_path / "job:7 'rung'"
    logs.mkdir()
    tool = metrics.qc_tool(plain_ffmpeg)
    chunk = Chunk(index=0, start_s=0, end_s=1, start_frame=0, frame_count=25)
    args = metrics.measure_command(
        distorted_urls=[clip], source_url=clip, chunk=chunk, fps=FPS, source=ffmpeg.probe(str(clip)).video,
        size=(160, 120), tool=tool, log_dir=logs,
    )  # fmt: skip
    ffmpeg.run_ffmpeg(args, binary=tool.binary)
    assert metrics.read_scores(tool=tool, log_dir=logs, frame_count=25).frames == 25


def test_unreadable_logs_are_permanent_errors(tmp_path):
    with pytest.raises(ffmpeg.PermanentMediaError):
        metrics.parse_vmaf_log('{"frames": [{"frameNum": 0, "metrics": {}}]}')
    with pytest.raises(ffmpeg.PermanentMediaError):
        metrics.parse_psnr_stats("n:1 mse_avg:1.0 psnr_avg:30.0\n")
    tool = metrics.QcTool(binary="ffmpeg", version="x", has_libvmaf=True)
    with pytest.raises(ffmpeg.PermanentMediaError, match="without writing"):
        metrics.read_scores(tool=tool, log_dir=tmp_path, frame_count=1)


@pytest.fixture(scope="module")
def encodes(tmp_path_factory):
    """A 4 s 640x360 source and chunk 1 of it encoded as the pipeline's units are: a good
    encode at the source's size, the same at crf 51, and a good 234-line rung (upscaled)."""
    work = tmp_path_factory.mktemp("align")
    source = make_clip(work / "source.mp4", duration=4, width=640, height=360, fps=25, audio=False)
    video = ffmpeg.probe(str(source)).video
    outputs = {}
    for name, height, crf in [("good", 360, 16), ("crf51", 360, 51), ("rung234", 234, 23)]:
        rendition = ffmpeg.VideoRendition(name=name, codec="libx264", height=height, crf=crf)
        out = work / f"{name}.mp4"
        # The first unit also keeps the chunk's decoded frames, as on a worker (decoded_cache).
        decoded = {"cache_output": work / "decoded.mkv"} if name == "good" else {}
        ffmpeg.run_ffmpeg(ffmpeg.build_unit_command(
            input_url=source, output_path=out, chunk=CHUNK, rendition=rendition, fps=FPS, segment_seconds=2,
            source=video, **decoded,
        ))  # fmt: skip
        outputs[name] = out
    outputs["decoded"] = work / "decoded.mkv"
    return source, video, outputs


def measure(tmp_path, binary, source, video, distorted, *, chunk=CHUNK) -> dict:
    tool = metrics.qc_tool(binary)
    logs = tmp_path / distorted.stem / str(chunk.start_frame)
    logs.mkdir(parents=True)
    size = metrics.compare_size(display_width=video.display_width, display_height=video.display_height)
    args = metrics.measure_command(
        distorted_urls=[distorted],
        source_url=source,
        chunk=chunk,
        fps=FPS,
        source=video,
        size=size,
        tool=tool,
        log_dir=logs,
        threads=2,
    )
    ffmpeg.run_ffmpeg(args, binary=tool.binary)
    measured = metrics.read_scores(tool=tool, log_dir=logs, frame_count=chunk.frame_count)
    assert measured.frames == chunk.frame_count
    return {metric: metrics.summarize(values) for metric, values in measured.values.items()}


@pytest.mark.parametrize("tool", ["vmaf_ffmpeg", "plain_ffmpeg"])
def test_frames_pair_up_one_to_one(tmp_path, encodes, tool, request):
    """Against the right source frames a near-lossless encode scores high; a crf 51 encode,
    and the same good encode compared one frame off, score far lower. A measurement that
    paired frames wrongly would look like the latter."""
    binary = request.getfixturevalue(tool)
    source, video, outputs = encodes
    good = measure(tmp_path, binary, source, video, outputs["good"])
    bad = measure(tmp_path, binary, source, video, outputs["crf51"])
    shifted_chunk = Chunk(index=1, start_s=2.04, end_s=4.0, start_frame=51, frame_count=49)
    shifted = measure(tmp_path, binary, source, video, outputs["good"], chunk=shifted_chunk)
    rung = measure(tmp_path, binary, source, video, outputs["rung234"])

    assert good["psnr"]["mean"] > 40 and good["psnr"]["p5"] > 38
    assert bad["psnr"]["mean"] < good["psnr"]["mean"] - 8
    assert shifted["psnr"]["mean"] < good["psnr"]["mean"] - 8
    assert good["ssim"]["mean"] > 0.97 and bad["ssim"]["mean"] < good["ssim"]["mean"] - 0.05
    # A smaller rung, upscaled for the comparison, lands between the two.
    assert bad["psnr"]["mean"] < rung["psnr"]["mean"] < good["psnr"]["mean"]
    if tool == "vmaf_ffmpeg":
        assert good["vmaf"]["mean"] > 90
        assert bad["vmaf"]["mean"] < good["vmaf"]["mean"] - 40
        assert shifted["vmaf"]["mean"] < good["vmaf"]["mean"] - 40
        assert bad["vmaf"]["p5"] <= bad["vmaf"]["mean"] <= good["vmaf"]["p5"]
    else:
        assert "vmaf" not in good


def test_psnr_and_ssim_do_not_depend_on_the_build(tmp_path, encodes, vmaf_ffmpeg, plain_ffmpeg):
    """With or without libvmaf, PSNR and SSIM are the same numbers: a rule or a chart can
    compare jobs measured by different workers."""
    source, video, outputs = encodes
    with_vmaf = measure(tmp_path / "a", vmaf_ffmpeg, source, video, outputs["rung234"])
    without = measure(tmp_path / "b", plain_ffmpeg, source, video, outputs["rung234"])
    for stat in ("mean", "p5"):
        assert with_vmaf["psnr"][stat] == pytest.approx(without["psnr"][stat], abs=0.02)
        assert with_vmaf["ssim"][stat] == pytest.approx(without["ssim"][stat], abs=1e-4)


def measured_frames(tmp_path, binary, source, video, distorted, *, step, name, cached=None):
    tool = metrics.qc_tool(binary)
    logs = tmp_path / name
    logs.mkdir(parents=True)
    args = metrics.measure_command(
        distorted_urls=distorted, source_url=source, chunk=CHUNK, fps=FPS, source=video, size=(640, 360),
        tool=tool, log_dir=logs, threads=2, step=step, cached_source=cached,
    )  # fmt: skip
    ffmpeg.run_ffmpeg(args, binary=tool.binary)
    return [
        metrics.read_scores(tool=tool, log_dir=logs, frame_count=CHUNK.frame_count, step=step, index=i)
        for i in range(len(distorted))
    ]


@pytest.mark.parametrize("tool", ["vmaf_ffmpeg", "plain_ffmpeg"])
def test_sampled_frames_score_what_the_full_measurement_gives_them(tmp_path, encodes, tool, request):
    """Every sampled frame gets exactly its value in a measurement of every frame (VMAF's motion
    feature included: it sees the frame's neighbours), whether the sample starts at frame 0
    (step 5) or half a step in (step 7), and a batch of renditions measured by one run scores
    each as a run of its own does."""
    binary = request.getfixturevalue(tool)
    source, video, outputs = encodes
    both = [outputs["rung234"], outputs["good"]]
    full = measured_frames(tmp_path, binary, source, video, both, step=1, name="full")
    for step in (5, 7):
        sampled = measured_frames(tmp_path, binary, source, video, both, step=step, name=f"step{step}")
        for every, some in zip(full, sampled, strict=True):
            assert some.indices == metrics.sampled_indices(CHUNK.frame_count, step)
            assert set(some.values) == set(every.values)
            for metric, values in some.values.items():
                assert values == pytest.approx([every.values[metric][i] for i in some.indices], abs=1e-6), metric
    alone = measured_frames(tmp_path, binary, source, video, [outputs["good"]], step=7, name="alone")[0]
    assert alone.values == sampled[1].values


def test_the_units_decoded_copy_of_the_source_measures_as_the_source(tmp_path, encodes, vmaf_ffmpeg):
    """A measurement that reads the chunk's source frames from a unit's decoded copy (instead
    of decoding the source again) gives the same numbers, frame for frame."""
    source, video, outputs = encodes
    both = [outputs["rung234"], outputs["crf51"]]
    decoded = measured_frames(tmp_path, vmaf_ffmpeg, source, video, both, step=7, name="c", cached=outputs["decoded"])
    decoding = measured_frames(tmp_path, vmaf_ffmpeg, source, video, both, step=7, name="s")
    assert [m.values for m in decoded] == [m.values for m in decoding]
    assert decoded[0].values["vmaf"] and decoded[0].indices == metrics.sampled_indices(CHUNK.frame_count, 7)


def test_tiny_pictures_are_measured_without_vmaf(tmp_path, vmaf_ffmpeg):
    """libvmaf crashes (SIGSEGV) on 16-pixel sides: below 32 pixels the measurement takes PSNR
    and SSIM only, and says why."""
    tool = metrics.qc_tool(vmaf_ffmpeg)
    assert tool.at((640, 360)) is tool
    tiny = tool.at((16, 16))
    assert not tiny.has_libvmaf and tiny.metrics == ("psnr", "ssim") and "under 32 pixels" in tiny.label
    clip = make_clip(tmp_path / "tiny.mp4", duration=1, width=16, height=16, audio=False)
    chunk = Chunk(index=0, start_s=0, end_s=1, start_frame=0, frame_count=25)
    args = metrics.measure_command(
        distorted_urls=[clip], source_url=clip, chunk=chunk, fps=FPS, source=ffmpeg.probe(str(clip)).video,
        size=(16, 16), tool=tiny, log_dir=tmp_path, step=7,
    )  # fmt: skip
    ffmpeg.run_ffmpeg(args, binary=tiny.binary)
    scores = metrics.read_scores(tool=tiny, log_dir=tmp_path, frame_count=25, step=7)
    assert set(scores.values) == {"psnr", "ssim"} and scores.indices == [3, 10, 17, 24]
