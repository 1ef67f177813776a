"""`manage.py security_events`: read EC2 events (EventBridge JSON) from SQS and handle them.

Long-polls SECURITY_SQS_QUEUE_URL (or --queue-url). A message is deleted once handled. One the
cloud could not serve yet stays, and SQS delivers it again after its visibility timeout, up to
SECURITY_SQS_MAX_RECEIVES receives; a malformed one, one past its receives, or one that breaks
the handler goes to the dead-letter record (security.DeadLetter) with an alert and is deleted:
no message loops forever.
"""

import json
import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from security import aws
from security.services.dead_letters import dead_letter_record
from security.services.ec2_events import EventRejected, ec2_event_receive

logger = logging.getLogger(__name__)


def message_handle(body: str) -> dict:
    """One SQS message body: an EventBridge event, or an SNS envelope around one."""
    document = json.loads(body)
    if isinstance(document, dict) and document.get("Type") == "Notification" and "Message" in document:
        if not isinstance(document["Message"], str):
            raise EventRejected("SNS envelope whose Message is not a string")
        document = json.loads(document["Message"])
    return ec2_event_receive(body=document, source="sqs").as_dict()


def message_process(message: dict) -> tuple[bool, dict]:
    """(delete it?, what happened) for one received message."""
    message_id = message.get("MessageId", "")
    body = message.get("Body", "")
    receives = int((message.get("Attributes") or {}).get("ApproximateReceiveCount", "1"))
    try:
        result = message_handle(body)
    except RecursionError:
        error = "malformed: JSON nested too deeply"
    except (ValueError, EventRejected) as exc:  # JSONDecodeError and UnicodeError are ValueErrors
        error = f"malformed: {exc}"
    except aws.CloudError as exc:
        if exc.transient and receives < settings.SECURITY_SQS_MAX_RECEIVES:
            logger.warning("EC2 event %s not handled yet (receive %d): %s", message_id, receives, exc)
            return False, {"retry": str(exc)}
        error = f"the cloud failed {receives} time(s): {exc}"
    except Exception as exc:  # noqa: BLE001 - a defect must not redeliver the message forever
        logger.exception("EC2 event %s broke the handler", message_id)
        error = f"the handler failed: {type(exc).__name__}: {exc}"
    else:
        if not result["errors"]:
            return True, result
        if result["transient"] and receives < settings.SECURITY_SQS_MAX_RECEIVES:
            return False, {**result, "retry": "transient cloud errors"}
        # Handled except for some instances the cloud refused: kept so nothing is lost silently.
        failed = "; ".join(f"{k}: {v}" for k, v in result["errors"].items())
        error = f"the cloud failed for some instances after {receives} receive(s): {failed}"
    logger.warning("EC2 event %s to the dead-letter record: %s", message_id, error)
    letter = dead_letter_record(
        source="sqs", message_id=message_id, body=body, error=error, receive_count=receives
    )
    return True, {"dead_letter": letter.pk, "error": error}


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
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=options["wait"],
                AttributeNames=["ApproximateReceiveCount"],
            )
            for message in answer.get("Messages", []):
                delete, result = message_process(message)
                if delete:
                    client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                self.stdout.write(json.dumps({"message": message.get("MessageId"), **result}, default=str))
            if options["once"]:
                return
