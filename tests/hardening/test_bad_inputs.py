"""Every kind of bad (or merely odd) input through the real path: upload to the ingest bucket,
the storage event posted to the webhook, burst RQ workers running the real jobs.

Valid-but-unusual kinds must publish a complete package; the others must end FAILED with the
reason for their kind, on the job and on the asset page. For every kind: the job is final (no
stuck job), every worker exits cleanly, the source object stays, no RQ job crashed, and nothing
half-written is presented as complete.
"""

import subprocess
import sys
import urllib.parse
import uuid

import django_rq
import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from pipeline.models import Artifact, EncodeJob, IngestEvent, JobState, Rendition, Unit, UnitState
from tests.conftest import ENCODE_LANE_2, ROOT, worker_env
from tests.hardening.conftest import bad_inputs_module
from tests.pipeline.conftest import ALL_QUEUES
from tests.studio.conftest import StudioApi, start_body

pytestmark = [pytest.mark.slow, ENCODE_LANE_2]

corpus_spec = bad_inputs_module()
PUBLISH = corpus_spec.PUBLISH
LIMITS = {
    "REELFLOW_MAX_UPLOAD_BYTES": str(corpus_spec.SIZE_LIMIT_BYTES),
    "REELFLOW_MAX_DURATION_SECONDS": str(corpus_spec.DURATION_LIMIT_S),
}
DONE_STATES = (JobState.PUBLISHED, JobState.HELD)  # HELD: complete, waiting for a reviewer


def upload_through_studio(client: Client, path, kind) -> str:
    """The publishers' path: the upload API (start, presigned part PUTs, complete), which
    cleans the file name and announces the object itself."""
    body = start_body(path, profile="fast")
    body["filename"] = kind.upload_name or kind.file
    started = client.post(reverse("studio:upload_start"), body, content_type="application/json")
    assert started.status_code == 201, (kind.name, started.content)
    session = started.json()
    api = StudioApi(client)
    api.put_parts(session, path, list(range(1, session["partsTotal"] + 1)))
    completed = api.post(session["completeUrl"])
    assert completed.status_code == 200, (kind.name, completed.content)
    return session["key"]


def upload_and_announce(s3, client: Client, path, kind, publisher) -> str:
    """Put the file in the ingest bucket as the kind says, then post the storage event (an S3
    notification document, keys URL-encoded as S3 sends them) to the webhook."""
    name = kind.upload_name or kind.file
    key = f"uploads/{publisher.username}/{uuid.uuid4().hex[:8]}/{name}"
    extra = {"Metadata": {"profile": "fast"}}
    if kind.content_type:
        extra["ContentType"] = kind.content_type
    s3.upload_file(str(path), settings.S3_BUCKET_INGEST, key, ExtraArgs=extra)
    document = {"Records": [{
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": settings.S3_BUCKET_INGEST},
               "object": {"key": urllib.parse.quote_plus(key), "size": path.stat().st_size}},
    }]}  # fmt: skip
    response = client.post(
        reverse("events:s3"),
        document,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {settings.S3_EVENTS_TOKEN}",
    )
    assert response.status_code in (202, 422), (kind.name, response.status_code, response.content)
    return key


