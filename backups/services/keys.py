"""Keys of client-side encryption: which key-encryption keys (KEKs) the environment holds,
whether they are the ones the ledger's data keys were wrapped with, and rotation.

A KEK is never stored. The ledger records, per KEK id, a check value (an HMAC under the key), so
a missing or wrong key is refused when a process starts (a Django system check, so every
`manage.py` command including the workers refuses to start) and when a run starts — never
discovered at restore time.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Count

from backups import crypto
from backups.models import BackupPolicy, Encryption, KeyCheck, ObjectVersion

BATCH = 500


class KeysUnusable(Exception):
    """The environment's keys cannot serve the ledger (the message says what to do)."""


def keyring() -> tuple[crypto.Kek | None, dict[str, crypto.Kek]]:
    return crypto.keks_load(settings.BACKUP_KEK, settings.BACKUP_KEKS_RETIRED)


def keys_problems() -> list[str]:
    """Every reason the keys in the environment cannot serve the policies and the ledger."""
    try:
        current, keks = keyring()
    except crypto.KeyError_ as exc:
        return [str(exc)]
    problems = []
    encrypting = list(BackupPolicy.objects.filter(encryption=Encryption.CLIENT, enabled=True).values_list("name", flat=True))
    if encrypting and current is None:
        problems.append(
            f"policies {', '.join(encrypting)} encrypt their copies but BACKUP_KEK is not set "
            "(manage.py backup_keys --new ID prints a new key; keep it safe: without it the copies cannot be read)"
        )
    checks = dict(KeyCheck.objects.values_list("kek_id", "check_value"))
    used = ObjectVersion.objects.exclude(kek_id="").values("kek_id").annotate(n=Count("pk")).order_by("kek_id")
    for row in used:
        ident, count = row["kek_id"], row["n"]
        kek = keks.get(ident)
        if kek is None:
            problems.append(
                f"key {ident!r} wrapped the data keys of {count} backup version(s) but is in neither BACKUP_KEK nor "
                "BACKUP_KEKS_RETIRED: those copies cannot be decrypted. Put the key back in the environment."
            )
        elif checks.get(ident) and checks[ident] != kek.check:
            problems.append(
                f"key {ident!r} in the environment is not the key that wrapped {count} backup version(s) "
                "(its check value differs): wrong key."
            )
    if current is not None and checks.get(current.id) and checks[current.id] != current.check:
        problems.append(f"BACKUP_KEK {current.id!r} is not the key recorded under that id (its check value differs): wrong key.")
    return problems


def keys_require() -> None:
    problems = keys_problems()
    if problems:
        raise KeysUnusable(" ".join(problems))


def current_kek() -> crypto.Kek:
    """The KEK new copies are wrapped with, recorded in the ledger the first time it is used."""
    current, _ = keyring()
    if current is None:
        raise KeysUnusable("this policy encrypts its copies but BACKUP_KEK is not set")
    check, created = KeyCheck.objects.get_or_create(kek_id=current.id, defaults={"check_value": current.check})
    if not created and check.check_value != current.check:
        raise KeysUnusable(f"BACKUP_KEK {current.id!r} is not the key recorded under that id: wrong key")
    return current


def dek_of(version: ObjectVersion) -> bytes | None:
    """The data key of an encrypted version's copy (None for a plain copy)."""
    if not version.kek_id:
        return None
    _, keks = keyring()
    kek = keks.get(version.kek_id)
    if kek is None:
        raise KeysUnusable(f"key {version.kek_id!r} that wrapped {version.key}'s data key is not in the environment")
    return crypto.dek_unwrap(kek, version.wrapped_key)


def keys_rotate() -> int:
    """Re-wrap every data key wrapped by another key with BACKUP_KEK (no data is copied).
    Returns how many ledger versions were re-wrapped; afterwards the old keys may be retired."""
    keys_require()
    current = current_kek()
    _, keks = keyring()
    rewrapped = 0
    while True:
        with transaction.atomic():
            rows = list(
                ObjectVersion.objects.select_for_update().exclude(kek_id="").exclude(kek_id=current.id)
                .values_list("pk", "kek_id", "wrapped_key")[:BATCH]
            )  # fmt: skip
            if not rows:
                return rewrapped
            for pk, ident, wrapped in rows:
                dek = crypto.dek_unwrap(keks[ident], wrapped)
                ObjectVersion.objects.filter(pk=pk).update(kek_id=current.id, wrapped_key=crypto.dek_wrap(current, dek))
            rewrapped += len(rows)
