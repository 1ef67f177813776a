"""The one place notifications leave Reelflow: one function per channel kind, each sending one
message once and raising DeliveryError with a reason a person can read when it did not arrive."""

import hashlib
import hmac
import json
import smtplib
import time

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.mail import EmailMessage

from notifications.models import Channel, ChannelKind, Message
from webhooks import sender


class DeliveryError(Exception):
    pass


def _email(channel: Channel, message: Message) -> None:
    to = [address.strip() for address in channel.target.split(",") if address.strip()]
    try:
        EmailMessage(
            subject=message.subject, body=message.body, from_email=settings.NOTIFICATIONS_EMAIL_FROM, to=to
        ).send()
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP: {exc}") from exc


def _post_json(channel: Channel, payload: dict, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(payload).encode()
    outcome = sender.post(
        url=channel.target,
        body=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        connect_timeout=min(5.0, settings.NOTIFICATIONS_TIMEOUT),
        total_timeout=settings.NOTIFICATIONS_TIMEOUT,
    )
    if not outcome.ok:
        raise DeliveryError(outcome.error or f"HTTP {outcome.status_code}: {outcome.excerpt[:200]}")


def _slack(channel: Channel, message: Message) -> None:
    # Slack's (and Mattermost's, Rocket.Chat's) incoming webhooks take {"text": ...}.
    _post_json(channel, {"text": f"*{message.subject}*\n{message.body}"})


def _webhook(channel: Channel, message: Message) -> None:
    payload = {"id": message.pk, "kind": message.kind, "subject": message.subject, "items": message.items,
               "sent_at": int(time.time())}  # fmt: skip
    body = json.dumps(payload).encode()
    headers = {}
    if channel.secret:
        digest = hmac.new(channel.secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Reelflow-Signature"] = f"sha256={digest}"
    _post_json(channel, payload, headers)


def sns_client():
    return boto3.client(
        "sns",
        region_name=settings.NOTIFICATIONS_SNS_REGION,
        endpoint_url=settings.AWS_ENDPOINT_URL_SNS or None,
        aws_access_key_id=settings.AWS_ACCESS_KEY_ID or None,
        aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY or None,
    )


def _sns(channel: Channel, message: Message) -> None:
    try:
        sns_client().publish(TopicArn=channel.target, Subject=message.subject[:100], Message=message.body)
    except (ClientError, BotoCoreError) as exc:
        raise DeliveryError(f"SNS: {exc}") from exc


SEND = {
    ChannelKind.EMAIL: _email,
    ChannelKind.SLACK: _slack,
    ChannelKind.SNS: _sns,
    ChannelKind.WEBHOOK: _webhook,
}


def send(channel: Channel, message: Message) -> None:
    SEND[channel.kind](channel, message)
