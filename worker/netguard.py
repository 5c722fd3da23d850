"""Safe connections: refuse private, loopback, link-local and non-http(s) targets.

A connection resolves its host once, in its own connect (`_new_conn`), checks every
address the resolver gave, and connects only to a checked one. The address checked
is the address reached, so a resolver that answers a public address to one lookup
and a private one to the next (DNS rebinding) never gets a TCP or TLS handshake
with the private host. TLS still verifies the certificate against the host name.

ValueError
└── BlockedURLError      the target is not allowed: a permanent refusal
Exception
└── UnresolvedHostError  the host name did not resolve: worth retrying
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from worker import watchdog

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]
Resolver = Callable[[str, int, int, int], Sequence[AddrInfo]]
"""`socket.getaddrinfo(host, port, family, type)` or a stand-in for tests."""

ALLOW_HINT = "allow it with BATON_ALLOW_NETS"
LOOPBACK_HINT = ", or --allow-loopback for baton local"

EMBEDDING_NETS: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(cidr), name)
    for cidr, name in (
        ("::ffff:0:0:0/96", "IPv4-translated"),
        ("::/96", "IPv4-compatible"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("2001::/32", "Teredo"),
        ("2002::/16", "6to4"),
        ("fec0::/10", "site-local"),
    )
)
"""IPv6 ranges that reach IPv4 or private hosts although `is_global` may call them global."""


class BlockedURLError(ValueError):
    """The URL points somewhere the fetcher must not go."""


class UnresolvedHostError(Exception):
    """The host name has no address (yet): DNS failures are often transient.

    Not an OSError, so urllib3 does not wrap it: it reaches the fetcher as itself.
    """


@dataclass(frozen=True)
class NetPolicy:
    allow: tuple[IPNetwork, ...] = field(default=())
    resolve: Resolver = field(default=socket.getaddrinfo, compare=False, repr=False)

    @classmethod
    def from_cidrs(
        cls, cidrs: tuple[str, ...], resolve: Resolver = socket.getaddrinfo
    ) -> NetPolicy:
        try:
            return cls(tuple(ipaddress.ip_network(c, strict=False) for c in cidrs), resolve)
        except ValueError as exc:
            raise BlockedURLError(f"bad allow-list entry: {exc}") from exc

    def check_address(self, address: str) -> None:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allow):
            return
        hint = ALLOW_HINT + (LOOPBACK_HINT if ip.is_loopback else "")
        if isinstance(ip, ipaddress.IPv6Address):
            for net, name in EMBEDDING_NETS:
                if ip in net:
                    raise BlockedURLError(
                        f"address {ip} is in {net} ({name}), which can reach private "
                        f"IPv4 or site addresses ({hint})"
                    )
        if not ip.is_global or ip.is_multicast:
            raise BlockedURLError(
                f"address {ip} is private, loopback, link-local or reserved ({hint})"
            )

    def check_url(self, url: str) -> None:
        """The checks a URL allows before any connection: scheme, host and port."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise BlockedURLError(f"scheme {parts.scheme or '(none)'!r} is not http or https")
        if not parts.hostname:
            raise BlockedURLError(f"URL {url!r} has no host")
        try:
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError as exc:
            raise BlockedURLError(f"URL {url!r} has a bad port") from exc

    def addresses(self, host: str, port: int) -> Sequence[AddrInfo]:
        """Resolve once and check every answer; any refused address refuses the host."""
        try:
            infos = self.resolve(host, port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise UnresolvedHostError(f"cannot resolve {host!r}: {exc}") from exc
        if not infos:
            raise UnresolvedHostError(f"cannot resolve {host!r}: no addresses")
        for info in infos:
            self.check_address(str(info[4][0]))
        return infos


def guarded_pool_classes(
    policy: NetPolicy,
) -> dict[str, type[HTTPConnectionPool]]:
    """Connection pools whose connections go only to addresses the policy checked."""

    class GuardedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _pinned_socket(self, policy)

        def request(self, *args: Any, **kwargs: Any) -> None:
            _watch(self)
            super().request(*args, **kwargs)

    class GuardedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _pinned_socket(self, policy)

        def request(self, *args: Any, **kwargs: Any) -> None:
            _watch(self)
            super().request(*args, **kwargs)

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}


def _pinned_socket(connection: HTTPConnection, policy: NetPolicy) -> socket.socket:
    """urllib3's `create_connection`, connecting only to addresses the policy checked."""
    host = connection.host.strip("[]")
    infos = policy.addresses(host, connection.port or 80)
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            for option in connection.socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(connection.timeout)
            if connection.source_address:
                sock.bind(connection.source_address)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sys.audit("http.client.connect", connection, connection.host, connection.port)
        return sock
    if isinstance(error, TimeoutError):
        message = f"Connection to {host} timed out. (connect timeout={connection.timeout})"
        raise ConnectTimeoutError(connection, message) from error
    raise NewConnectionError(connection, f"Failed to establish a new connection: {error}")


def _watch(connection: HTTPConnection) -> None:
    """Put the connection's socket under the calling request's time limit, if it has one."""
    if watchdog.current() is None:
        return
    if connection.sock is None:
        connection.connect()
    if connection.sock is not None:
        watchdog.watch(connection.sock)
