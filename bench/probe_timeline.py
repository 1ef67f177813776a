"""What planning from the frames that decode adds to a job's probe (issue 22): the decode check
of the first frame, the packet scan of an unindexed source, and the rebased copy made when its
clock jumps back, each against the plain ffprobe run the probe always made, on one source.

    .venv/bin/python bench/probe_timeline.py [--seconds 60] [--size 1280x720] [--runs 5]

The source is generated (testsrc2 + sine, x264 ultrafast, MPEG-TS) in a temporary folder and
read from local disk, so the figures are ffmpeg's work, not a network transfer: through a
presigned URL the scan and the copy also read the whole object once.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

from pipeline import ffmpeg  # noqa: E402
from pipeline.ffmpeg import timeline  # noqa: E402


def median_ms(run, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-timeline-") as tmp:
        source = Path(tmp) / "source.ts"
        subprocess.run(  # noqa: S603 - a fixed ffmpeg command line
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={args.size}:rate=30:duration={args.seconds}",
             "-f", "lavfi", "-i", f"sine=duration={args.seconds}", "-c:v", "libx264", "-preset", "ultrafast", "-g", "60",
             "-c:a", "aac", "-f", "mpegts", str(source)],
            check=True,
        )  # fmt: skip
        size_mib = source.stat().st_size / 1024**2
        probe = median_ms(lambda: ffmpeg.probe(source, count_packets=False), args.runs)
        decode = median_ms(lambda: timeline.first_frame_decodes(source, stream_index=0), args.runs)
        scan = median_ms(lambda: timeline.scan(source, stream_index=0), args.runs)
        copy = median_ms(lambda: timeline.rebase_copy(source, Path(tmp) / "rebased.mkv", stream_index=0), args.runs)
    print(f"source: {args.seconds} s {args.size} MPEG-TS, {size_mib:.1f} MiB, median of {args.runs} runs")
    print(f"  ffprobe (as before)      {probe:7.0f} ms")
    print(f"  first frame decodes      {decode:7.0f} ms  ({decode / probe:.2f} x the probe)")
    print(f"  packet scan              {scan:7.0f} ms  ({scan / probe:.2f} x)")
    print(f"  rebased copy (only when the clock jumps back) {copy:7.0f} ms  ({copy / probe:.2f} x)")


if __name__ == "__main__":
    main()
