"""The fast measurement against the full one, on real footage and on the benchmark's source.

Quality control scores a sample of the frames (docs/quality.md, "Sampling"). Each sampled
frame gets exactly the value a measurement of every frame gives it; the whole-chunk figures
then come from fewer frames. Here the figures of the fast measurement, at the step the settings
choose for the clip (and, on the benchmark's content, the one they choose for the benchmark's
60 s title, `bench/quality.py`), are compared with those of the full one: mean VMAF within 1.0
and 5th percentile within 2.0 (PSNR and SSIM are checked too). Run with ``-s`` to see the
differences.
"""

from fractions import Fraction

import pytest
from django.conf import settings

from bench.media_bench import make_source
from pipeline import ffmpeg
from pipeline.chunking import Chunk, segment_frames
from pipeline.ladders import LADDERS
from pipeline.media import planned_fps
from pipeline.quality import metrics
from tests.conftest import sample_path

pytestmark = [pytest.mark.slow]

VMAF_MEAN, VMAF_P5 = 1.0, 2.0
PSNR_MEAN, PSNR_P5 = 0.5, 1.0  # dB
SSIM_MEAN, SSIM_P5 = 0.002, 0.005


def rung(height: int) -> ffmpeg.VideoRendition:
    params = next(r for r in LADDERS["standard"]["video"] if r["height"] == height)
    return ffmpeg.VideoRendition(
        name=params["name"], codec=params["codec"], height=height, crf=params["crf"],
        maxrate_kbps=params["maxrate_kbps"], bufsize_kbps=params["bufsize_kbps"], preset=params["preset"],
    )  # fmt: skip


def encoded(work, source, *, heights, segment_seconds):
    """The whole clip as one chunk, encoded into standard-ladder rungs as the units encode."""
    video = ffmpeg.probe(str(source)).video
    fps = planned_fps(video)
    count = ffmpeg.count_frames(source)
    chunk = Chunk(index=0, start_s=0.0, end_s=float(count / fps), start_frame=0, frame_count=count)
    outputs = []
    for height in heights:
        out = work / f"{height}.mp4"
        ffmpeg.run_ffmpeg(ffmpeg.build_unit_command(
            input_url=source, output_path=out, chunk=chunk, rendition=rung(height), fps=fps,
            segment_seconds=segment_seconds, source=video, threads=1,
        ))  # fmt: skip
        outputs.append(out)
    return video, fps, chunk, outputs


def measure_all(work, name, source, video, fps, chunk, outputs, *, step, binary):
    tool = metrics.qc_tool(binary)
    logs = work / name
    logs.mkdir()
    size = metrics.compare_size(display_width=video.display_width, display_height=video.display_height)
    args = metrics.measure_command(
        distorted_urls=outputs, source_url=source, chunk=chunk, fps=fps, source=video, size=size, tool=tool,
        log_dir=logs, threads=2, step=step,
    )  # fmt: skip
    ffmpeg.run_ffmpeg(args, binary=tool.binary)
    return [
        metrics.read_scores(tool=tool, log_dir=logs, frame_count=chunk.frame_count, step=step, index=i)
        for i in range(len(outputs))
    ]


def chosen_step(frames: int, fps: Fraction, segment_seconds: int) -> int:
    """The step the settings choose for a title of ``frames`` at this rate and GOP."""
    return metrics.frame_step(
        total_frames=frames, max_step=settings.REELFLOW_QC_FRAME_STEP,
        min_frames=settings.REELFLOW_QC_MIN_FRAMES, gop=segment_frames(fps=fps, segment_seconds=segment_seconds),
    )  # fmt: skip


@pytest.fixture(scope="module")
def bench_clip(tmp_path_factory):
    """12 s of the benchmark's source (720p25 testsrc2, crf 18), its 240p and 720p rungs (4 s
    segments, as the benchmark runs)."""
    work = tmp_path_factory.mktemp("bench-clip")
    source = work / "source.mp4"
    make_source(source, 12)
    return (work, source, 4, *encoded(work, source, heights=(240, 720), segment_seconds=4))


@pytest.fixture(scope="module")
def flower_clip(tmp_path_factory):
    """flower.mp4 (5 s, 960x540, 29.97 fps, real footage) and its 240p, 360p and 480p rungs."""
    source = sample_path("flower.mp4")
    assert source.is_file(), f"the shared sample is missing: {source}"
    work = tmp_path_factory.mktemp("flower")
    return (work, source, 2, *encoded(work, source, heights=(240, 360, 480), segment_seconds=2))


@pytest.fixture(scope="module")
def full_measurement(vmaf_ffmpeg):
    cache = {}

    def measure(clip, work, source, video, fps, chunk, outputs):
        if clip not in cache:
            cache[clip] = measure_all(work, "full", source, video, fps, chunk, outputs, step=1, binary=vmaf_ffmpeg)
        return cache[clip]

    return measure


@pytest.mark.parametrize(
    ("clip", "title"), [("bench_clip", "clip"), ("bench_clip", "60 s"), ("flower_clip", "clip")]
)
def test_fast_measurement_agrees_with_the_full_one(clip, title, request, vmaf_ffmpeg, full_measurement):
    """At the step the settings choose for the clip itself, and, on the benchmark's content,
    for its 60 s title (a sparser sample of this shorter clip). A 5 s clip sampled as sparsely
    as a 60 s title would keep 5 frames: the settings never sample a rendition that thinly
    (``REELFLOW_QC_MIN_FRAMES``), and 5 frames of flower.mp4 did miss its mean VMAF by 1.4."""
    work, source, segment_seconds, video, fps, chunk, outputs = request.getfixturevalue(clip)
    step = chosen_step(chunk.frame_count if title == "clip" else round(60 * fps), fps, segment_seconds)
    assert step >= 7, "both are sampled"
    full = full_measurement(clip, work, source, video, fps, chunk, outputs)
    fast = measure_all(work, f"fast-{step}", source, video, fps, chunk, outputs, step=step, binary=vmaf_ffmpeg)
    report = []
    for output, every, sampled in zip(outputs, full, fast, strict=True):
        assert every.frames == chunk.frame_count and sampled.indices == metrics.sampled_indices(chunk.frame_count, step)
        for metric, (mean_tol, p5_tol) in {
            "vmaf": (VMAF_MEAN, VMAF_P5), "psnr": (PSNR_MEAN, PSNR_P5), "ssim": (SSIM_MEAN, SSIM_P5),
        }.items():  # fmt: skip
            a, b = metrics.summarize(every.values[metric]), metrics.summarize(sampled.values[metric])
            report.append(f"{output.stem} {metric}: mean {b['mean'] - a['mean']:+.3f}, p5 {b['p5'] - a['p5']:+.3f}")
            assert abs(b["mean"] - a["mean"]) <= mean_tol, report
            assert abs(b["p5"] - a["p5"]) <= p5_tol, report
            # Each sampled frame has exactly its value in the full measurement.
            assert sampled.values[metric] == pytest.approx(
                [every.values[metric][i] for i in sampled.indices], abs=1e-6
            )
    print(f"{clip} ({title} step), every {step} frames ({len(fast[0].indices)} of {chunk.frame_count}):", *report, sep="\n  ")
