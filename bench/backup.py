"""Backups benchmark: change detection, verification and incremental runs against baselines
measured in the same process, on two SeaweedFS servers started here (source and backup).

    .venv/bin/python bench/backup.py            # 20,000 small objects + 3 of 50 MB (~10 min)
    .venv/bin/python bench/backup.py --small    # 2,000 small + 1 of 50 MB (~1 min)

Figures (each the median of --repeat measurements, interleaved with its baseline):
- sweep ratio: objects/s of the change-detection sweep over an unchanged source (listing
  compared with the ledger page by page) / objects/s of a bare boto3 paginated listing of the
  same prefix. Goal >= 0.8. The first sweep (empty ledger: every object inserted, a copy task
  each) is reported too.
- verify ratio: bytes/s of a full verification (re-read every backup copy, SHA-256 against
  the ledger, results recorded) / bytes/s of a bare GET-and-SHA-256 loop over the same
  objects with the same number of threads. Goal >= 0.8.
- incremental ratio: wall time of a run after changing 1% of the small objects / wall time of
  the first full run (both without scheduled verification). Goal <= 0.05.
- encrypted copy ratio: bytes/s of a full copy with client-side encryption (AES-256-GCM, a data
  key per copy) / bytes/s of the same full copy without, each to a fresh destination prefix,
  interleaved. Goal >= 0.8 (`encrypted_copy_ratio`).
- encrypted verify ratio: bytes/s of a full verification of the encrypted copies (decrypt, then
  SHA-256 of the plaintext against the ledger) / bytes/s of the same verification of the plain
  copies, interleaved. Goal >= 0.8 (`encrypted_verify_ratio`).

Ends with one line holding a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SRC_KEYS = ("bench-src-access", "bench-src-secret-0123456789abcdef")
DST_KEYS = ("bench-dst-access", "bench-dst-secret-0123456789abcdef")
SRC_BUCKET, DST_BUCKET, PREFIX = "bench-source", "bench-backup", "data/"
THREADS = 8


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="2,000 small objects and one large: a quick run")
    parser.add_argument("--objects", type=int, help="small objects (default 20,000)")
    parser.add_argument("--large", type=int, help="large objects (default 3)")
    parser.add_argument("--large-mb", type=int, default=50)
    parser.add_argument("--small-bytes", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (servers' data, database)")
    args = parser.parse_args()
    args.objects = args.objects if args.objects is not None else (2000 if args.small else 20000)
    args.large = args.large if args.large is not None else (1 if args.small else 3)
    return args


def setup_environment(tmp: Path):
    """Two S3 servers, a throwaway SQLite database, Django configured for them."""
    from devservices.seaweed import start_seaweed

    source = start_seaweed(data_dir=tmp / "s3-source", access_key=SRC_KEYS[0], secret_key=SRC_KEYS[1])
    backup = start_seaweed(data_dir=tmp / "s3-backup", access_key=DST_KEYS[0], secret_key=DST_KEYS[1])
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
            "REELFLOW_VAR_DIR": str(tmp),
            "S3_ENDPOINT_URL": source.endpoint_url,
            "S3_ACCESS_KEY": SRC_KEYS[0],
            "S3_SECRET_KEY": SRC_KEYS[1],
            "BENCH_BACKUP_ACCESS_KEY": DST_KEYS[0],
            "BENCH_BACKUP_SECRET_KEY": DST_KEYS[1],
            "LOG_LEVEL": "WARNING",
        }
    )
    os.environ.pop("REELFLOW_TEST_DB_NAME", None)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.S3_ENDPOINT_URL = source.endpoint_url
    settings.S3_ACCESS_KEY, settings.S3_SECRET_KEY = SRC_KEYS
    settings.BACKUP_COPY_CONCURRENCY = settings.BACKUP_VERIFY_CONCURRENCY = THREADS
    call_command("migrate", verbosity=0)
    source.client().create_bucket(Bucket=SRC_BUCKET)
    backup.client().create_bucket(Bucket=DST_BUCKET)
    return source, backup


def make_policy(backup_server, *, name: str = "bench", encryption: str = "none"):
    from backups.models import BackupPolicy, PolicySource, StorageEndpoint, VerifyMode

    BackupPolicy.objects.update(enabled=False)
    platform = StorageEndpoint.objects.get(name="platform")
    offsite, _ = StorageEndpoint.objects.get_or_create(
        name="bench-backup", url=backup_server.endpoint_url,
        access_key_env="BENCH_BACKUP_ACCESS_KEY",
        secret_key_env="BENCH_BACKUP_SECRET_KEY",  # noqa: S106 - the variable's name, not a secret
    )
    policy = BackupPolicy.objects.create(
        name=name, destination_endpoint=offsite, destination_bucket=DST_BUCKET, destination_prefix=f"{name}/",
        verify_mode=VerifyMode.FULL, verify_source=False, encryption=encryption,
    )
    PolicySource.objects.create(policy=policy, endpoint=platform, bucket=SRC_BUCKET, prefix=PREFIX)
    return policy


def upload(client, keys_and_sizes: list[tuple[str, int]], *, threads: int = 16) -> None:
    def put(item):
        key, size = item
        client.put_object(Bucket=SRC_BUCKET, Key=key, Body=os.urandom(size))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, keys_and_sizes))


def bare_listing(client) -> tuple[int, float]:
    started = time.perf_counter()
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=SRC_BUCKET, Prefix=PREFIX, PaginationConfig={"PageSize": 1000}
    ):
        count += len(page.get("Contents", []))
    return count, time.perf_counter() - started


def sweep(policy) -> tuple[int, float]:
    """One change-detection sweep (a run's scan phase), timed; the run is then closed."""
    from backups.models import BackupRun, RunTrigger
    from backups.services import runs, scan

    run = runs.run_start(policy=policy, trigger=RunTrigger.COMMAND, verify="none")
    started = time.perf_counter()
    scan.run_scan(run=run)
    seconds = time.perf_counter() - started
    runs.run_finish(run_id=run.pk)
    return BackupRun.objects.get(pk=run.pk).objects_scanned, seconds


def full_or_incremental_run(policy):
    from backups.models import RunTrigger
    from backups.services import runs

    run = runs.run_start(policy=policy, trigger=RunTrigger.COMMAND, verify="none")
    started = time.perf_counter()
    finished = runs.run_execute(run_id=run.pk)
    return finished, time.perf_counter() - started


def verification(policy) -> tuple[int, int, float]:
    from backups.models import BackupRun, RunTrigger
    from backups.services import runs, verify

    run = runs.run_start(policy=policy, trigger=RunTrigger.COMMAND, verify="full")
    started = time.perf_counter()
    verify.run_verify(run=run)
    seconds = time.perf_counter() - started
    runs.run_finish(run_id=run.pk)
    run = BackupRun.objects.get(pk=run.pk)
    if run.objects_failed:
        raise SystemExit(f"verification found {run.objects_failed} failures in a clean backup")
    return run.objects_verified, run.bytes_verified, seconds


def bare_get_and_hash(client, keys: list[str], *, threads: int) -> tuple[int, float]:
    def get_hash(key: str) -> int:
        body = client.get_object(Bucket=DST_BUCKET, Key=key)["Body"]
        sha, size = hashlib.sha256(), 0
        while chunk := body.read(1024 * 1024):
            sha.update(chunk)
            size += len(chunk)
        return size

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(get_hash, keys))
    return total, time.perf_counter() - started


