"""The publish step: a package that passed its rules after it was written (or was approved by
an operator) is copied server-side from the job's prefix to the published one, entry points
last, and the job is PUBLISHED. Idempotent: a re-run copies again and finds the job published.
"""

from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

from core import s3
from pipeline import ffmpeg, packaging_cmds
from pipeline.models import Artifact, EncodeJob, JobState
from pipeline.services.common import artifact_record
from pipeline.services.publishing import job_publish, published_prefix
from pipeline.steps.common import PACKAGE_TRANSFERS, alive_while_running, failures_classified, keys_under


@alive_while_running(lambda kwargs: f"publish-{kwargs['job_id']}")
@failures_classified
def job_publish_run(*, job_id: int) -> None:
    job = EncodeJob.objects.select_related("asset").get(pk=job_id)
    if job.state != JobState.PUBLISHING:
        return
    source = job.master_playlist_key.rsplit("/", 1)[0]
    target = published_prefix(job)
    client = s3.client()
    bucket = settings.S3_BUCKET_MEDIA
    keys = keys_under(source)
    if not keys:
        raise ffmpeg.PermanentMediaError(f"the package under {source}/ is missing; restart the job to rebuild it")

    def copy(key: str) -> None:
        client.copy_object(Bucket=bucket, Key=f"{target}/{key[len(source) + 1:]}", CopySource={"Bucket": bucket, "Key": key})

    entry_points = {f"{source}/{packaging_cmds.MASTER_NAME}", f"{source}/{packaging_cmds.MANIFEST_NAME}"}
    with ThreadPoolExecutor(max_workers=PACKAGE_TRANSFERS) as pool:
        list(pool.map(copy, [k for k in keys if k not in entry_points]))
        list(pool.map(copy, [k for k in keys if k in entry_points]))  # last, as when packaging
    master = f"{target}/{job.master_playlist_key[len(source) + 1:]}"
    artifact_record(
        job_id=job.pk, kind=Artifact.Kind.PUBLISHED, key=master, size=None, step="publish",
        inputs={"package": job.master_playlist_key, "files": len(keys)}, parent_keys=[job.master_playlist_key],
    )
    job_publish(
        job_id=job.pk,
        master_key=master,
        dash_key=f"{target}/{job.dash_manifest_key[len(source) + 1:]}" if job.dash_manifest_key else "",
        poster_key=f"{target}/poster.jpg",
        published_prefix=target,
    )


