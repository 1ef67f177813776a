"""`manage.py security_events`: read EC2 events (EventBridge JSON) from SQS and handle them.

Long-polls SECURITY_SQS_QUEUE_URL (or --queue-url). A message is deleted once handled; one that
fails stays and SQS delivers it again after its visibility timeout.
"""

import json
import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from security import aws
from security.services.ec2_events import EventRejected, ec2_event_receive

logger = logging.getLogger(__name__)


def message_handle(body: str) -> dict:
    """One SQS message body: an EventBridge event, or an SNS envelope around one."""
    document = json.loads(body)
    if isinstance(document, dict) and document.get("Type") == "Notification" and "Message" in document:
        document = json.loads(document["Message"])
    return ec2_event_receive(body=document, source="sqs").as_dict()


class Command(BaseCommand):
    help = "Consume EC2 state-change and CloudTrail RunInstances events from SQS."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--queue-url", default="")
        parser.add_argument("--region", default="")
        parser.add_argument("--once", action="store_true", help="one receive call, then exit")
        parser.add_argument("--wait", type=int, default=20, help="long-poll seconds")

    def handle(self, *args, **options) -> None:
        url = options["queue_url"] or settings.SECURITY_SQS_QUEUE_URL
        if not url:
            raise CommandError("set SECURITY_SQS_QUEUE_URL or pass --queue-url")
        region = options["region"] or (settings.AWS_REGIONS[0] if settings.AWS_REGIONS else "us-east-1")
        client = aws.sqs(region)
        while True:
            answer = client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=options["wait"]
            )
            for message in answer.get("Messages", []):
                try:
                    result = message_handle(message["Body"])
                except aws.CloudError as exc:
                    # Left on the queue: SQS hands it out again after its visibility timeout.
                    logger.warning("EC2 event %s not handled yet: %s", message.get("MessageId"), exc)
                    continue
                except (ValueError, EventRejected) as exc:
                    # Malformed for good: keeping it would only redeliver it forever.
                    logger.warning("dropping malformed EC2 event %s: %s", message.get("MessageId"), exc)
                    result = {"rejected": str(exc)}
                client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                self.stdout.write(json.dumps({"message": message.get("MessageId"), **result}))
            if options["once"]:
                return
