"""The console's own data: samples of queue depths over time, for the workers page's charts.

Everything else the console shows is read from the apps that own it (pipeline, core, RQ).
"""

from django.db import models
from django.utils import timezone


class QueueSample(models.Model):
    """How many RQ jobs one queue held at one moment (one row per queue per sample)."""

    at = models.DateTimeField(default=timezone.now)
    queue = models.CharField(max_length=64)
    queued = models.PositiveIntegerField()
    started = models.PositiveIntegerField()
    failed = models.PositiveIntegerField()

    class Meta:
        ordering = ["at", "queue"]
        indexes = [models.Index(fields=["at"])]

    def __str__(self) -> str:
        return f"{self.queue}@{self.at:%H:%M}: {self.queued} queued"
