"""Where webhooks may be sent: http(s) URLs whose host resolves to public addresses only.

Checked when an endpoint is saved and again on every attempt, at the moment of connecting: the
HTTP connection classes below resolve the host themselves, refuse the attempt if any address is
not public, and connect to the very addresses they checked, so a DNS answer that changes between
the check and the connection (DNS rebinding) cannot reach an internal service.
`WEBHOOKS_ALLOW_PRIVATE_TARGETS` turns the address check off (development, tests).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.timeout import _DEFAULT_TIMEOUT

SCHEMES = ("http", "https")


class TargetRefused(ValueError):
    """The URL may not receive webhooks; the message says why, for the person who entered it."""


def _address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for attribute, what in (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, attribute):
            return what
    if not address.is_global:
        return "not a public address"
    return None


def addresses_check(host: str, port: int) -> list[tuple]:
    """Resolve `host` and return getaddrinfo's entries; raise TargetRefused if it does not
    resolve or (unless private targets are allowed) any address is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"The host name {host} does not resolve ({exc}).") from exc
    if not settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS:
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
            problem = _address_problem(address)
            if problem:
                raise TargetRefused(
                    f"{host} resolves to {address}, {problem}. Webhooks go to public addresses only."
                )
    return infos


def url_check(url: str, *, resolve: bool = True) -> None:
    """Raise TargetRefused with a message a person can act on if `url` may not receive webhooks."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"This is not a valid URL ({exc}).") from exc
    if parts.scheme not in SCHEMES:
        raise TargetRefused("Use an http:// or https:// URL.")
    if not parts.hostname:
        raise TargetRefused("The URL has no host name.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused(
            "Put no user name or password in the URL: check the Reelflow-Signature header instead."
        )
    if resolve:
        addresses_check(parts.hostname, port or (443 if parts.scheme == "https" else 80))


class RefusedConnection(NewConnectionError):
    """The connection was not opened because the target failed the check."""

    def __init__(self, conn: HTTPConnection, refusal: str) -> None:
        super().__init__(conn, f"refused: {refusal}")
        self.refusal = refusal


def _connect_checked(conn: HTTPConnection) -> socket.socket:
    """Open the socket to an address that passed the check (what urllib3's _new_conn does,
    with our resolution in front of it)."""
    try:
        infos = addresses_check(conn._dns_host, conn.port)
    except TargetRefused as exc:
        raise RefusedConnection(conn, str(exc)) from exc
    last_error: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            if conn.timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(conn.timeout)
            sock.connect(sockaddr)
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            last_error = exc
            sock.close()
        else:
            return sock
    raise NewConnectionError(conn, f"Failed to establish a new connection: {last_error}")


class CheckedHTTPConnection(HTTPConnection):
    def _new_conn(self):
        return _connect_checked(self)


class CheckedHTTPSConnection(HTTPSConnection):
    def _new_conn(self):
        return _connect_checked(self)


class CheckedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = CheckedHTTPConnection


class CheckedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = CheckedHTTPSConnection


POOL_CLASSES = {"http": CheckedHTTPConnectionPool, "https": CheckedHTTPSConnectionPool}
