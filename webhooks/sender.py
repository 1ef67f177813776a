"""The one place webhooks touch HTTP: POST a signed body, classify the outcome.

Redirects are not followed, proxies from the environment are not used, and every connection
goes through webhooks.targets' checked connection classes (no private addresses unless allowed).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.timeout import Timeout

from webhooks import targets

EXCERPT_BYTES = 2048


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    excerpt: str
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and not self.error


class _CheckedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = targets.POOL_CLASSES


_session: requests.Session | None = None


def _session_get() -> requests.Session:
    # One session per process: connections to a receiver are kept alive between deliveries.
    global _session
    if _session is None:
        session = requests.Session()
        session.trust_env = False  # no proxies or .netrc from the environment
        adapter = _CheckedAdapter(max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _session = session
    return _session


def _refusal_in(exc: requests.ConnectionError) -> str:
    """The checked connection's refusal, if that is what failed the request (requests wraps
    urllib3's MaxRetryError, whose reason is the connection error)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return reason.refusal if isinstance(reason, targets.RefusedConnection) else ""


def _reason_text(exc: requests.RequestException) -> str:
    """What went wrong, without the URL: its path or query may itself be a credential, and this
    text is stored, shown and logged."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    text = str(reason if reason is not None else exc)
    text = re.sub(r"^\w+\(host='[^']*', port=\d+\): ", "", text)
    return re.sub(r"with url: \S+", "with url: (hidden)", text)


def _error_text(exc: requests.RequestException, *, connect_timeout: float, total_timeout: float) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return f"Could not connect within {connect_timeout:g} s."
    if isinstance(exc, requests.ReadTimeout):
        return f"No answer within {total_timeout:g} s."
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error: {_reason_text(exc)}"[:500]
    if isinstance(exc, requests.ConnectionError):
        refusal = _refusal_in(exc)
        if refusal:
            return f"Refused to connect: {refusal}"[:500]
        return f"Could not connect: {_reason_text(exc)}"[:500]
    return f"{type(exc).__name__}: {_reason_text(exc)}"[:500]


def post(
    *, url: str, body: bytes, headers: dict[str, str], connect_timeout: float, total_timeout: float
) -> Outcome:
    """POST `body` to `url` once. Never raises for what the receiver or the network does."""
    started = time.monotonic()

    def outcome(status_code: int | None, excerpt: str = "", error: str = "") -> Outcome:
        return Outcome(status_code, excerpt, error, int((time.monotonic() - started) * 1000))

    try:
        targets.url_check(url)
    except targets.TargetRefused as exc:
        return outcome(None, error=f"Refused to connect: {exc}"[:500])
    deadline = started + total_timeout
    try:
        with _session_get().post(
            url,
            data=body,
            headers=headers,
            timeout=Timeout(connect=connect_timeout, total=total_timeout),
            allow_redirects=False,
            stream=True,
        ) as response:
            chunks, size = [], 0
            try:
                for chunk in response.iter_content(chunk_size=512):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= EXCERPT_BYTES or time.monotonic() > deadline:
                        break
            except requests.RequestException:
                pass  # the status line is the answer; an unreadable body only shortens the excerpt
            excerpt = b"".join(chunks)[:EXCERPT_BYTES].decode("utf-8", errors="replace")
            status = response.status_code
            error = ""
            if 300 <= status < 400:
                location = response.headers.get("Location", "")
                error = (
                    f"Answered {status} (redirect to {location or 'nowhere'}); redirects are not "
                    "followed: register the final URL."
                )[:500]
            elif not 200 <= status < 300:
                error = f"Answered HTTP {status}."
            return outcome(status, excerpt, error)
    except requests.RequestException as exc:
        return outcome(
            None, error=_error_text(exc, connect_timeout=connect_timeout, total_timeout=total_timeout)
        )
