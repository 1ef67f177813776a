"""The studio's upload, for the web benchmarks (bench/progress_ws.py, bench/load.py): the
browser's path done by Python step by step, boto3's upload_file, and the file to upload."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MIB = 1024**2


def upload_browser_path(*, origin: str, session, path: Path, parallel: int) -> tuple[float, float]:
    """Seconds from the first API call to the completed upload, doing what studio-upload.js does,
    and how many of them went to the studio API (start, signing, completing) rather than parts."""
    import threading

    import requests

    local = threading.local()
    api_s = 0.0
    data_head = path.open("rb").read(MIB)
    size = path.stat().st_size
    csrf = session.cookies["csrftoken"]
    api = {"X-CSRFToken": csrf, "Content-Type": "application/json"}
    t0 = time.monotonic()
    started = session.post(
        f"{origin}/studio/uploads/",
        headers=api,
        data=json.dumps(
            {
                "filename": path.name, "size": size, "lastModified": int(time.time() * 1000),
                "fingerprint": hashlib.sha256(data_head).hexdigest(), "contentType": "video/mp4",
                "title": "bench", "profile": "fast", "head": base64.b64encode(data_head[:1024]).decode(),
            }
        ),
    )  # fmt: skip
    started.raise_for_status()
    api_s += time.monotonic() - t0
    upload = started.json()
    part_size, total = upload["partSize"], upload["partsTotal"]
    pending = list(range(1, total + 1))
    urls: dict[int, str] = {int(n): u for n, u in upload.get("partUrls", {}).items()}

    def sign(first: int) -> None:
        nonlocal api_s
        t = time.monotonic()
        batch = [n for n in pending if n >= first and n not in urls][:20]
        answer = session.post(origin + upload["partsUrl"], headers=api, data=json.dumps({"parts": batch}))
        answer.raise_for_status()
        urls.update({int(n): u for n, u in answer.json()["urls"].items()})
        api_s += time.monotonic() - t

    def put(number: int) -> None:
        with path.open("rb") as f:
            f.seek((number - 1) * part_size)
            body = f.read(part_size)
        # A browser keeps its connections to S3 alive between parts; so does each thread here.
        if not hasattr(local, "http"):
            local.http = requests.Session()
        local.http.put(urls[number], data=body, timeout=300).raise_for_status()

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = []
        for number in pending:
            if number not in urls:
                sign(number)
            futures.append(pool.submit(put, number))
        for future in futures:
            future.result()
    t = time.monotonic()
    session.post(origin + upload["completeUrl"], headers=api, data="{}").raise_for_status()
    api_s += time.monotonic() - t
    return time.monotonic() - t0, api_s


def upload_boto3(*, path: Path, bucket: str, key: str) -> float:
    from core import s3

    t0 = time.monotonic()
    s3.client().upload_file(str(path), bucket, key)
    return time.monotonic() - t0


def make_upload_file(path: Path, size_mib: int) -> None:
    """An MP4 signature, then incompressible bytes (S3 stores them as they come)."""
    with path.open("wb") as f:
        f.write(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2")
        block = os.urandom(4 * MIB)
        for _ in range(size_mib // 4):
            f.write(block)