def s3_has(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError:
        return False
    return True


def judge(kind, key, s3, page_client) -> list[str]:
    """What is wrong with how the pipeline handled this kind (empty: all good)."""
    problems = []
    event = IngestEvent.objects.filter(key=key).select_related("job__asset").first()
    if event is None:
        return [f"{kind.name}: no ingest event recorded for {key!r}"]
    if event.job is None:
        return [f"{kind.name}: no job started ({event.outcome})"]
    job = EncodeJob.objects.select_related("asset").get(pk=event.job_id)
    asset = job.asset
    if not s3_has(s3, asset.source_bucket, asset.source_key):
        problems.append(f"{kind.name}: the source object is gone")
    # Whatever was recorded as an artifact must be there, whole.
    for artifact in Artifact.objects.filter(job=job):
        if not s3_has(s3, artifact.bucket, artifact.key):
            problems.append(f"{kind.name}: artifact {artifact.key} is recorded but missing")
        elif artifact.kind in (Artifact.Kind.UNIT, Artifact.Kind.AUDIO, Artifact.Kind.RENDITION):
            head = s3.head_object(Bucket=artifact.bucket, Key=artifact.key)
            if head["ContentLength"] != artifact.size:
                problems.append(
                    f"{kind.name}: {artifact.key} has {head['ContentLength']} bytes, recorded {artifact.size}"
                )
    package_master = f"{job.output_prefix}/package/master.m3u8"
    if kind.expect == PUBLISH:
        if job.state not in DONE_STATES:
            return [*problems, f"{kind.name}: valid input ended {job.state}: {job.failure_reason!r}"]
        if not job.master_playlist_key or not s3_has(s3, settings.S3_BUCKET_MEDIA, job.master_playlist_key):
            problems.append(f"{kind.name}: published without its master playlist")
        master = (
            s3.get_object(Bucket=settings.S3_BUCKET_MEDIA, Key=job.master_playlist_key)["Body"]
            .read()
            .decode()
        )
        folder = job.master_playlist_key.rsplit("/", 1)[0]
        variants = [line for line in master.splitlines() if line and not line.startswith("#")]
        if not variants or not all(s3_has(s3, settings.S3_BUCKET_MEDIA, f"{folder}/{v}") for v in variants):
            problems.append(f"{kind.name}: master playlist names missing variants {variants}")
        if kind.name == "rotated" and not asset.width < asset.height:
            problems.append(
                f"{kind.name}: a 90-degree rotated 160x120 source published as {asset.width}x{asset.height}"
            )
        for rendition in Rendition.objects.filter(job=job):
            if rendition.units_done != rendition.units_total:
                problems.append(
                    f"{kind.name}: {rendition.name} counted {rendition.units_done}/{rendition.units_total} units"
                )
        return problems
    if job.state != JobState.FAILED:
        return [
            *problems,
            f"{kind.name}: expected FAILED ({kind.expect!r}), got {job.state} {job.failure_reason!r}",
        ]
    if kind.expect not in job.failure_reason:
        problems.append(f"{kind.name}: reason {job.failure_reason!r} does not say {kind.expect!r}")
    if job.master_playlist_key or s3_has(s3, settings.S3_BUCKET_MEDIA, package_master):
        problems.append(f"{kind.name}: a failed job presents a master playlist")
    if Unit.objects.filter(job=job, state__in=[UnitState.QUEUED, UnitState.RUNNING]).exists():
        problems.append(f"{kind.name}: units left queued or running on a failed job")
    page = page_client.get(reverse("studio:asset", kwargs={"asset_id": asset.pk}))
    if page.status_code != 200 or escape(job.failure_reason) not in page.content.decode():
        problems.append(f"{kind.name}: the asset page does not show the reason ({page.status_code})")
    return problems


def test_every_kind_of_input_ends_final_with_its_outcome(corpus, publisher, s3, redis_conn, settings):
    settings.REELFLOW_CHUNK_SECONDS = 2
    settings.REELFLOW_SEGMENT_SECONDS = 2
    folder, kinds = corpus
    assert len(kinds) >= 25
    assert sum(k.expect == PUBLISH for k in kinds) >= 10 and sum(k.expect != PUBLISH for k in kinds) >= 15

    webhook, studio = Client(), Client()
    studio.force_login(publisher)
    keys = {
        kind.name: upload_through_studio(studio, folder / kind.file, kind)
        if kind.route == "studio"
        else upload_and_announce(s3, webhook, folder / kind.file, kind, publisher)
        for kind in kinds
    }
    for kind in kinds:
        if kind.route == "studio":
            # A hostile name never leaves the publisher's own prefix, nor carries a path.
            parts = keys[kind.name].split("/")
            assert parts[:2] == ["uploads", publisher.username] and ".." not in parts and len(parts) == 4, (
                keys[kind.name]
            )

    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", *ALL_QUEUES, "--burst"],
            cwd=ROOT,
            env=worker_env(LIMITS),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=540) for proc in procs]
    codes = [proc.returncode for proc in procs]
    assert codes == [0, 0], f"a worker died: {codes}\n{outputs[0][1][-3000:]}\n{outputs[1][1][-3000:]}"

    page_client = Client()
    page_client.force_login(publisher)
    problems = [p for kind in kinds for p in judge(kind, keys[kind.name], s3, page_client)]
    assert problems == [], "\n".join(problems)

    for name in ALL_QUEUES:
        queue = django_rq.get_queue(name)
        assert queue.failed_job_registry.count == 0, (
            f"RQ jobs crashed on {name}: {queue.failed_job_registry.get_job_ids()}"
        )
        assert queue.count == 0
        assert queue.scheduled_job_registry.count == 0, (
            f"retries still waiting on {name}: nothing may be left to chance"
        )


def encode_cli(path, publisher, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "encode",
            str(path),
            "--profile",
            "fast",
            "--publisher",
            publisher.username,
            "--wait",
        ],
        cwd=ROOT,
        env=worker_env({**LIMITS, "REELFLOW_CHUNK_SECONDS": "2", "REELFLOW_SEGMENT_SECONDS": "2"}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("name", ["truncated_moov_at_end", "huge_dimensions"])
def test_cli_prints_the_reason_and_exits_non_zero(corpus, name, publisher, s3, rq_worker_process):
    folder, kinds = corpus
    kind = next(k for k in kinds if k.name == name)
    rq_worker_process(*ALL_QUEUES, env=LIMITS)
    result = encode_cli(folder / kind.file, publisher)
    assert result.returncode != 0, result.stdout
    assert "failed" in result.stderr and kind.expect in result.stderr, result.stderr
    job = EncodeJob.objects.get(asset__publisher=publisher)
    assert job.state == JobState.FAILED and kind.expect in job.failure_reason
