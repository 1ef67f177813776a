"""What every app shares: the append-only event log and the alert model."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from core.roles import PERMISSIONS


class Event(models.Model):
    """One thing that happened, to what, when, by whom. Rows are only ever inserted."""

    type = models.CharField(max_length=64)
    subject_type = models.CharField(max_length=64)
    subject_id = models.CharField(max_length=64)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who acted when it was no person: "system", "worker:host:pid", "scheduler".
    actor_label = models.CharField(max_length=128, default="system")
    # The publisher the subject belongs to, so publishers see (and webhooks get) their own only.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["subject_type", "subject_id", "id"]),
            models.Index(fields=["type", "id"]),
            models.Index(fields=["created_at"]),
        ]
        permissions = list(PERMISSIONS.items())

    def __str__(self) -> str:
        return f"{self.type} {self.subject_type}:{self.subject_id}"


class AlertSeverity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class Alert(models.Model):
    """An alert raised by backups, security or the pipeline; one acknowledgement flow for all."""

    source = models.CharField(max_length=32)
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices)
    title = models.CharField(max_length=200)
    detail = models.TextField(blank=True)
    subject_type = models.CharField(max_length=64, blank=True)
    subject_id = models.CharField(max_length=64, blank=True)
    # Raising the same condition twice while it is open updates one alert instead of two.
    dedup_key = models.CharField(max_length=200, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    # Automatic responses taken: [{"action": ..., "at": ..., "undo": ...}].
    actions = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.OPEN)
    occurrences = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    justification = models.TextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["state", "severity"]),
            models.Index(fields=["source", "state"]),
            models.Index(fields=["dedup_key"]),
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.title}"
