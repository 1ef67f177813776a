"""Pieces the media benchmarks (pipeline.py, quality.py) share: the source they encode, CPU
accounting of the processes they start, and stopping their workers."""

import resource
import signal
import subprocess
from pathlib import Path


def children_cpu() -> float:
    """CPU seconds of this process's reaped children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout=60)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def make_source(path: Path, duration: int) -> None:
    """720p25 testsrc2 at crf 18 with AAC: the media benchmarks' source."""
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={duration}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration}",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", "50",
            "-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart", str(path),
        ],
        check=True,
    )  # fmt: skip