def encrypted_path(backup, repeat: int) -> dict:
    """Full copies and verifications with and without client-side encryption, interleaved, each
    copy to a fresh destination prefix (so every object is copied, none deduplicated)."""
    from django.conf import settings

    from backups import crypto

    settings.BACKUP_KEK = crypto.kek_generate("bench")
    copy = {"none": [], "client": []}
    verify = {"none": [], "client": []}
    policies = {}
    for rep in range(repeat):
        for mode in ("none", "client"):
            policies[mode] = make_policy(backup, name=f"bench-{mode}-{rep}", encryption=mode)
            run, _ = full_or_incremental_run(policies[mode])
            copy[mode].append(run.bytes_copied / run.copy_seconds)
        for mode in ("none", "client"):
            _, size, seconds = verification(policies[mode])
            verify[mode].append(size / seconds)
    plain_copy, enc_copy = statistics.median(copy["none"]), statistics.median(copy["client"])
    plain_verify, enc_verify = statistics.median(verify["none"]), statistics.median(verify["client"])
    log(f"copy {plain_copy / 1e6:.1f} MB/s plain, {enc_copy / 1e6:.1f} MB/s encrypted; verify "
        f"{plain_verify / 1e6:.1f} MB/s plain, {enc_verify / 1e6:.1f} MB/s encrypted")
    return {
        "plain_copy_bytes_per_s": round(plain_copy), "encrypted_copy_bytes_per_s": round(enc_copy),
        "encrypted_copy_ratio": round(enc_copy / plain_copy, 3),
        "plain_verify_bytes_per_s": round(plain_verify), "encrypted_verify_bytes_per_s": round(enc_verify),
        "encrypted_verify_ratio": round(enc_verify / plain_verify, 3),
    }


def full_run_figures(policy, total: int) -> tuple[dict, float]:
    """Full run: first scan (empty ledger) + copy of everything."""
    run, full_seconds = full_or_incremental_run(policy)
    assert run.objects_copied == total, (run.objects_copied, total)
    figures = dict(
        full_run_s=round(full_seconds, 2), first_scan_s=round(run.scan_seconds, 2),
        first_sweep_rate=round(total / run.scan_seconds), full_copy_s=round(run.copy_seconds, 2),
        full_copy_objects_per_s=round(total / run.copy_seconds),
    )
    log(f"full run {full_seconds:.1f} s (scan {run.scan_seconds:.1f} s, copy {run.copy_seconds:.1f} s)")
    return figures, full_seconds


