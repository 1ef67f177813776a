"""Client-side encryption on two real S3 servers: the backup store never holds plaintext, the
ledger keeps the plaintext SHA-256 and verification checks it after decryption, tampered
ciphertext is corruption, a missing or wrong key is refused before anything runs, and rotation
re-wraps data keys without copying data."""

import hashlib
import os
import subprocess
import sys

import pytest

from backups import crypto
from backups.models import (
    Encryption,
    Failure,
    FailureCause,
    ObjectVersion,
    Resolution,
    RestoreScope,
    RunState,
)
from backups.services import keys
from backups.services import restore as restore_service
from core.models import Alert, AlertState
from tests.backups.conftest import OFFSITE_BUCKET, run_policy
from tests.conftest import ROOT, worker_env

pytestmark = pytest.mark.django_db

MARKER = b"REELFLOW-PLAINTEXT-MARKER-7f3a"
K1 = crypto.kek_generate("k1")
K2 = crypto.kek_generate("k2")


@pytest.mark.parametrize("size", [0, 1, crypto.SEGMENT - 1, crypto.SEGMENT, crypto.SEGMENT + 1, 3 * crypto.SEGMENT + 5])
def test_sealing_round_trips_and_has_the_documented_size(size):
    dek = crypto.dek_new()
    data = os.urandom(size)
    chunks = [data[i : i + 65_536] for i in range(0, size, 65_536)]
    sealed = b"".join(crypto.encrypt(dek, iter(chunks)))
    assert len(sealed) == crypto.sealed_size(size)
    assert b"".join(crypto.decrypt(dek, iter([sealed[i : i + 100_000] for i in range(0, len(sealed), 100_000)]))) == data


def test_altered_truncated_or_foreign_ciphertext_fails_authentication():
    dek = crypto.dek_new()
    sealed = crypto.seal(dek, os.urandom(2 * crypto.SEGMENT + 10))
    flipped = bytearray(sealed)
    flipped[crypto.HEADER + crypto.SEGMENT + 40] ^= 1
    whole_segments_only = sealed[: crypto.HEADER + 2 * (crypto.SEGMENT + crypto.TAG)]
    for bad, key in ((bytes(flipped), dek), (whole_segments_only, dek), (sealed, crypto.dek_new())):
        with pytest.raises(crypto.AuthenticationFailed):
            b"".join(crypto.decrypt(key, iter([bad])))


@pytest.fixture
def encrypted(make_policy, put, tag, settings):
    """An encrypting policy with a small and a streamed (multipart) object backed up offsite."""
    settings.BACKUP_KEK, settings.BACKUP_KEKS_RETIRED = K1, ""
    settings.BACKUP_INLINE_MAX_BYTES = 1024 * 1024
    settings.BACKUP_PART_BYTES = 5 * 1024 * 1024
    policy = make_policy(encryption=Encryption.CLIENT)
    small = MARKER + os.urandom(20_000) + MARKER
    large = (MARKER + os.urandom(1000)) * 6000  # ~6 MB: streamed into a multipart upload
    objects = {put(f"uploads/t{tag}/small.bin", small): small, put(f"uploads/t{tag}/large.bin", large): large}
    run = run_policy(policy)
    assert run.state == RunState.SUCCEEDED, run.error
    return policy, objects


def _stored(offsite, tag) -> dict[str, bytes]:
    listing = offsite.list_objects_v2(Bucket=OFFSITE_BUCKET, Prefix=f"t{tag}/")
    return {o["Key"]: offsite.get_object(Bucket=OFFSITE_BUCKET, Key=o["Key"])["Body"].read() for o in listing["Contents"]}


def test_no_plaintext_reaches_the_backup_store_and_the_ledger_keeps_the_plaintext_sha256(encrypted, offsite, tag):
    policy, objects = encrypted
    stored = _stored(offsite, tag)
    assert len(stored) == 2 and all(key.startswith(f"t{tag}/enc/") for key in stored)
    for body in stored.values():
        assert MARKER not in body and body.startswith(crypto.MAGIC)
    for version in ObjectVersion.objects.filter(source__policy=policy):
        plain = objects[version.key]
        assert version.sha256 == hashlib.sha256(plain).hexdigest() and version.kek_id == "k1"
        assert version.sha256 not in version.backup_key  # names are keyed, not the plaintext's hash
        assert len(stored[version.backup_key]) == crypto.sealed_size(len(plain))
    verified = run_policy(policy, verify="full")
    assert verified.state == RunState.SUCCEEDED and verified.objects_verified == 2


def test_tampered_ciphertext_is_found_as_corruption_and_rewritten_encrypted(encrypted, offsite, tag):
    policy, objects = encrypted
    version = ObjectVersion.objects.get(source__policy=policy, key__endswith="small.bin")
    body = bytearray(offsite.get_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key)["Body"].read())
    body[500] ^= 0x20
    offsite.put_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key, Body=bytes(body))

    run = run_policy(policy, verify="full")

    failure = Failure.objects.get(run=run)
    assert failure.cause == FailureCause.BACKUP_CORRUPTED and "fails decryption" in failure.detail
    assert failure.resolution == Resolution.REPAIRED
    repaired = offsite.get_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key)["Body"].read()
    assert MARKER not in repaired
    assert b"".join(crypto.decrypt(keys.dek_of(version), iter([repaired]))) == objects[version.key]


