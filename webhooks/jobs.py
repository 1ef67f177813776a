"""RQ entry points of webhooks: thin. Retries are not RQ's: the delivery's row says when the next
attempt is due, and the sweep queues it (webhooks.services)."""

from rq import get_current_job

from webhooks import services


def delivery_attempt(delivery_id: int) -> None:
    current = get_current_job()
    services.delivery_attempt_run(
        delivery_id=delivery_id, worker=(current.worker_name if current else "") or ""
    )


def deliveries_sweep() -> int:
    return services.deliveries_sweep()


def deliveries_prune() -> int:
    return services.deliveries_prune()
