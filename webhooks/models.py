"""Outgoing webhooks: a publisher's endpoints, one delivery per (event, endpoint), and every
attempt made to deliver it."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class EndpointState(models.TextChoices):
    ACTIVE = "active", "Active"
    DISABLED = "disabled", "Disabled"
    AUTO_DISABLED = "auto_disabled", "Disabled after failing"


class SigningScheme(models.TextChoices):
    REELFLOW = "reelflow", "Reelflow (Reelflow-Signature)"
    STANDARD = "standard", "Standard Webhooks (webhook-signature)"


class Endpoint(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    # Exact types ("job.published") and prefixes ("job.*", "*"); see webhooks.event_types.
    event_types = models.JSONField(default=list)
    # Kept in clear because signing needs it (an HMAC key cannot be hashed); docs/webhooks.md
    # explains the trade-off. Shown once, never logged, never put in an event.
    secret = models.CharField(max_length=100)
    # After a rotation with overlap, deliveries are signed with both until this time.
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    # How deliveries are signed: Reelflow's own headers, or the Standard Webhooks scheme
    # (standardwebhooks.com) that receivers verify with an existing library.
    signing = models.CharField(max_length=16, choices=SigningScheme.choices, default=SigningScheme.REELFLOW)
    state = models.CharField(max_length=16, choices=EndpointState.choices, default=EndpointState.ACTIVE)
    state_reason = models.CharField(max_length=300, blank=True)
    # Start of the current run of failed attempts (cleared by a success): drives auto-disable.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["owner", "state"])]

    def __str__(self) -> str:
        return f"webhook endpoint {self.pk} ({self.host})"

    @property
    def host(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.url).hostname or ""

    @property
    def secret_hint(self) -> str:
        """Enough of the secret to tell two apart, not enough to use it."""
        return f"{self.secret[:10]}…{self.secret[-4:]}" if self.secret else ""


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """One event for one endpoint. Its key is the idempotency key receivers see on every attempt."""

    key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey("core.Event", on_delete=models.CASCADE, related_name="+")
    # The JSON sent, written once when the event is recorded (it names the asset's state and
    # playback URLs at that moment), so every attempt sends the same bytes. Blank: built from
    # the event (deliveries made before this field).
    body = models.TextField(blank=True)
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts_made = models.PositiveIntegerField(default=0)
    # When the next attempt is due (None: none planned). While an attempt runs it holds the
    # attempt's lease, so a second job for the same delivery finds it not due and returns.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When an RQ job was last queued for the due attempt; the sweep re-queues after a while
    # (Redis flushed, job lost), so the database alone decides what still has to be sent.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # A redelivery asked for by a person: the next attempt records who and why.
    redeliver_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["state", "next_attempt_at"]),
            models.Index(fields=["endpoint", "state"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return f"delivery {self.key} of event {self.event_id} to endpoint {self.endpoint_id}"


class AttemptTrigger(models.TextChoices):
    AUTOMATIC = "automatic", "Automatic"
    MANUAL = "manual", "Redelivered by hand"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    trigger = models.CharField(
        max_length=16, choices=AttemptTrigger.choices, default=AttemptTrigger.AUTOMATIC
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)  # at most 2 KB of the response body
    error = models.CharField(max_length=500, blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhooks_attempt_number_unique")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"
