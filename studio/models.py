"""Studio's own data: multipart upload sessions.

A session is the server's record of one browser-to-S3 multipart upload: which publisher, which
file (name, size, lastModified and a fingerprint of its first bytes, so choosing the same file
again resumes it), the S3 key and upload id, the part size, and where it ended. S3 holds the
parts; ListParts is the truth about which ones are stored.
"""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class UploadState(models.TextChoices):
    UPLOADING = "uploading", "Uploading"
    COMPLETED = "completed", "Completed"
    ABORTED = "aborted", "Cancelled"
    EXPIRED = "expired", "Expired"
    REJECTED = "rejected", "Rejected"


class UploadSession(models.Model):
    # A UUID, so a session id in a URL tells nothing about other publishers' uploads.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    publisher = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="upload_sessions"
    )
    filename = models.CharField(max_length=255)
    size = models.BigIntegerField()
    # The browser's File.lastModified (ms since the epoch) and SHA-256 of the first bytes:
    # with name and size they identify "the same file" when a publisher picks it again.
    last_modified_ms = models.BigIntegerField(default=0)
    fingerprint = models.CharField(max_length=64, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    title = models.CharField(max_length=200)
    profile = models.ForeignKey("pipeline.Profile", on_delete=models.PROTECT, related_name="+")
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1024)
    upload_id = models.CharField(max_length=1024)
    part_size = models.BigIntegerField()
    parts_total = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=UploadState.choices, default=UploadState.UPLOADING)
    failure_reason = models.TextField(blank=True)
    asset = models.ForeignKey(
        "pipeline.Asset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["publisher", "state", "filename", "size"]),
            models.Index(fields=["state", "expires_at"]),
        ]

    def __str__(self) -> str:
        return f"upload {self.filename} ({self.state})"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()
