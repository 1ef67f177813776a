"""Channels (where a team hears of alerts), routes (which alerts reach which team), and the
messages sent, each with its delivery attempts."""

from django.db import models
from django.utils import timezone

from core.models import Alert, AlertSeverity

SEVERITY_RANK = {AlertSeverity.INFO: 0, AlertSeverity.WARNING: 1, AlertSeverity.CRITICAL: 2}


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    SLACK = "slack", "Slack-compatible incoming webhook"
    SNS = "sns", "Amazon SNS topic"
    WEBHOOK = "webhook", "Generic webhook (signed JSON)"


class Channel(models.Model):
    team = models.SlugField(max_length=64, help_text="The team this channel reaches, e.g. 'media-ops'.")
    name = models.SlugField(max_length=64)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    # Email: comma-separated addresses. Slack/webhook: the URL. SNS: the topic ARN.
    target = models.CharField(max_length=1000)
    # Generic webhook: the HMAC key of the X-Reelflow-Signature header.
    secret = models.CharField(max_length=100, blank=True)
    enabled = models.BooleanField(default=True)
    # Since when every delivery failed (None: the last one succeeded).
    failing_since = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="notifications_channel_unique")]

    def __str__(self) -> str:
        return f"{self.team}/{self.name} ({self.kind})"


class Route(models.Model):
    """Alerts of these sources at this severity or above go to every channel of the team."""

    team = models.SlugField(max_length=64)
    sources = models.JSONField(default=list, blank=True, help_text="Alert sources; empty: every source.")
    min_severity = models.CharField(
        max_length=16, choices=AlertSeverity.choices, default=AlertSeverity.WARNING
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team", "id"]

    def __str__(self) -> str:
        return f"{self.team} <- {','.join(self.sources) or '*'} >= {self.min_severity}"

    def matches(self, alert: Alert) -> bool:
        if self.sources and alert.source not in self.sources:
            return False
        return SEVERITY_RANK[alert.severity] >= SEVERITY_RANK[self.min_severity]


class Pending(models.Model):
    """What a channel has yet to hear about one alert; collected into one message per burst."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="pending")
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="+")
    # The alert's occurrences when the channel last heard of it (0: never).
    notified_occurrences = models.PositiveIntegerField(default=0)
    notified_at = models.DateTimeField(null=True, blank=True)
    due = models.BooleanField(default=False)
    resolved = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "alert"], name="notifications_pending_unique")
        ]
        indexes = [models.Index(fields=["channel", "due"])]

    def __str__(self) -> str:
        return f"alert {self.alert_id} -> channel {self.channel_id}"


class MessageKind(models.TextChoices):
    ALERTS = "alerts", "Alerts"
    TEST = "test", "Test"


class MessageState(models.TextChoices):
    PENDING = "pending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Message(models.Model):
    """One message to one channel: the opened, repeated, reminded and resolved alerts of a burst."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="messages")
    kind = models.CharField(max_length=16, choices=MessageKind.choices, default=MessageKind.ALERTS)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    # [{"id", "change": opened|repeated|reminder|resolved, "severity", "source", "title", "occurrences"}]
    items = models.JSONField(default=list)
    state = models.CharField(max_length=16, choices=MessageState.choices, default=MessageState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # [{"at", "ok", "error", "ms"}], one per attempt.
    log = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["channel", "-id"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject}"
