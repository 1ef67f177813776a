"""manage.py storage_wait: block until S3 answers and the platform's buckets exist.

The Procfile runs it before the scheduler, so no sweep (the first backup run above all) starts
before `reelflow_setup` has created the buckets: on a fresh start the first backup run used to
fail with NoSuchBucket and leave a critical alert behind.
"""

import time

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core import s3


class Command(BaseCommand):
    help = "Wait until S3 answers and the ingest, media and backup buckets exist (then exit 0)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--timeout", type=float, default=300, help="give up after this many seconds (default 300)")
        parser.add_argument("--interval", type=float, default=1.0)

    def handle(self, *args, **options) -> None:
        names = [settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA, settings.S3_BUCKET_BACKUP]
        deadline = time.monotonic() + options["timeout"]
        said = ""
        while True:
            try:
                missing = s3.buckets_missing(names)
                waiting = f"buckets {', '.join(missing)} do not exist yet (reelflow_setup creates them)" if missing else ""
            except (BotoCoreError, ClientError, OSError) as exc:
                waiting = f"S3 at {settings.S3_ENDPOINT_URL} does not answer yet ({type(exc).__name__})"
            if not waiting:
                self.stdout.write(f"storage ready: {', '.join(names)}")
                return
            if time.monotonic() > deadline:
                raise CommandError(f"gave up after {options['timeout']:.0f} s: {waiting}")
            if waiting != said:
                self.stdout.write(f"waiting: {waiting}")
                said = waiting
            time.sleep(options["interval"])
