"""Thin RQ entry points of the notifications app (the control lane's `webhooks` queue)."""

from notifications import services


def channel_flush(channel_id: int) -> None:
    services.channel_flush(channel_id=channel_id)


def message_deliver(message_id: int) -> None:
    services.message_deliver(message_id=message_id)


def sweep() -> None:
    services.sweep()
