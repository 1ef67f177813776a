"""Long-poll an SQS queue carrying S3 event notifications and start jobs from them (AWS)."""

import json
import logging

import boto3
from botocore.config import Config
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pipeline import events
from pipeline.models import IngestEvent

logger = logging.getLogger(__name__)


def unwrap(body: str) -> dict:
    """The S3 event document, whether SQS carries it directly or inside an SNS envelope."""
    document = json.loads(body)
    if isinstance(document, dict) and document.get("Type") == "Notification" and "Message" in document:
        document = json.loads(document["Message"])
    return document


def handle_message(body: str) -> tuple[int, list[str]]:
    """Jobs started and rejections for one SQS message. Raises on transient errors."""
    try:
        created = events.parse_s3_notification(unwrap(body))
    except (ValueError, events.EventRejected) as exc:
        return 0, [f"malformed: {exc}"]
    started, rejected = 0, []
    for item in created:
        try:
            if events.object_created_receive(created=item, source=IngestEvent.Source.SQS):
                started += 1
        except events.EventRejected as exc:
            rejected.append(str(exc))
    return started, rejected


class Command(BaseCommand):
    help = "Consume S3 object-created notifications from SQS (the AWS path; SeaweedFS uses its webhook)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--queue-url", default=settings.SQS_QUEUE_URL, help="SQS queue URL (SQS_QUEUE_URL)")
        parser.add_argument("--wait", type=int, default=20, help="long-poll seconds")
        parser.add_argument("--once", action="store_true", help="one receive call, then exit")

    def handle(self, *args, queue_url: str, wait: int, once: bool, **options) -> None:
        if not queue_url:
            raise CommandError("Give --queue-url or set SQS_QUEUE_URL.")
        sqs = boto3.client(
            "sqs",
            endpoint_url=settings.SQS_ENDPOINT_URL or None,
            region_name=settings.S3_REGION,
            config=Config(retries={"mode": "standard", "max_attempts": 5}),
        )
        while True:
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
            ).get("Messages", [])
            for message in messages:
                try:
                    started, rejected = handle_message(message["Body"])
                except Exception:
                    # Left on the queue: SQS redelivers it after the visibility timeout.
                    logger.exception("S3 event message %s failed; it will be redelivered", message["MessageId"])
                    continue
                for reason in rejected:
                    logger.warning("S3 event rejected: %s", reason)
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                self.stdout.write(f"message {message['MessageId']}: {started} job(s) started, {len(rejected)} rejected")
            if once:
                return
