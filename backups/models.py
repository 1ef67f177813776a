"""Backups: policies (data), the ledger of protected object versions, runs and their tasks,
failures with their root-cause chain, restores.

Invariants kept here (enforced by constraints where the database can):
- at most one unfinished run per policy;
- at most one current ledger version per (source, key);
- a ledger version's `sha256` is what Reelflow computed from the bytes it copied, never an
  ETag; a backup copy lives at a content-addressed key, so it is written once.
"""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

env_var_name = RegexValidator(r"^[A-Z_][A-Z0-9_]*$", "An environment variable name: A-Z, 0-9 and _.")


class StorageEndpoint(models.Model):
    """An S3 server. Credentials are never stored: only the names of the environment
    variables that hold them (blank: the platform's own S3 settings)."""

    name = models.SlugField(max_length=64, unique=True)
    url = models.URLField(blank=True, help_text="Blank: the platform's S3 (S3_ENDPOINT_URL).")
    region = models.CharField(max_length=32, blank=True, help_text="Blank: S3_REGION.")
    access_key_env = models.CharField(
        max_length=64, blank=True, validators=[env_var_name],
        help_text="Name of the environment variable holding the access key. Blank: S3_ACCESS_KEY.",
    )
    secret_key_env = models.CharField(
        max_length=64, blank=True, validators=[env_var_name],
        help_text="Name of the environment variable holding the secret key. Blank: S3_SECRET_KEY.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class VerifyMode(models.TextChoices):
    FULL = "full", "Every object, every run"
    SAMPLED = "sampled", "Rotating sample (every object within N days)"
    OFF = "off", "No scheduled verification"


class Encryption(models.TextChoices):
    NONE = "none", "None"
    CLIENT = "client", "Client-side AES-256-GCM (the store never sees plaintext)"
    SERVER = "server", "Server-side SSE-S3 only (weaker: the store holds the key and sees plaintext)"


class LockMode(models.TextChoices):
    NONE = "", "No lock"
    GOVERNANCE = "GOVERNANCE", "Governance (privileged users may remove it)"
    COMPLIANCE = "COMPLIANCE", "Compliance (nobody can delete before the date)"


class BackupPolicy(models.Model):
    """What to protect (sources), where to (destination), how often, how to verify, how long
    to keep superseded and deleted versions."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=300, blank=True)
    enabled = models.BooleanField(default=True)
    destination_endpoint = models.ForeignKey(StorageEndpoint, on_delete=models.PROTECT, related_name="+")
    # A bucket name, or a reference to a setting: "${S3_BUCKET_BACKUP}".
    destination_bucket = models.CharField(max_length=255)
    destination_prefix = models.CharField(max_length=255, blank=True)
    interval_minutes = models.PositiveIntegerField(default=60, help_text="A scheduled sweep this often.")
    verify_mode = models.CharField(max_length=16, choices=VerifyMode.choices, default=VerifyMode.SAMPLED)
    verify_within_days = models.PositiveSmallIntegerField(
        default=7, help_text="Sampled verification still reaches every object within this many days."
    )
    verify_source = models.BooleanField(
        default=True, help_text="Also re-read sources against the ledger (tells bitrot from a real change)."
    )
    heal_source = models.BooleanField(
        default=False, help_text="Restore a source found corrupted from its verified backup automatically."
    )
    retention_days = models.PositiveIntegerField(
        default=30, help_text="Keep superseded and deleted versions' copies this long."
    )
    encryption = models.CharField(
        max_length=16, choices=Encryption.choices, default=Encryption.NONE,
        help_text="Client-side: the store never sees plaintext (needs BACKUP_KEK). Server-side is weaker.",
    )
    # Retention by schedule, as restic's `forget --keep-*` (per key, over its versions); all 0:
    # `retention_days` decides instead.
    keep_last = models.PositiveIntegerField(default=0)
    keep_hourly = models.PositiveIntegerField(default=0)
    keep_daily = models.PositiveIntegerField(default=0)
    keep_weekly = models.PositiveIntegerField(default=0)
    keep_monthly = models.PositiveIntegerField(default=0)
    keep_yearly = models.PositiveIntegerField(default=0)
    lock_mode = models.CharField(
        max_length=16, choices=LockMode.choices, default=LockMode.NONE, blank=True,
        help_text="S3 Object Lock on every copy (the destination bucket must have Object Lock enabled).",
    )
    lock_days = models.PositiveIntegerField(default=0, help_text="How long each copy is locked after it is written.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "backup policies"

    def __str__(self) -> str:
        return self.name


class PolicySource(models.Model):
    """One protected bucket prefix on one endpoint."""

    policy = models.ForeignKey(BackupPolicy, on_delete=models.CASCADE, related_name="sources")
    endpoint = models.ForeignKey(StorageEndpoint, on_delete=models.PROTECT, related_name="+")
    bucket = models.CharField(max_length=255, help_text='A bucket name or "${S3_BUCKET_...}".')
    prefix = models.CharField(max_length=512, blank=True)
    write_once_patterns = models.TextField(
        blank=True,
        help_text="Keys Reelflow writes once (content-addressed or immutable), one glob per line, e.g. "
        "assets/*/renditions/*. A changed object matching one is flagged, its previous version kept current.",
    )

    class Meta:
        ordering = ["policy_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "endpoint", "bucket", "prefix"], name="backups_source_unique")
        ]

    def __str__(self) -> str:
        return f"{self.bucket}/{self.prefix}"


class RunTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Started from the page"
    EVENT = "event", "Storage event"
    COMMAND = "command", "manage.py backup_run"


class RunState(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Finished with failures"
    FAILED = "failed", "Failed"


class RunPhase(models.TextChoices):
    SCAN = "scan", "Finding changes"
    COPY = "copy", "Copying"
    VERIFY = "verify", "Verifying"
    PRUNE = "prune", "Applying retention"
    DONE = "done", "Done"


class RunVerify(models.TextChoices):
    PLAN = "plan", "As the policy plans"
    FULL = "full", "Everything"
    NONE = "none", "Nothing"


class BackupRun(models.Model):
    policy = models.ForeignKey(BackupPolicy, on_delete=models.PROTECT, related_name="runs")
    trigger = models.CharField(max_length=16, choices=RunTrigger.choices)
    # Empty: the whole of every source. Else [{"source": id, "prefix": "..."}] (event runs).
    scope = models.JSONField(default=list, blank=True)
    verify = models.CharField(max_length=8, choices=RunVerify.choices, default=RunVerify.PLAN)
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.RUNNING)
    phase = models.CharField(max_length=16, choices=RunPhase.choices, default=RunPhase.SCAN)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # "host:pid" of the process driving the run, and when it last proved it is alive.
    owner = models.CharField(max_length=128, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Where the scan stopped: {"part": index into the scan parts, "after": last key done}.
    scan_cursor = models.JSONField(default=dict, blank=True)
    objects_scanned = models.PositiveBigIntegerField(default=0)
    bytes_scanned = models.PositiveBigIntegerField(default=0)
    objects_new = models.PositiveBigIntegerField(default=0)
    objects_changed = models.PositiveBigIntegerField(default=0)
    objects_deleted = models.PositiveBigIntegerField(default=0)
    objects_copied = models.PositiveBigIntegerField(default=0)
    bytes_copied = models.PositiveBigIntegerField(default=0)
    objects_deduplicated = models.PositiveBigIntegerField(default=0)
    objects_verified = models.PositiveBigIntegerField(default=0)
    bytes_verified = models.PositiveBigIntegerField(default=0)
    objects_failed = models.PositiveBigIntegerField(default=0)
    objects_repaired = models.PositiveBigIntegerField(default=0)
    versions_pruned = models.PositiveBigIntegerField(default=0)
    scan_seconds = models.FloatField(default=0)
    copy_seconds = models.FloatField(default=0)
    verify_seconds = models.FloatField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["policy"], condition=Q(finished_at__isnull=True), name="backups_one_active_run_per_policy"
            )
        ]
        indexes = [models.Index(fields=["policy", "-id"]), models.Index(fields=["state", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.policy_id}"

    @property
    def is_active(self) -> bool:
        return self.finished_at is None

    @property
    def duration_seconds(self) -> float:
        end = self.finished_at or timezone.now()
        return max((end - self.created_at).total_seconds(), 0.0)

    @property
    def throughput_bytes_per_second(self) -> float:
        """Bytes moved (copied and verified) per second of the phases that moved them."""
        seconds = self.copy_seconds + self.verify_seconds
        return (self.bytes_copied + self.bytes_verified) / seconds if seconds > 0 else 0.0


class VersionState(models.TextChoices):
    PENDING = "pending", "Not copied yet"
    PROTECTED = "protected", "Protected"
    DAMAGED = "damaged", "Backup damaged, repair pending"
    LOST = "lost", "No good copy"
    VANISHED = "vanished", "Gone from the source before it was copied"


class ObjectVersion(models.Model):
    """The ledger: one row per protected object version (key + ETag/version id)."""

    source = models.ForeignKey(PolicySource, on_delete=models.PROTECT, related_name="versions")
    key = models.CharField(max_length=1024)
    etag = models.CharField(max_length=80)
    version_id = models.CharField(max_length=255, blank=True)
    size = models.PositiveBigIntegerField()
    source_modified_at = models.DateTimeField(null=True, blank=True)
    # Computed by Reelflow from the bytes it copied (empty until copied).
    sha256 = models.CharField(max_length=64, blank=True)
    md5 = models.CharField(max_length=32, blank=True)
    backup_bucket = models.CharField(max_length=255, blank=True)
    backup_key = models.CharField(max_length=1024, blank=True)
    state = models.CharField(max_length=16, choices=VersionState.choices, default=VersionState.PENDING)
    is_current = models.BooleanField(default=True)
    first_seen_run = models.ForeignKey(BackupRun, null=True, on_delete=models.SET_NULL, related_name="+")
    last_seen_run = models.ForeignKey(BackupRun, null=True, on_delete=models.SET_NULL, related_name="+")
    first_seen_at = models.DateTimeField(default=timezone.now)
    superseded_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    copied_at = models.DateTimeField(null=True, blank=True)
    copied_by = models.ForeignKey("CopyTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    verified_at = models.DateTimeField(null=True, blank=True)
    source_verified_at = models.DateTimeField(null=True, blank=True)
    # A new version of a write-once key waits out of the current slot: `overwrites` is the version
    # it would replace; once copied, the same bytes replace it, other bytes set `tampered_at`.
    overwrites = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    tampered_at = models.DateTimeField(null=True, blank=True)
    # Client-side encryption: the copy's data key, wrapped by the key-encryption key `kek_id`.
    kek_id = models.CharField(max_length=64, blank=True, db_index=True)
    wrapped_key = models.CharField(max_length=80, blank=True)
    # S3 Object Lock of the copy: the store refuses to delete or overwrite it before
    # `locked_until`, or while the legal hold is on. Retention never forgets it before either.
    locked_until = models.DateTimeField(null=True, blank=True)
    legal_hold = models.BooleanField(default=False)

    class Meta:
        ordering = ["key", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "key"], condition=Q(is_current=True), name="backups_one_current_version"
            )
        ]
        indexes = [
            models.Index(fields=["source", "key"]),
            models.Index(fields=["source", "is_current", "verified_at"]),
            models.Index(fields=["sha256"]),
            models.Index(fields=["state"]),
        ]

    def __str__(self) -> str:
        return f"{self.key}@{self.etag}"

    @property
    def version_label(self) -> str:
        return self.version_id or self.etag


class TaskKind(models.TextChoices):
    COPY = "copy", "Copy"
    REPAIR = "repair", "Repair"


class TaskState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class CopyMethod(models.TextChoices):
    INLINE = "inline", "Read and written in one request each"
    STREAMED = "streamed", "Streamed (multipart)"
    SERVER_COPY = "server_copy", "Server-side copy + checksum check"
    DEDUPLICATED = "deduplicated", "Same content already in the backup"
    FROM_BACKUP = "from_backup", "Rewritten from another good backup copy"


class CopyTask(models.Model):
    """Copying one object version within one run (or repairing its backup copy)."""

    run = models.ForeignKey(BackupRun, on_delete=models.CASCADE, related_name="tasks")
    version = models.ForeignKey(ObjectVersion, on_delete=models.CASCADE, related_name="tasks")
    kind = models.CharField(max_length=8, choices=TaskKind.choices, default=TaskKind.COPY)
    state = models.CharField(max_length=8, choices=TaskState.choices, default=TaskState.PENDING)
    method = models.CharField(max_length=16, choices=CopyMethod.choices, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_by = models.CharField(max_length=128, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    bytes_copied = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    error_cause = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "state"])]

    def __str__(self) -> str:
        return f"{self.kind} task {self.pk}"


class FailureCause(models.TextChoices):
    SOURCE_CHANGED = "source_changed", "Source changed during copy"
    SOURCE_CORRUPTED = "source_corrupted", "Source corrupted"
    BACKUP_CORRUPTED = "backup_corrupted", "Backup copy corrupted"
    BACKUP_MISSING = "backup_missing", "Backup copy missing"
    TRANSFER_ERROR = "transfer_error", "Transfer error"
    PERMISSION = "permission", "Permission denied"
    WRITE_ONCE_CHANGED = "write_once_changed", "Write-once object overwritten"
    KEYS = "keys", "Encryption key missing or wrong"
    DELETE_REFUSED = "delete_refused", "Delete refused by the store (locked copy)"


class FailureCheck(models.TextChoices):
    COPY = "copy", "Copy"
    VERIFY_BACKUP = "verify_backup", "Backup copy check"
    VERIFY_SOURCE = "verify_source", "Source check"
    RETENTION = "retention", "Retention"


class Resolution(models.TextChoices):
    OPEN = "open", "Open"
    REPAIRED = "repaired", "Repaired"
    ALERTED = "alerted", "Needs a person (alert raised)"


class Failure(models.Model):
    """A check that failed, what it was traced back to, and what was restarted."""

    run = models.ForeignKey(BackupRun, on_delete=models.CASCADE, related_name="failures")
    version = models.ForeignKey(ObjectVersion, null=True, on_delete=models.SET_NULL, related_name="failures")
    task = models.ForeignKey(CopyTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    failed_check = models.CharField(max_length=16, choices=FailureCheck.choices)
    cause = models.CharField(max_length=32, choices=FailureCause.choices)
    resolution = models.CharField(max_length=16, choices=Resolution.choices, default=Resolution.OPEN)
    key = models.CharField(max_length=1024)
    detail = models.CharField(max_length=500)
    # From the failure to its root: [{"step": ..., "finding": ...}, ...], failure first.
    chain = models.JSONField(default=list)
    # Every ledger version the finding concerns when they share one backup copy:
    # [{"version": id, "key": ..., "label": ...}, ...] (empty: just `version`).
    references = models.JSONField(default=list, blank=True)
    action = models.CharField(max_length=300, blank=True)
    repair_task = models.ForeignKey(CopyTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    alert = models.ForeignKey("core.Alert", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "resolution"]), models.Index(fields=["cause", "created_at"])]

    def __str__(self) -> str:
        return f"{self.cause} {self.key}"


class ScanRequest(models.Model):
    """A prefix a storage event says changed; the next event run of the policy scans it."""

    policy = models.ForeignKey(BackupPolicy, on_delete=models.CASCADE, related_name="+")
    source = models.ForeignKey(PolicySource, on_delete=models.CASCADE, related_name="+")
    prefix = models.CharField(max_length=1024)
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    taken_by = models.ForeignKey(BackupRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "prefix"], condition=Q(taken_by__isnull=True), name="backups_one_pending_scan"
            )
        ]

    def __str__(self) -> str:
        return f"scan {self.prefix}"


class KeyCheck(models.Model):
    """A key-encryption key the ledger has used, by id, with a check value (an HMAC under the
    key, not the key): at start, every key that wrapped a data key must be present and match."""

    kek_id = models.CharField(max_length=64, unique=True)
    check_value = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"key {self.kek_id}"


class EventCursor(models.Model):
    """How far backups has read the shared event log."""

    name = models.CharField(max_length=64, unique=True)
    last_event_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} at event {self.last_event_id}"


class RestoreScope(models.TextChoices):
    OBJECT = "object", "One object"
    PREFIX = "prefix", "A prefix"
    ASSET = "asset", "Everything of one asset"


class RestoreState(models.TextChoices):
    PENDING = "pending", "Waiting for a worker"
    RUNNING = "running", "Restoring"
    SUCCEEDED = "succeeded", "Restored and verified"
    PARTIAL = "partial", "Some objects failed"
    FAILED = "failed", "Failed"


class Restore(models.Model):
    policy = models.ForeignKey(BackupPolicy, on_delete=models.PROTECT, related_name="restores")
    scope = models.CharField(max_length=8, choices=RestoreScope.choices)
    selector = models.CharField(max_length=1024, help_text="The key, the prefix or the asset id.")
    as_of = models.DateTimeField(null=True, blank=True)
    # One object's exact version (its S3 version id, or its ETag): blank for "current at as_of".
    version_label = models.CharField(max_length=255, blank=True)
    # Blank endpoint/bucket: each object goes back to its original place.
    target_endpoint = models.ForeignKey(
        StorageEndpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    target_bucket = models.CharField(max_length=255, blank=True)
    target_prefix = models.CharField(max_length=512, blank=True)
    state = models.CharField(max_length=16, choices=RestoreState.choices, default=RestoreState.PENDING)
    objects_total = models.PositiveIntegerField(default=0)
    objects_done = models.PositiveIntegerField(default=0)
    objects_failed = models.PositiveIntegerField(default=0)
    bytes_restored = models.PositiveBigIntegerField(default=0)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"restore {self.pk}"

    @property
    def to_original_place(self) -> bool:
        return not self.target_bucket


class RestoreItem(models.Model):
    restore = models.ForeignKey(Restore, on_delete=models.CASCADE, related_name="items")
    version = models.ForeignKey(ObjectVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    key = models.CharField(max_length=1024)
    target_bucket = models.CharField(max_length=255)
    target_key = models.CharField(max_length=1024)
    state = models.CharField(max_length=8, choices=TaskState.choices, default=TaskState.PENDING)
    size = models.PositiveBigIntegerField(default=0)
    sha256_written = models.CharField(max_length=64, blank=True)
    error = models.CharField(max_length=500, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"restore item {self.key}"


class DrillState(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Restored, verified and playable"
    FAILED = "failed", "Failed"


class RestoreDrill(models.Model):
    """A rehearsal: a sample of assets restored to a scratch prefix, their bytes verified and
    their published packages played (ffprobe of the master playlist), timed."""

    policy = models.ForeignKey(BackupPolicy, on_delete=models.CASCADE, related_name="drills")
    state = models.CharField(max_length=16, choices=DrillState.choices, default=DrillState.RUNNING)
    # Per asset: {"asset", "restore", "objects", "bytes", "seconds", "master", "plays", "frames", "error"}.
    results = models.JSONField(default=list, blank=True)
    objects_restored = models.PositiveIntegerField(default=0)
    bytes_restored = models.PositiveBigIntegerField(default=0)
    seconds = models.FloatField(default=0, help_text="Time to restore the sample (wall seconds).")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["policy", "-id"])]

    def __str__(self) -> str:
        return f"drill {self.pk} of {self.policy_id}"
