"""Every state change of webhooks: endpoints, deliveries, attempts.

Scheduling lives in the database: a delivery is due when `next_attempt_at` has passed. A job is
queued for it when it is created (after commit) and by the sweep (config/cron.py, every 10 s) for
every due delivery no job was queued for lately, so nothing is lost if Redis forgets its queues.
Each attempt is one RQ job that claims the delivery under a row lock, sends outside any
transaction, and records the outcome.
"""

from __future__ import annotations

import logging
import secrets as _secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import metrics
from core.models import AlertSeverity, Event
from core.services import alert_raise, event_record
from webhooks import event_types, payloads, sender, targets
from webhooks import signing as signing_module
from webhooks.models import (
    AttemptTrigger,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Endpoint,
    EndpointState,
    SigningScheme,
)

logger = logging.getLogger(__name__)

JITTER = 0.2  # each retry delay is scaled by a random factor in [0.8, 1.2]
# A job queued for a due delivery that has not started it after this long is presumed lost.
REQUEUE_AFTER = timedelta(minutes=2)
SWEEP_BATCH = 500
ROTATION_OVERLAPS = {0: "Immediately", 24 * 3600: "After 24 hours"}


class WebhookRefused(Exception):
    """A request the service will not carry out; the message says why, for a person."""


# --- Retry schedule -----------------------------------------------------------------------------


def retry_delay(attempt_number: int, *, base: float, cap: float, jitter: float | None = None) -> float:
    """Seconds to wait after failed attempt `attempt_number` (1-based): base * 2^(n-1), capped,
    times a random factor in [1 - JITTER, 1 + JITTER] (or `jitter`, for tests) so that many
    deliveries failing together do not retry together."""
    nominal = min(cap, base * 2 ** min(attempt_number - 1, 60))
    factor = 1 + (_secrets.SystemRandom().uniform(-JITTER, JITTER) if jitter is None else jitter)
    return nominal * factor


def retry_next(
    *, created_at: datetime, now: datetime, attempt_number: int, jitter: float | None = None
) -> datetime | None:
    """When to try again after failed attempt `attempt_number`, or None to give up: retries go on
    until WEBHOOKS_RETRY_WINDOW_SECONDS have passed since the delivery was created."""
    if now - created_at >= timedelta(seconds=settings.WEBHOOKS_RETRY_WINDOW_SECONDS):
        return None
    delay = retry_delay(
        attempt_number,
        base=settings.WEBHOOKS_RETRY_BASE_SECONDS,
        cap=settings.WEBHOOKS_RETRY_MAX_DELAY_SECONDS,
        jitter=jitter,
    )
    return now + timedelta(seconds=delay)


def _lease() -> timedelta:
    # Long enough for one attempt to finish; a worker that died mid-attempt is retried after it.
    return timedelta(seconds=max(60.0, 3 * settings.WEBHOOKS_TIMEOUT))


# --- Dispatch -----------------------------------------------------------------------------------


def _enqueue_on_commit(delivery_ids: list[int]) -> None:
    if not delivery_ids:
        return

    def enqueue() -> None:
        from rq import Queue

        from webhooks import jobs

        queue = django_rq.get_queue(settings.WEBHOOKS_QUEUE)
        queue.enqueue_many(
            [
                Queue.prepare_data(
                    jobs.delivery_attempt,
                    args=(pk,),
                    timeout=int(_lease().total_seconds()),
                    result_ttl=300,
                    failure_ttl=7 * 24 * 3600,
                )
                for pk in delivery_ids
            ]
        )

    # robust: Redis being down must not fail the transition that recorded the event (it has
    # committed); the sweep queues these deliveries once their enqueued_at is old enough.
    transaction.on_commit(enqueue, robust=True)


def deliveries_create_for(event: Event) -> list[Delivery]:
    """One delivery per active endpoint of the event's owner that subscribes to its type, in the
    transaction that records the event (core.services.event_record calls this)."""
    if event.owner_id is None or event.type.startswith(event_types.RESERVED_PREFIX):
        return []
    endpoints = [
        endpoint
        for endpoint in Endpoint.objects.filter(owner_id=event.owner_id, state=EndpointState.ACTIVE).only(
            "pk", "event_types"
        )
        if event_types.subscribes(endpoint.event_types, event.type)
    ]
    if not endpoints:
        return []
    now = timezone.now()
    body = payloads.body_for(event).decode()
    deliveries = Delivery.objects.bulk_create(
        [
            Delivery(endpoint=endpoint, event=event, body=body, next_attempt_at=now, enqueued_at=now, created_at=now)
            for endpoint in endpoints
        ]
    )
    _enqueue_on_commit([d.pk for d in deliveries])
    return deliveries


