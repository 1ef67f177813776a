"""Pieces the media benchmarks (pipeline.py, quality.py, publish.py) share: the source they
encode, CPU accounting of the processes they start, stopping their workers, the shared samples,
free ports and medians."""

import importlib.util
import os
import resource
import signal
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024**2


def bench_pipeline():
    """bench/pipeline.py as a module (its name is taken by the `pipeline` package)."""
    spec = importlib.util.spec_from_file_location("bench_pipeline", ROOT / "bench" / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def sample_path(name: str) -> Path | None:
    """tests/conftest.py's lookup: $REELFLOW_SAMPLES_DIR, ../shared/samples, /work/shared/samples."""
    for folder in filter(None, [os.environ.get("REELFLOW_SAMPLES_DIR", ""), str(ROOT.parent / "shared" / "samples"),
                                "/work/shared/samples"]):  # fmt: skip
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def rnd(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