def test_restore_decrypts_and_checks_the_plaintext(encrypted, s3, settings):
    policy, objects = encrypted
    key = next(k for k in objects if k.endswith("large.bin"))
    s3.delete_object(Bucket=settings.S3_BUCKET_INGEST, Key=key)

    planned = restore_service.restore_create(policy=policy, scope=RestoreScope.OBJECT, selector=key)
    done = restore_service.restore_execute(restore_id=planned.pk)

    assert done.state == "succeeded"
    assert s3.get_object(Bucket=settings.S3_BUCKET_INGEST, Key=key)["Body"].read() == objects[key]


def test_a_missing_or_wrong_key_is_refused_before_the_run_writes_anything(encrypted, settings, put, tag):
    policy, _ = encrypted
    put(f"uploads/t{tag}/new.bin", b"new bytes")
    settings.BACKUP_KEK = "k1:" + crypto.kek_generate("x").split(":", 1)[1]  # same id, other key
    assert any("wrong key" in p for p in keys.keys_problems())

    run = run_policy(policy)

    assert run.state == RunState.FAILED and "wrong key" in run.error
    assert Failure.objects.get(run=run).cause == FailureCause.KEYS
    assert not ObjectVersion.objects.filter(key__endswith="new.bin").exists()  # refused before the scan

    settings.BACKUP_KEK = ""
    problems = " ".join(keys.keys_problems())
    assert "BACKUP_KEK is not set" in problems and "key 'k1' wrapped the data keys of 2 backup version(s)" in problems
    settings.BACKUP_KEK = K1
    fixed = run_policy(policy)
    assert fixed.state == RunState.SUCCEEDED
    assert Alert.objects.get(dedup_key=f"backups:{policy.name}:run:keys").state == AlertState.RESOLVED


@pytest.mark.django_db(transaction=True)  # the process started reads the ledger committed
def test_a_process_refuses_to_start_without_the_key_that_wrapped_the_ledger(encrypted):
    env = worker_env({"BACKUP_KEK": "", "BACKUP_KEKS_RETIRED": ""})
    started = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert started.returncode != 0
    assert "backups.E001" in started.stderr and "key 'k1' wrapped the data keys of 2 backup version(s)" in started.stderr


def test_rotation_rewraps_data_keys_without_copying_and_the_old_key_can_go(encrypted, offsite, settings, tag):
    policy, objects = encrypted
    before = _stored(offsite, tag)
    settings.BACKUP_KEK, settings.BACKUP_KEKS_RETIRED = K2, K1

    assert keys.keys_rotate() == 2

    assert set(ObjectVersion.objects.filter(source__policy=policy).values_list("kek_id", flat=True)) == {"k2"}
    assert _stored(offsite, tag) == before  # not one byte rewritten
    settings.BACKUP_KEKS_RETIRED = ""  # k1 retired for good
    assert keys.keys_problems() == []
    run = run_policy(policy, verify="full")
    assert run.state == RunState.SUCCEEDED and run.objects_verified == 2


def test_server_side_encryption_is_offered_as_the_weaker_choice(make_policy, put, tag, offsite, make_user):
    from django.test import Client
    from django.urls import reverse

    from core.roles import Role

    policy = make_policy(encryption=Encryption.SERVER)
    data = MARKER + os.urandom(5000)
    put(f"uploads/t{tag}/sse.bin", data)

    assert run_policy(policy, verify="full").state == RunState.SUCCEEDED

    version = ObjectVersion.objects.get(source__policy=policy)
    stored = offsite.head_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key)
    assert stored["ServerSideEncryption"] == "AES256" and version.kek_id == ""
    # The store decrypts for anyone holding its keys: that is why it is the weaker choice.
    assert offsite.get_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key)["Body"].read() == data
    client = Client()
    client.force_login(make_user("opssse", role=Role.OPERATIONS))
    page = client.get(reverse("backups:policy_detail", args=[policy.pk])).content.decode()
    assert "weaker: the store holds the key and sees plaintext" in page


@pytest.mark.django_db(transaction=True)
def test_the_backup_worker_refuses_to_start_without_the_key_and_a_media_worker_only_warns(encrypted):
    env = worker_env({"BACKUP_KEK": "", "BACKUP_KEKS_RETIRED": ""})

    def start(*queues):
        return subprocess.run(  # noqa: S603
            [sys.executable, "manage.py", "rqworker", *queues, "--burst"], cwd=ROOT, env=env, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip

    backup = start("backup")
    assert backup.returncode != 0 and "backups.E001" in backup.stderr and "key 'k1'" in backup.stderr
    media = start("encode")
    assert media.returncode == 0, media.stderr
