"""Safe fetching: refuse private, loopback, link-local and non-http(s) targets.

The check runs twice: on the resolved addresses before a request (and before
every redirect hop), and on the peer address of every new connection, so a DNS
answer that changes between the two (rebinding) cannot reach a private address.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedURLError(ValueError):
    """The URL points somewhere the fetcher must not go."""


@dataclass(frozen=True)
class NetPolicy:
    allow: tuple[IPNetwork, ...] = field(default=())

    @classmethod
    def from_cidrs(cls, cidrs: tuple[str, ...]) -> NetPolicy:
        try:
            return cls(tuple(ipaddress.ip_network(c, strict=False) for c in cidrs))
        except ValueError as exc:
            raise BlockedURLError(f"bad allow-list entry: {exc}") from exc

    def check_address(self, address: str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allow):
            return
        if not ip.is_global or ip.is_multicast:
            raise BlockedURLError(f"address {ip} is private, loopback, link-local or reserved")

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise BlockedURLError(f"scheme {parts.scheme or '(none)'!r} is not http or https")
        host = parts.hostname
        if not host:
            raise BlockedURLError(f"URL {url!r} has no host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise BlockedURLError(f"URL {url!r} has a bad port") from exc
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as exc:
            raise BlockedURLError(f"cannot resolve {host!r}: {exc}") from exc
        for info in infos:
            self.check_address(str(info[4][0]))


def guarded_pool_classes(
    policy: NetPolicy,
) -> dict[str, type[HTTPConnectionPool]]:
    """Connection pools whose connections check the peer they actually reached."""

    class GuardedHTTPConnection(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            _check_peer(self, policy)

    class GuardedHTTPSConnection(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            _check_peer(self, policy)

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}


def _check_peer(connection: HTTPConnection, policy: NetPolicy) -> None:
    sock = connection.sock
    if sock is None:
        return
    try:
        policy.check_address(str(sock.getpeername()[0]))
    except BlockedURLError:
        connection.close()
        raise
