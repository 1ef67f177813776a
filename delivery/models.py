"""Delivery's data: how each asset may be played outside the studio, and each publisher's embed
settings.

An asset's `playback_id` is the public name players, embeds and oEmbed use: random, so it tells
nothing about the asset's id or about other assets. The policy says who may open its playback
URLs: anyone (public), whoever holds an unexpired signed token (signed), or nobody outside the
studio (private). A takedown refuses playback at once without deleting anything.
"""

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


def playback_id_new() -> str:
    return secrets.token_urlsafe(16).replace("-", "x").replace("_", "z")


class PlaybackPolicy(models.TextChoices):
    PUBLIC = "public", "Public: anyone with the link"
    SIGNED = "signed", "Signed: links expire"
    PRIVATE = "private", "Private: studio only"


class AssetDelivery(models.Model):
    asset = models.OneToOneField("pipeline.Asset", on_delete=models.CASCADE, related_name="delivery")
    playback_id = models.CharField(max_length=32, unique=True, default=playback_id_new)
    policy = models.CharField(max_length=8, choices=PlaybackPolicy.choices, default=PlaybackPolicy.SIGNED)
    # Names of the video renditions offered as MP4 downloads (with the audio muxed in).
    downloadable = models.JSONField(default=list, blank=True)
    # The publisher's own key-values (set through the API), kept here so the pipeline's Asset
    # stays the pipeline's.
    metadata = models.JSONField(default=dict, blank=True)
    # Set when the asset is under a legal hold: deleting it then tells backups to keep their
    # copies past the policy's retention (backups.LegalHold).
    legal_hold = models.BooleanField(default=False)
    taken_down_at = models.DateTimeField(null=True, blank=True)
    takedown_reason = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"delivery of asset {self.asset_id} ({self.policy})"

    @property
    def is_taken_down(self) -> bool:
        return self.taken_down_at is not None


class PublisherDelivery(models.Model):
    """A publisher's delivery settings: the origins allowed to frame their embeds."""

    publisher = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="delivery_settings"
    )
    embed_origins = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"delivery settings of {self.publisher_id}"