def deliveries_sweep(*, now: datetime | None = None, limit: int = SWEEP_BATCH) -> int:
    """Queue a job for every due delivery of an active endpoint that has none queued lately."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Delivery.objects.filter(
                state=DeliveryState.PENDING, endpoint__state=EndpointState.ACTIVE, next_attempt_at__lte=now
            )
            .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=now - REQUEUE_AFTER))
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        if due:
            Delivery.objects.filter(pk__in=due).update(enqueued_at=now)
            _enqueue_on_commit(due)
    return len(due)


def deliveries_prune(*, now: datetime | None = None) -> int:
    """Delete finished deliveries (and their attempts) older than WEBHOOKS_RETENTION_DAYS."""
    if settings.WEBHOOKS_RETENTION_DAYS <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOKS_RETENTION_DAYS)
    deleted, _ = Delivery.objects.filter(
        state__in=[DeliveryState.DELIVERED, DeliveryState.FAILED], created_at__lt=cutoff
    ).delete()
    return deleted


# --- Attempts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptPlan:
    attempt_id: int
    url: str
    body: bytes
    event_type: str
    delivery_key: str
    secrets: list[str]
    signing: str = "reelflow"


@transaction.atomic
def delivery_attempt_start(*, delivery_id: int, worker: str = "") -> AttemptPlan | None:
    """Claim a due delivery and open its next attempt; None if it is not due (delivered, given
    up, claimed by another job, or its endpoint is disabled)."""
    now = timezone.now()
    delivery = (
        Delivery.objects.select_for_update(of=("self",))
        .select_related("endpoint", "event")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or delivery.state != DeliveryState.PENDING:
        return None
    if delivery.next_attempt_at is None or delivery.next_attempt_at > now:
        return None
    endpoint = delivery.endpoint
    if endpoint.state != EndpointState.ACTIVE:
        # Paused: the sweep queues it again once the endpoint is enabled.
        delivery.enqueued_at = None
        delivery.save(update_fields=["enqueued_at"])
        return None
    # An attempt left open was cut short (worker killed); close it so the record stays honest.
    delivery.attempts.filter(finished_at__isnull=True).update(
        finished_at=now, error="The worker stopped before this attempt finished."
    )
    manual_by = delivery.redeliver_requested_by
    attempt = DeliveryAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts_made + 1,
        trigger=AttemptTrigger.MANUAL if manual_by else AttemptTrigger.AUTOMATIC,
        actor=manual_by,
        worker=worker[:200],
        started_at=now,
    )
    delivery.attempts_made = attempt.number
    delivery.next_attempt_at = now + _lease()
    delivery.enqueued_at = None
    delivery.redeliver_requested_by = None
    delivery.save(update_fields=["attempts_made", "next_attempt_at", "enqueued_at", "redeliver_requested_by"])
    keys = [endpoint.secret]
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > now
    ):
        keys.append(endpoint.previous_secret)
    return AttemptPlan(
        attempt_id=attempt.pk,
        url=endpoint.url,
        body=delivery.body.encode() if delivery.body else payloads.body_for(delivery.event),
        event_type=delivery.event.type,
        delivery_key=str(delivery.key),
        secrets=keys,
        signing=endpoint.signing,
    )


@transaction.atomic
def delivery_attempt_finish(*, attempt_id: int, outcome: sender.Outcome) -> Delivery | None:
    """Record an attempt's outcome; schedule the next one, or mark the delivery delivered or failed."""
    now = timezone.now()
    found = (
        DeliveryAttempt.objects.filter(pk=attempt_id).values_list("delivery__endpoint_id", flat=True).first()
    )
    # The endpoint first, then its delivery: the order endpoint_delete takes them in.
    endpoint = Endpoint.objects.select_for_update().filter(pk=found).first() if found else None
    attempt = DeliveryAttempt.objects.filter(pk=attempt_id).first() if endpoint else None
    if attempt is None:
        return None  # the endpoint was deleted meanwhile
    delivery = (
        Delivery.objects.select_for_update(of=("self",)).select_related("event").get(pk=attempt.delivery_id)
    )
    attempt.finished_at = now
    attempt.duration_ms = outcome.duration_ms
    attempt.status_code = outcome.status_code
    attempt.response_excerpt = outcome.excerpt
    attempt.error = outcome.error[:500]
    attempt.succeeded = outcome.ok
    attempt.save(
        update_fields=["finished_at", "duration_ms", "status_code", "response_excerpt", "error", "succeeded"]
    )
    if outcome.duration_ms is not None:
        metrics.observe_on_commit("reelflow_webhook_delivery_seconds", outcome.duration_ms / 1000)
    if not outcome.ok:
        reason = f"http_{outcome.status_code}" if outcome.status_code else "connection"
        metrics.inc_on_commit("reelflow_webhook_delivery_failures", reason=reason)

    delivery.last_attempt_at = attempt.started_at
    delivery.last_status_code = outcome.status_code
    delivery.last_error = attempt.error
    fields = ["last_attempt_at", "last_status_code", "last_error", "state", "next_attempt_at", "delivered_at"]
    if delivery.redeliver_requested_by_id is not None or delivery.attempts_made != attempt.number:
        # Someone asked for another attempt while this one ran: leave the new plan alone.
        delivery.save(update_fields=fields[:3])
    elif outcome.ok:
        delivery.state = DeliveryState.DELIVERED
        delivery.next_attempt_at = None
        delivery.delivered_at = now
        delivery.save(update_fields=fields)
    else:
        delivery.next_attempt_at = retry_next(
            created_at=delivery.created_at, now=now, attempt_number=attempt.number
        )
        if delivery.next_attempt_at is None:
            delivery.state = DeliveryState.FAILED
        delivery.save(update_fields=fields)
        if delivery.state == DeliveryState.FAILED and attempt.trigger == AttemptTrigger.AUTOMATIC:
            _delivery_gave_up(delivery=delivery, endpoint=endpoint)

    if outcome.ok:
        if endpoint.failing_since is not None:
            endpoint.failing_since = None
            endpoint.save(update_fields=["failing_since"])
    else:
        logger.info(
            "webhook delivery %s (endpoint %s, %s) attempt %s failed: %s",
            delivery.key,
            endpoint.pk,
            endpoint.host,
            attempt.number,
            attempt.error,
        )
        if endpoint.failing_since is None:
            endpoint.failing_since = attempt.started_at
            endpoint.save(update_fields=["failing_since"])
        _auto_disable_if_due(endpoint=endpoint, now=now, last_error=attempt.error)
    return delivery


