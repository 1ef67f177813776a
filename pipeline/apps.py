import sys

from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "pipeline"
    verbose_name = "Encoding pipeline"

    def ready(self) -> None:
        if sys.argv[1:2] == ["rqworker"]:
            _warm_worker()


def _warm_worker() -> None:
    """Pay once, in the RQ worker process, what every forked work horse would pay per job:
    importing the job modules and loading botocore's S3 model. Horses inherit both by fork;
    each still makes its own client (and its own connections) from the warm loader."""
    from core import s3
    from pipeline import jobs  # noqa: F401 - imports encoding, ffmpeg, services

    s3.client()
    s3.clients_reset()
