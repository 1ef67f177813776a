"""RQ entry points of the console: thin."""

from console import services


def queue_samples_record() -> None:
    services.queue_samples_record()