def _delivery_gave_up(*, delivery: Delivery, endpoint: Endpoint) -> None:
    hours = settings.WEBHOOKS_RETRY_WINDOW_SECONDS / 3600
    event_record(
        type="webhook.delivery_failed",
        subject=delivery,
        owner=endpoint.owner,
        payload={
            "endpoint": endpoint.pk,
            "host": endpoint.host,
            "event": delivery.event_id,
            "event_type": delivery.event.type,
            "attempts": delivery.attempts_made,
            "last_error": delivery.last_error[:200],
        },
    )
    alert_raise(
        source="webhooks",
        severity=AlertSeverity.WARNING,
        title=f"Webhook deliveries to {endpoint.host} gave up after {hours:g} hours",
        detail=f"Endpoint {endpoint.pk} of {endpoint.owner.get_username()}: {delivery.last_error[:300]}",
        subject=endpoint,
        dedup_key=f"webhooks:endpoint:{endpoint.pk}:gave-up",
        evidence={"delivery": str(delivery.key), "attempts": delivery.attempts_made},
    )


def _auto_disable_if_due(*, endpoint: Endpoint, now: datetime, last_error: str) -> None:
    window = settings.WEBHOOKS_AUTO_DISABLE_SECONDS
    if not window or endpoint.state != EndpointState.ACTIVE or endpoint.failing_since is None:
        return
    if now - endpoint.failing_since < timedelta(seconds=window):
        return
    since = endpoint.failing_since.strftime("%Y-%m-%d %H:%M UTC")
    endpoint.state = EndpointState.AUTO_DISABLED
    endpoint.state_reason = f"Every attempt failed since {since}. Last error: {last_error}"[:300]
    endpoint.updated_at = now
    endpoint.save(update_fields=["state", "state_reason", "updated_at"])
    event_record(
        type="webhook.endpoint_auto_disabled",
        subject=endpoint,
        owner=endpoint.owner,
        payload={"host": endpoint.host, "failing_since": endpoint.failing_since.isoformat()},
    )
    alert_raise(
        source="webhooks",
        severity=AlertSeverity.WARNING,
        title=f"Webhook endpoint {endpoint.pk} ({endpoint.host}) disabled after failing since {since}",
        detail=endpoint.state_reason,
        subject=endpoint,
        dedup_key=f"webhooks:endpoint:{endpoint.pk}:auto-disabled",
    )


