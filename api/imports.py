"""Uploads from a URL: the server fetches the file and stores it in the ingest bucket, then the
object-created path starts its job, as for any upload.

The fetch is SSRF-safe the way webhook deliveries are (webhooks.targets): the URL is checked
when it is given, and every connection (redirects included, at most five) goes through the
checked connection classes, which resolve the host themselves, refuse loopback, private,
link-local (cloud metadata), multicast and reserved addresses unless
WEBHOOKS_ALLOW_PRIVATE_TARGETS is set, and connect to the address they checked (no DNS
rebinding). Proxies from the environment are ignored. The body is streamed to S3 (never to a
local disk) and cut off past REELFLOW_MAX_UPLOAD_BYTES.
"""

import io
import logging
import urllib.parse
import uuid

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from requests.adapters import HTTPAdapter

from api.models import ImportState, UrlImport
from core import s3
from core.services import event_record
from pipeline import queues
from pipeline.events import UPLOAD_PREFIX, EventRejected, ObjectCreated, object_created_receive
from pipeline.models import IngestEvent, Profile
from studio import sniff
from studio.services import filename_clean
from webhooks import targets

logger = logging.getLogger(__name__)

_MAX_REDIRECTS = 5
_TIMEOUT = (5, 30)  # connect, between bytes


class ImportRefused(ValueError):
    pass


class _Checked(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = targets.POOL_CLASSES


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.max_redirects = _MAX_REDIRECTS
    session.mount("http://", _Checked(max_retries=0))
    session.mount("https://", _Checked(max_retries=0))
    return session


def url_import_start(*, publisher, url: str, title: str, profile_slug: str) -> UrlImport:
    try:
        targets.url_check(url)
    except targets.TargetRefused as exc:
        raise ImportRefused(str(exc).replace("Webhooks go to", "Reelflow fetches from")) from exc
    profile = Profile.objects.filter(slug=profile_slug, is_active=True).first()
    if profile is None:
        raise ImportRefused("Choose one of the encoding profiles offered.")
    with transaction.atomic():
        found = UrlImport.objects.create(publisher=publisher, url=url, title=title.strip()[:200], profile=profile)
        event_record(type="upload.import_requested", subject=found, actor=publisher, owner=publisher,
                     payload={"host": urllib.parse.urlsplit(url).hostname})  # fmt: skip
        queues.enqueue_on_commit(queues.Entry.URL_IMPORT, found.pk, rq_id=f"url-import-{found.pk}")
    return found


class _Limited(io.RawIOBase):
    """A response body as a file for boto3, cut off past `limit` bytes, starting with `head`."""

    def __init__(self, head: bytes, rest, limit: int) -> None:
        self._buffer, self._rest, self._limit, self.total = head, rest, limit, len(head)

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        if not self._buffer:
            self._buffer = next(self._rest, b"")
            self.total += len(self._buffer)
            if self.total > self._limit:
                raise ImportRefused(f"the file is larger than the {self._limit} bytes accepted")
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count


def _fetch_to_s3(found: UrlImport, key: str) -> int:
    with _session().get(found.url, stream=True, timeout=_TIMEOUT) as response:
        if response.status_code != 200:
            raise ImportRefused(f"the URL answered HTTP {response.status_code}, not 200")
        length = int(response.headers.get("Content-Length") or 0)
        if length > settings.REELFLOW_MAX_UPLOAD_BYTES:
            raise ImportRefused(f"the file is {length} bytes, over the {settings.REELFLOW_MAX_UPLOAD_BYTES} accepted")
        chunks = response.iter_content(chunk_size=1024 * 1024)
        head = b""
        while len(head) < sniff.HEAD_BYTES and (chunk := next(chunks, b"")):
            head += chunk
        if not head:
            raise ImportRefused("the URL answered an empty body")
        if sniff.container_of(head[: sniff.HEAD_BYTES]) is None:
            raise ImportRefused("what the URL answered does not start like any video container")
        body = _Limited(head, chunks, settings.REELFLOW_MAX_UPLOAD_BYTES)
        metadata = {"profile": found.profile.slug, "title": urllib.parse.quote(found.title or "", safe="")}
        s3.client().upload_fileobj(io.BufferedReader(body, buffer_size=1024 * 1024), settings.S3_BUCKET_INGEST, key,
                                   ExtraArgs={"Metadata": metadata})  # fmt: skip
        return body.total


def url_import_end(found: UrlImport, state: str, reason: str = "", **fields) -> None:
    found.state, found.failure_reason, found.finished_at = state, reason[:500], timezone.now()
    for name, value in fields.items():
        setattr(found, name, value)
    with transaction.atomic():
        found.save(update_fields=["state", "failure_reason", "finished_at", *fields])
        event_record(type="upload.import_failed" if state == ImportState.FAILED else "upload.imported",
                     subject=found, owner=found.publisher, payload={"reason": found.failure_reason})  # fmt: skip


def url_import_run(*, import_id: int) -> None:
    """Fetch, store and announce one import; a refusal ends it FAILED with the reason."""
    found = UrlImport.objects.select_related("publisher", "profile").filter(pk=import_id).first()
    if found is None or found.state not in (ImportState.QUEUED, ImportState.FETCHING):
        return
    found.state = ImportState.FETCHING
    found.save(update_fields=["state"])
    name = filename_clean(urllib.parse.unquote(urllib.parse.urlsplit(found.url).path.rsplit("/", 1)[-1]) or "import.mp4")
    key = f"{UPLOAD_PREFIX}{found.publisher.get_username()}/{uuid.uuid4().hex}/{name}"
    try:
        size = _fetch_to_s3(found, key)
    except (ImportRefused, requests.RequestException) as exc:
        reason = str(exc)
        if isinstance(exc, requests.ConnectionError) and "refused:" in reason:
            reason = "the URL's host is not a public address: Reelflow fetches from public addresses only"
        url_import_end(found, ImportState.FAILED, f"could not fetch the URL: {reason}")
        return
    try:
        event = object_created_receive(created=ObjectCreated(bucket=settings.S3_BUCKET_INGEST, key=key, size=size),
                                       source=IngestEvent.Source.STUDIO)  # fmt: skip
    except EventRejected as exc:
        url_import_end(found, ImportState.FAILED, f"Reelflow cannot process this file: {exc}", key=key, size=size)
        return
    asset = event.job.asset if event is not None and event.job is not None else None
    url_import_end(found, ImportState.DONE, key=key, size=size, asset=asset)
