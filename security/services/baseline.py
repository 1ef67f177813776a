"""The fleet baseline: the registration token's digest and the fleet's version, in the database.

It is set when the database is migrated (a deploy) and otherwise only on purpose
(`manage.py security_fleet --rotate-token`), so a worker started with other settings cannot
move it. If it is missing, the first process to need it sets it from its own settings (trust
on first use) and says so in the event log.
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.services import event_record
from security.fleet import configured_fleet_version, token_digest, worker_token
from security.models import FleetBaseline


def _label() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def fleet_baseline_get() -> FleetBaseline:
    found = FleetBaseline.objects.filter(pk=1).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            baseline = FleetBaseline.objects.create(
                pk=1,
                token_sha256=token_digest(worker_token()),
                version=configured_fleet_version(),
                updated_by=_label(),
            )
            event_record(
                type="security.fleet_baseline_set",
                subject=baseline,
                actor_label=_label(),
                payload={"how": "first use", "version": baseline.version},
            )
            return baseline
    except IntegrityError:
        return FleetBaseline.objects.get(pk=1)  # another process set it first


@transaction.atomic
def fleet_baseline_update(*, rotate_token: bool = False, version: str | None = None) -> FleetBaseline:
    """On deploy (migrate): the fleet's version becomes this code's. The token changes only on
    an explicit rotation, from this process's SECURITY_WORKER_TOKEN (or derived one)."""
    baseline = fleet_baseline_get()
    baseline = FleetBaseline.objects.select_for_update().get(pk=1)
    changed = {}
    new_version = version or configured_fleet_version()
    if baseline.version != new_version:
        changed["version"] = (baseline.version, new_version)
        baseline.version = new_version
    if rotate_token:
        baseline.token_sha256 = token_digest(worker_token())
        changed["token"] = "rotated"  # noqa: S105 - a word for the event log, not a secret
    if changed:
        baseline.updated_at = timezone.now()
        baseline.updated_by = _label()
        baseline.save(update_fields=["version", "token_sha256", "updated_at", "updated_by"])
        event_record(
            type="security.fleet_baseline_set",
            subject=baseline,
            actor_label=_label(),
            payload={k: str(v) for k, v in changed.items()},
        )
    return baseline