def delivery_attempt_run(*, delivery_id: int, worker: str = "") -> Delivery | None:
    """One attempt, start to finish (the RQ job's body)."""
    plan = delivery_attempt_start(delivery_id=delivery_id, worker=worker)
    if plan is None:
        return None
    outcome = sender.post(
        url=plan.url,
        body=plan.body,
        headers=payloads.headers_for(
            event_type=plan.event_type, delivery_key=plan.delivery_key, body=plan.body, secrets_=plan.secrets,
            scheme=plan.signing,
        ),
        connect_timeout=settings.WEBHOOKS_CONNECT_TIMEOUT,
        total_timeout=settings.WEBHOOKS_TIMEOUT,
    )
    return delivery_attempt_finish(attempt_id=plan.attempt_id, outcome=outcome)


# --- Endpoints ------------------------------------------------------------------------------------


def _types_clean(types: list[str]) -> list[str]:
    chosen = list(dict.fromkeys(types))
    if not chosen:
        raise WebhookRefused("Choose at least one event type.")
    unknown = [t for t in chosen if t not in event_types.VALUES]
    if unknown:
        raise WebhookRefused(f"Unknown event types: {', '.join(unknown)}.")
    return chosen


def _url_clean(url: str) -> str:
    url = url.strip()
    try:
        targets.url_check(url)
    except targets.TargetRefused as exc:
        raise WebhookRefused(str(exc)) from exc
    return url


def _endpoint_event(endpoint: Endpoint, type_: str, *, actor, **payload) -> None:
    # The host only: a URL's path or query may itself be a credential.
    event_record(
        type=type_,
        subject=endpoint,
        actor=actor,
        owner=endpoint.owner,
        payload={"host": endpoint.host, **payload},
    )


@transaction.atomic
def endpoint_create(
    *, owner, url: str, description: str = "", types: list[str] | None = None, actor=None,
    signing: str = SigningScheme.REELFLOW,
) -> tuple[Endpoint, str]:
    """A new active endpoint; returns it and its secret (shown to the person once)."""
    if Endpoint.objects.filter(owner=owner).count() >= settings.WEBHOOKS_MAX_ENDPOINTS:
        raise WebhookRefused(
            f"You have {settings.WEBHOOKS_MAX_ENDPOINTS} endpoints, the most allowed: delete one you no longer use."
        )
    if signing not in SigningScheme.values:
        raise WebhookRefused(f"Signing must be one of: {', '.join(SigningScheme.values)}.")
    secret = signing_module.secret_new(signing)
    now = timezone.now()
    endpoint = Endpoint.objects.create(
        signing=signing,
        owner=owner,
        url=_url_clean(url),
        description=description.strip()[:200],
        event_types=_types_clean(event_types.DEFAULT if types is None else types),
        secret=secret,
        created_at=now,
        updated_at=now,
    )
    _endpoint_event(
        endpoint, "webhook.endpoint_created", actor=actor or owner, event_types=endpoint.event_types
    )
    return endpoint, secret


@transaction.atomic
def endpoint_update(*, endpoint: Endpoint, url: str, description: str, types: list[str], actor) -> Endpoint:
    endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
    new_url = _url_clean(url)
    if new_url != endpoint.url:
        endpoint.failing_since = None  # a new target starts with a clean record
    endpoint.url = new_url
    endpoint.description = description.strip()[:200]
    endpoint.event_types = _types_clean(types)
    endpoint.updated_at = timezone.now()
    endpoint.save(update_fields=["url", "description", "event_types", "failing_since", "updated_at"])
    _endpoint_event(endpoint, "webhook.endpoint_updated", actor=actor, event_types=endpoint.event_types)
    return endpoint


@transaction.atomic
def endpoint_secret_rotate(*, endpoint: Endpoint, actor, overlap_seconds: int = 0) -> str:
    """A new secret; with an overlap, deliveries are signed with the old one too until it ends."""
    if overlap_seconds not in ROTATION_OVERLAPS:
        raise WebhookRefused("Choose when the old secret stops working.")
    endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
    now = timezone.now()
    secret = signing_module.secret_new(endpoint.signing)
    endpoint.previous_secret = endpoint.secret if overlap_seconds else ""
    endpoint.previous_secret_expires_at = (
        now + timedelta(seconds=overlap_seconds) if overlap_seconds else None
    )
    endpoint.secret = secret
    endpoint.secret_rotated_at = now
    endpoint.updated_at = now
    endpoint.save(
        update_fields=[
            "secret",
            "previous_secret",
            "previous_secret_expires_at",
            "secret_rotated_at",
            "updated_at",
        ]
    )
    _endpoint_event(endpoint, "webhook.secret_rotated", actor=actor, old_secret_valid_seconds=overlap_seconds)
    return secret


