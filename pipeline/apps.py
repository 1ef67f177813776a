import sys

from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "pipeline"
    verbose_name = "Encoding pipeline"

    def ready(self) -> None:
        if sys.argv[1:2] == ["rqworker"]:
            _warm_modules()

    def worker_warm_up(self) -> None:
        """Called by the worker class (``security.worker``) once it has started: what every
        unit needs, ready before the first one (0.3-0.6 s measured): the S3 client, ffmpeg's
        version and codecs, the progress Redis connection."""
        from core import s3
        from pipeline import ffmpeg, progress

        s3.client()
        ffmpeg.warm_up()
        progress.redis_conn()


def _warm_modules() -> None:
    """Pay once, in the RQ worker process, what every forked work horse would pay per job:
    importing the job modules and loading botocore's S3 model. Horses inherit both by fork;
    each still makes its own client (and its own connections) from the warm loader."""
    from core import s3
    from pipeline import jobs  # noqa: F401 - imports the steps, ffmpeg and the services
    from pipeline.quality import jobs as quality_jobs  # noqa: F401

    s3.client()
    s3.clients_reset()
