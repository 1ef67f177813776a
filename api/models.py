"""API tokens: per publisher, stored hashed, scoped, revocable.

A token is `rf_<prefix>_<secret>`; the prefix (8 characters, stored in clear) finds the row and
lets pages name the token, the SHA-256 of the whole token is compared. The secret carries 256
random bits, so a fast hash is enough (no password-style stretching is needed against guessing).
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class TokenScope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Read and write"


class ApiToken(models.Model):
    publisher = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=8, unique=True)
    hashed = models.CharField(max_length=64)
    scope = models.CharField(max_length=8, choices=TokenScope.choices, default=TokenScope.READ)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["publisher", "-created_at"])]

    def __str__(self) -> str:
        return f"token {self.prefix} ({self.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def can_write(self) -> bool:
        return self.scope == TokenScope.WRITE


class ImportState(models.TextChoices):
    QUEUED = "queued", "Queued"
    FETCHING = "fetching", "Fetching"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class UrlImport(models.Model):
    """An upload the server fetches from a URL (POST /api/v1/uploads/url): the bytes go to the
    ingest bucket like any upload, then the same object-created path starts the job."""

    publisher = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="url_imports")
    url = models.URLField(max_length=2000)
    title = models.CharField(max_length=200, blank=True)
    profile = models.ForeignKey("pipeline.Profile", on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=16, choices=ImportState.choices, default=ImportState.QUEUED)
    failure_reason = models.CharField(max_length=500, blank=True)
    key = models.CharField(max_length=1024, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    asset = models.ForeignKey("pipeline.Asset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"import {self.pk} ({self.state})"