def sweep_figures(policy, src, repeat: int, first_sweep_rate: float) -> dict:
    """Sweep of an unchanged source vs a bare listing, interleaved."""
    list_rates, sweep_rates = [], []
    for _ in range(repeat):
        count, seconds = bare_listing(src)
        list_rates.append(count / seconds)
        scanned, seconds = sweep(policy)
        sweep_rates.append(scanned / seconds)
    figures = dict(
        list_rate=round(statistics.median(list_rates)), sweep_rate=round(statistics.median(sweep_rates)),
        sweep_ratio=round(statistics.median(sweep_rates) / statistics.median(list_rates), 3),
        first_sweep_ratio=round(first_sweep_rate / statistics.median(list_rates), 3),
    )
    log(f"listing {figures['list_rate']}/s, sweep {figures['sweep_rate']}/s: ratio {figures['sweep_ratio']}")
    return figures


def incremental_figures(policy, src, small: list, args, full_seconds: float) -> dict:
    """Incremental runs: 1% of the small objects changed each time."""
    changed = max(1, args.objects // 100)
    incremental = []
    for rep in range(args.repeat):
        batch = small[rep * changed : (rep + 1) * changed]
        upload(src, batch)
        run, seconds = full_or_incremental_run(policy)
        assert run.objects_changed == len(batch) and run.objects_copied == len(batch), run.objects_copied
        incremental.append(seconds)
    figures = dict(
        changed_per_incremental=changed, incremental_run_s=round(statistics.median(incremental), 2),
        incremental_ratio=round(statistics.median(incremental) / full_seconds, 4),
    )
    log(f"incremental {figures['incremental_run_s']} s = {figures['incremental_ratio']:.2%} of the full run")
    return figures


def verify_figures(policy, dst, repeat: int) -> dict:
    """Verification vs bare GET-and-hash over the same backup objects, interleaved."""
    from backups.models import ObjectVersion

    keys = list(ObjectVersion.objects.filter(source__policy=policy, is_current=True).values_list("backup_key", flat=True))
    ours, bare = [], []
    for _ in range(repeat):
        size, seconds = bare_get_and_hash(dst, keys, threads=THREADS)
        bare.append(size / seconds)
        count, size, seconds = verification(policy)
        ours.append(size / seconds)
    figures = dict(
        verify_objects=len(keys), verify_bytes_per_s=round(statistics.median(ours)),
        bare_get_hash_bytes_per_s=round(statistics.median(bare)),
        verify_ratio=round(statistics.median(ours) / statistics.median(bare), 3),
    )
    log(f"verify {figures['verify_bytes_per_s'] / 1e6:.1f} MB/s, bare GET+hash "
        f"{figures['bare_get_hash_bytes_per_s'] / 1e6:.1f} MB/s: ratio {figures['verify_ratio']}")
    return figures


def goals_of(figures: dict) -> dict:
    return {
        "sweep_ratio>=0.8": figures["sweep_ratio"] >= 0.8,
        "verify_ratio>=0.8": figures["verify_ratio"] >= 0.8,
        "incremental_ratio<=0.05": figures["incremental_ratio"] <= 0.05,
        "encrypted_copy_ratio>=0.8": figures["encrypted_copy_ratio"] >= 0.8,
        "encrypted_verify_ratio>=0.8": figures["encrypted_verify_ratio"] >= 0.8,
    }


def measure(args, source, backup, figures: dict) -> None:
    from core import s3

    policy = make_policy(backup)
    # Baselines use clients configured exactly as Reelflow's (core.s3), shared by threads.
    src = s3.client(s3.S3Target(source.endpoint_url, *SRC_KEYS))
    dst = s3.client(s3.S3Target(backup.endpoint_url, *DST_KEYS))
    small = [(f"{PREFIX}small/{i:06d}", args.small_bytes) for i in range(args.objects)]
    large = [(f"{PREFIX}large/{i:02d}", args.large_mb * 1024 * 1024) for i in range(args.large)]
    started = time.perf_counter()
    upload(src, small)
    upload(src, large, threads=2)
    log(f"uploaded in {time.perf_counter() - started:.1f} s")
    full, full_seconds = full_run_figures(policy, args.objects + args.large)
    figures.update(full)
    figures.update(sweep_figures(policy, src, args.repeat, figures["first_sweep_rate"]))
    figures.update(incremental_figures(policy, src, small, args, full_seconds))
    figures.update(verify_figures(policy, dst, args.repeat))
    figures.update(encrypted_path(backup, args.repeat))
    figures["goals_met"] = goals_of(figures)


def main() -> int:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="reelflow-bench-backup-"))
    log(f"data in {tmp}; {args.objects} small objects of {args.small_bytes} B, {args.large} of {args.large_mb} MB")
    source, backup = setup_environment(tmp)
    figures: dict = {"objects": args.objects, "large_objects": args.large, "large_mb": args.large_mb,
                     "threads": THREADS, "repeat": args.repeat}
    try:
        measure(args, source, backup, figures)
    finally:
        source.stop()
        backup.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
