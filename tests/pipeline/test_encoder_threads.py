"""Encoder threads per unit: the machine's CPUs shared among the encode workers running on it."""

import socket
import uuid

import pytest
from rq import Worker

from pipeline import ffmpeg as ff
from pipeline.chunking import plan_chunks
from pipeline.steps import units as unit_step
from tests.pipeline import clips


@pytest.mark.parametrize(
    ("cpus", "workers", "threads"),
    [(2, 2, 1), (2, 3, 1), (16, 2, 8), (2, 1, 2), (8, 0, 0)],
)
def test_cpus_are_shared_among_the_workers(cpus, workers, threads):
    assert unit_step.encoder_threads(cpus=cpus, workers=workers) == threads


@pytest.fixture
def fresh_count(monkeypatch):
    monkeypatch.setattr(unit_step, "_threads_cache", None)


def _register(conn, queues, *, hostname=None):
    worker = Worker(queues, connection=conn, name=f"t-{uuid.uuid4().hex[:8]}")
    if hostname:
        worker.hostname = hostname
    worker.register_birth()
    return worker


def test_the_encode_workers_of_this_host_are_counted(redis_conn, fresh_count, monkeypatch, settings):
    settings.REELFLOW_ENCODER_THREADS = 0
    monkeypatch.setattr(unit_step.os, "cpu_count", lambda: 4)
    workers = [
        _register(redis_conn, ["encode", "assemble"]),
        _register(redis_conn, ["encode"]),
        _register(redis_conn, ["webhooks"]),  # not an encode worker
        _register(redis_conn, ["encode"], hostname=f"elsewhere-{socket.gethostname()}"),  # another machine
    ]
    try:
        assert unit_step._encoder_threads() == 2  # 4 CPUs, 2 encode workers here
    finally:
        for worker in workers:
            worker.register_death()


def test_no_registered_worker_leaves_the_choice_to_the_encoder(redis_conn, fresh_count):
    assert unit_step._encoder_threads() == 0


def test_the_setting_wins(redis_conn, fresh_count, settings):
    settings.REELFLOW_ENCODER_THREADS = 3
    assert unit_step._encoder_threads() == 3


def test_the_unit_runs_with_the_threads_given(tmp_path):
    """x264 writes its settings into the stream: the cap reached the encoder, and the unit has
    its planned frames either way."""
    source = tmp_path / "src.mp4"
    clips.make_clip(source, duration=2, width=320, height=180, audio=False)
    video = ff.probe(str(source)).video
    chunk = plan_chunks(duration_s=video.duration_s, fps=video.fps, chunk_seconds=1, segment_seconds=1)[0]
    rendition = ff.VideoRendition(name="h264-90", codec="libx264", height=90, crf=32, preset="ultrafast")
    for threads, expected in ((1, b"threads=1 "), (0, None)):
        output = tmp_path / f"t{threads}.mp4"
        args = ff.build_unit_command(
            input_url=source, output_path=output, chunk=chunk, rendition=rendition, fps=video.fps,
            segment_seconds=1, source=video, threads=threads,
        )
        # Decoder (an input option, before -i), filter graph and encoder (an output option) alike:
        # the unit's share of the CPUs, or ffmpeg's choice. The graph is a -filter_complex.
        source_at = args.index("-i")
        assert args[:source_at].count("-threads") == args[source_at:].count("-threads") == (1 if threads > 0 else 0)
        assert ("-filter_complex_threads" in args) == (threads > 0)
        assert ff.run_ffmpeg(args).frames == ff.count_frames(output) == chunk.frame_count
        if expected:
            assert expected in output.read_bytes()