@transaction.atomic
def endpoint_disable(*, endpoint: Endpoint, actor) -> Endpoint:
    endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
    if endpoint.state != EndpointState.ACTIVE:
        raise WebhookRefused("This endpoint is already disabled.")
    endpoint.state = EndpointState.DISABLED
    endpoint.state_reason = f"Disabled by {actor.get_username()}."
    endpoint.updated_at = timezone.now()
    endpoint.save(update_fields=["state", "state_reason", "updated_at"])
    _endpoint_event(endpoint, "webhook.endpoint_disabled", actor=actor)
    return endpoint


@transaction.atomic
def endpoint_enable(*, endpoint: Endpoint, actor) -> Endpoint:
    """Active again; deliveries left pending while it was disabled resume (within their window)."""
    endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
    if endpoint.state == EndpointState.ACTIVE:
        raise WebhookRefused("This endpoint is already active.")
    _url_clean(endpoint.url)  # the rules may have changed since it was saved
    endpoint.state = EndpointState.ACTIVE
    endpoint.state_reason = ""
    endpoint.failing_since = None
    endpoint.updated_at = timezone.now()
    endpoint.save(update_fields=["state", "state_reason", "failing_since", "updated_at"])
    _endpoint_event(endpoint, "webhook.endpoint_enabled", actor=actor)
    return endpoint


@transaction.atomic
def endpoint_delete(*, endpoint: Endpoint, actor) -> None:
    """Delete the endpoint with its deliveries and their attempts (the event log keeps the events)."""
    endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
    event_record(
        type="webhook.endpoint_deleted",
        subject=("webhooks.endpoint", endpoint.pk),
        actor=actor,
        owner=endpoint.owner,
        payload={"host": endpoint.host, "deliveries": endpoint.deliveries.count()},
    )
    endpoint.delete()


@transaction.atomic
def endpoint_ping(*, endpoint: Endpoint, actor) -> Delivery:
    """Send a `webhook.ping` event to this endpoint only."""
    endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
    if endpoint.state != EndpointState.ACTIVE:
        raise WebhookRefused("This endpoint is disabled: enable it, then send the test ping.")
    # webhook.* events are never fanned out, so this one reaches this endpoint only.
    event = event_record(
        type="webhook.ping",
        subject=endpoint,
        actor=actor,
        owner=endpoint.owner,
        payload={
            "endpoint": endpoint.pk,
            "message": "A test ping from Reelflow: your endpoint is reachable.",
        },
    )
    now = timezone.now()
    delivery = Delivery.objects.create(
        endpoint=endpoint, event=event, next_attempt_at=now, enqueued_at=now, created_at=now
    )
    _enqueue_on_commit([delivery.pk])
    return delivery


# --- Redelivery -----------------------------------------------------------------------------------


@transaction.atomic
def delivery_redeliver(*, delivery: Delivery, actor) -> Delivery:
    """Attempt this delivery again now, with the same idempotency key (a person asked)."""
    now = timezone.now()
    delivery = Delivery.objects.select_for_update(of=("self",)).select_related("endpoint").get(pk=delivery.pk)
    if delivery.endpoint.state != EndpointState.ACTIVE:
        raise WebhookRefused("The endpoint is disabled: enable it first, then redeliver.")
    in_flight = (
        delivery.next_attempt_at
        and delivery.next_attempt_at > now
        and delivery.attempts.filter(finished_at__isnull=True).exists()
    )
    if in_flight or delivery.redeliver_requested_by_id is not None:
        raise WebhookRefused("An attempt is already under way; its result appears here in a few seconds.")
    delivery.state = DeliveryState.PENDING
    delivery.next_attempt_at = now
    delivery.enqueued_at = now
    delivery.redeliver_requested_by = actor
    delivery.save(update_fields=["state", "next_attempt_at", "enqueued_at", "redeliver_requested_by"])
    event_record(
        type="webhook.redelivery_requested",
        subject=delivery,
        actor=actor,
        owner=delivery.endpoint.owner,
        payload={"endpoint": delivery.endpoint_id, "event": delivery.event_id},
    )
    _enqueue_on_commit([delivery.pk])
    return delivery
