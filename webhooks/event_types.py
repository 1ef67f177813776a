"""Which events an endpoint may subscribe to, and how a subscription matches an event type.

A subscription is an exact type ("job.published"), a prefix ending in ".*" ("job.*"), or "*".
Types in the `webhook.` namespace (pings, deliveries failing, endpoints disabled) are never
fanned out: a failing endpoint would otherwise be sent news of its own failures, forever.
"""

ALL = "*"
RESERVED_PREFIX = "webhook."

# (value, label) for the form, wildcards first.
CHOICES: list[tuple[str, str]] = [
    ("job.*", "All job events"),
    ("rendition.*", "All rendition events"),
    ("asset.*", "All asset events"),
    ("upload.*", "All upload events"),
    ("unit.*", "All unit events (one per chunk and rendition: many)"),
    (ALL, "Every event except unit events"),
    ("job.created", "job.created"),
    ("job.planned", "job.planned (chunks and renditions known)"),
    ("job.packaged", "job.packaged"),
    ("job.held_for_review", "job.held_for_review (a publish rule failed)"),
    ("job.approved", "job.approved"),
    ("job.rejected", "job.rejected"),
    ("job.published", "job.published"),
    ("job.failed", "job.failed"),
    ("job.cancelled", "job.cancelled"),
    ("job.restarted", "job.restarted"),
    ("rendition.ready", "rendition.ready"),
    ("rendition.playable", "rendition.playable (a rendition can be played, with a link to its MP4)"),
    ("rendition.quality_measured", "rendition.quality_measured"),
    ("asset.created", "asset.created"),
    ("asset.ready", "asset.ready"),
    ("upload.completed", "upload.completed"),
    ("upload.rejected", "upload.rejected"),
]
VALUES = frozenset(value for value, _ in CHOICES)
FAMILIES = sum(1 for value, _ in CHOICES if value == ALL or value.endswith(".*"))  # listed first

# What a new endpoint receives unless the publisher chooses otherwise: not unit events.
DEFAULT: list[str] = ["job.*", "rendition.*", "asset.*"]


def subscribes(patterns: list[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to `patterns` receives events of `event_type`."""
    if event_type.startswith(RESERVED_PREFIX):
        return False
    for pattern in patterns:
        if pattern == ALL:
            # "Everything" still leaves out unit events, the one noisy family; subscribe to
            # unit.* explicitly to get them.
            if not event_type.startswith("unit."):
                return True
        elif pattern.endswith(".*"):
            if event_type.startswith(pattern[:-1]):
                return True
        elif pattern == event_type:
            return True
    return False
