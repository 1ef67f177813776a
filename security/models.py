"""Security's data: the inventory, violations of the rules, automatic responses, access events.

The audit trail of a violation is core's event log (subject "security.violation"), and every
alert is a core.Alert (source "security"): security keeps only what is its own.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.models import Alert, AlertSeverity


class ResourceKind(models.TextChoices):
    EC2 = "ec2", "EC2 instance"
    WORKER = "reelflow.worker", "Reelflow worker"


class InstanceState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    SHUTTING_DOWN = "shutting-down", "Shutting down"
    TERMINATED = "terminated", "Terminated"


class Instance(models.Model):
    """One thing the rules are checked against: an EC2 instance or one of our worker processes."""

    kind = models.CharField(max_length=32, choices=ResourceKind.choices)
    # EC2: the instance id; worker: RQ's worker name (unique per process).
    external_id = models.CharField(max_length=128)
    region = models.CharField(max_length=32, blank=True)
    name = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=16, choices=InstanceState.choices, default=InstanceState.RUNNING)
    # The resource document the policies see (describe_instances shape, or the registration).
    config = models.JSONField(default=dict)
    # Digest of the configuration without volatile fields: a change reopens acknowledgements.
    config_digest = models.CharField(max_length=64, blank=True)
    launched_by = models.CharField(max_length=300, blank=True)
    launch_event_id = models.CharField(max_length=128, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    evaluated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "external_id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "external_id"], name="security_instance_unique")
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.external_id}"

    @property
    def label(self) -> str:
        return f"{self.external_id} ({self.name})" if self.name else self.external_id


class ViolationState(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class Violation(models.Model):
    """One rule failing on one instance. One row per (instance, rule): it reopens, never repeats."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="violations")
    policy = models.CharField(max_length=128)
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices)
    state = models.CharField(max_length=16, choices=ViolationState.choices, default=ViolationState.OPEN)
    description = models.TextField(blank=True)
    # {"checks": [...], "compliant": [...], "config": {...}}: what fired and what would not.
    evidence = models.JSONField(default=dict)
    config_digest = models.CharField(max_length=64, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    justification = models.TextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # The configuration that was acknowledged; any other configuration reopens the violation.
    ack_config_digest = models.CharField(max_length=64, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolution = models.TextField(blank=True)
    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "policy"], name="security_violation_unique")
        ]
        indexes = [
            models.Index(fields=["state", "severity"]),
            models.Index(fields=["policy", "state"]),
            models.Index(fields=["state", "expires_at"]),
            models.Index(fields=["opened_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.policy} on {self.instance}"


class ResponseKind(models.TextChoices):
    STOP = "stop", "Stop instance"
    QUARANTINE = "quarantine", "Quarantine instance"
    TAG = "tag", "Tag instance"
    TERMINATE = "terminate", "Terminate instance"
    SHUTDOWN_WORKER = "shutdown-worker", "Shut down worker"
    LOCK_ACCOUNT = "lock-account", "Lock account"
    BLOCK_ADDRESS = "block-address", "Block address"
    SUSPEND_USER = "suspend-user", "Suspend user"
    CUSTODIAN = "custodian", "Custodian action"


class ResponseState(models.TextChoices):
    DONE = "done", "Done"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"
    UNDONE = "undone", "Undone"


class ResponseAction(models.Model):
    """An automatic response, with what it needs to be undone (empty `undo`: it cannot be)."""

    kind = models.CharField(max_length=32, choices=ResponseKind.choices)
    state = models.CharField(max_length=16, choices=ResponseState.choices, default=ResponseState.DONE)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=300)
    detail = models.TextField(blank=True)
    undo = models.JSONField(default=dict, blank=True)
    undo_hint = models.TextField(blank=True)
    error = models.TextField(blank=True)
    policy = models.CharField(max_length=128, blank=True)
    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    violation = models.ForeignKey(
        Violation, null=True, blank=True, on_delete=models.SET_NULL, related_name="responses"
    )
    taken_at = models.DateTimeField(default=timezone.now)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.target_type}:{self.target_id} ({self.state})"

    @property
    def undoable(self) -> bool:
        return self.state == ResponseState.DONE and bool(self.undo)


class AccessEventKind(models.TextChoices):
    LOGIN_FAILED = "login-failed", "Failed login"
    ACCESS_DENIED = "access-denied", "Access denied"


class AccessEvent(models.Model):
    """What the access detectors count: failed logins and 403/404 answers to signed-in users."""

    kind = models.CharField(max_length=16, choices=AccessEventKind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    path = models.CharField(max_length=500, blank=True)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    # A failed login from a browser that had signed in to the account (its device cookie's id):
    # counted for that device only.
    device = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["kind", "username", "created_at"]),
            models.Index(fields=["kind", "address", "created_at"]),
            models.Index(fields=["kind", "user", "created_at"]),
            models.Index(fields=["kind", "device", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.username or self.address} {self.path}"


class LoginBlockScope(models.TextChoices):
    USER = "user", "Account"
    ADDRESS = "address", "Address"


class LoginBlock(models.Model):
    """Logins refused for an account or from an address, until `until` or until lifted."""

    scope = models.CharField(max_length=16, choices=LoginBlockScope.choices)
    # "user:<id>" or "address:<ip>": at most one active block per key (partial unique index).
    key = models.CharField(max_length=200)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    address = models.GenericIPAddressField(null=True, blank=True)
    reason = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    until = models.DateTimeField(null=True, blank=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=Q(lifted_at__isnull=True), name="security_loginblock_one_active"
            )
        ]

    def __str__(self) -> str:
        return f"login block {self.key}"


class FleetBaseline(models.Model):
    """What every worker is held to, kept where no worker's own settings can change it: the
    registration token's digest and the fleet's version. One row (pk=1)."""

    token_sha256 = models.CharField(max_length=64)
    version = models.CharField(max_length=64)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"fleet baseline (version {self.version})"


class DeadLetter(models.Model):
    """An event message that could not be handled (malformed, or failing past its retries): kept
    here with why, deleted from the queue so it is never retried forever, and alerted."""

    source = models.CharField(max_length=32)  # "sqs"
    message_id = models.CharField(max_length=128, blank=True)
    body = models.TextField()
    error = models.TextField()
    receive_count = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"dead letter {self.source}:{self.message_id}"
