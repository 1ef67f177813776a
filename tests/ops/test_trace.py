"""One trace id from the upload's first request to publication, across the web process and
the worker processes, in JSON log lines (LOG_FORMAT=json)."""

import json
import subprocess
import sys

import pytest

from core import logs
from pipeline.models import EncodeJob, JobState, Unit
from tests.conftest import ENCODE_LANE_1, ROOT, wait_until, worker_env
from tests.pipeline.clips import make_clip
from tests.pipeline.conftest import ALL_QUEUES
from tests.pipeline.test_faults import stop


@pytest.mark.slow
@ENCODE_LANE_1
def test_an_upload_is_traced_by_one_id_through_every_worker_step(tmp_path, studio_api, s3, settings):
    settings.REELFLOW_CHUNK_SECONDS = 4
    settings.REELFLOW_SEGMENT_SECONDS = 2
    clip = make_clip(tmp_path / "traced.mp4", duration=8, width=640, height=360, fps=25)
    session, completed = studio_api.upload(clip, profile="fast")
    assert completed.status_code == 200, completed.content
    trace = logs.trace_id_for(settings.S3_BUCKET_INGEST, session["key"])
    job = EncodeJob.objects.get(asset_id=completed.json()["asset"])

    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", *ALL_QUEUES],
            cwd=ROOT, env=worker_env({"LOG_FORMAT": "json"}), stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until(
                lambda: EncodeJob.objects.get(pk=job.pk).state in (JobState.PUBLISHED, JobState.FAILED),
                timeout=240, interval=0.5, message="the job to finish",
            )  # fmt: skip
        finally:
            stop(worker)
    assert EncodeJob.objects.get(pk=job.pk).state == JobState.PUBLISHED
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert lines, log_path.read_text()[:2000]
    traced = [line for line in lines if line.get("trace_id") == trace]
    assert all(line["job_id"] == job.pk for line in traced)
    unit_ids = set(Unit.objects.filter(job=job).values_list("pk", flat=True))
    unit_lines = [line for line in traced if line.get("unit_id")]
    assert unit_lines and {line["unit_id"] for line in unit_lines} <= unit_ids
    assert all(line["rq_id"] for line in traced), "every traced line names its RQ job"
    steps = {line["logger"] for line in traced}
    assert {"pipeline.steps.units", "pipeline.steps.assembly", "pipeline.steps.packaging"} <= steps, steps
    # Lines of work for no upload (sweeps) carry no trace.
    assert not any(line.get("trace_id") not in (None, trace) for line in lines)
