"""The SSRF guard: which addresses it refuses, how it says so, and where it connects."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tests.functional.loopback import LoopbackServer, static
from worker.fetch import Fetcher, FetchPolicy
from worker.netguard import AddrInfo, BlockedURLError, NetPolicy
from worker.processor import TaskContext, process
from worker.tasks import Task

PUBLIC_V4 = "93.184.215.14"


def answers(*addresses: str) -> Any:
    """A resolver that answers `addresses`, in order, and counts its calls."""

    def resolve(host: str, port: int, family: int = 0, kind: int = 0) -> Sequence[AddrInfo]:
        resolve.calls += 1  # type: ignore[attr-defined]
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port))
            for a in addresses
        ]

    resolve.calls = 0  # type: ignore[attr-defined]
    return resolve


def fails_then_answers(failures: int, address: str) -> Any:
    answer = answers(address)

    def resolve(host: str, port: int, family: int = 0, kind: int = 0) -> Sequence[AddrInfo]:
        resolve.calls += 1  # type: ignore[attr-defined]
        if resolve.calls <= failures:  # type: ignore[attr-defined]
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answer(host, port, family, kind)  # type: ignore[no-any-return]

    resolve.calls = 0  # type: ignore[attr-defined]
    return resolve


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        running.routes["/page"] = static(b"<title>here</title>")
        yield running


def run(net: NetPolicy, url: str) -> dict[str, Any]:
    fetcher = Fetcher(FetchPolicy(attempts=3, backoff_initial_s=0.01), net, sleep=lambda _: None)
    try:
        return process(Task(0, url), TaskContext(fetcher, time.monotonic() + 5))
    finally:
        fetcher.close()


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::a00:1",  # local-use NAT64
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::a00:1",  # IPv4-compatible 10.0.0.1
        "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
        "fec0::1",  # site-local
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    ],
)
def test_netpolicy_refuses_ipv6_forms_that_embed_ipv4_or_private_ranges(address: str) -> None:
    with pytest.raises(BlockedURLError, match="BATON_ALLOW_NETS"):
        NetPolicy().check_address(address)


def test_netpolicy_admits_a_public_ipv6_address() -> None:
    NetPolicy().check_address("2606:4700:4700::1111")


def test_netpolicy_allow_list_admits_an_embedding_range() -> None:
    NetPolicy.from_cidrs(("64:ff9b::/96",)).check_address("64:ff9b::808:808")


def test_netpolicy_refusal_names_the_settings_that_allow_loopback(server: LoopbackServer) -> None:
    row = run(NetPolicy(), server.url("/page"))
    assert row["error"] == (
        "blocked: address 127.0.0.1 is private, loopback, link-local or reserved "
        "(allow it with BATON_ALLOW_NETS, or --allow-loopback for baton local)"
    )


def test_netpolicy_refusal_of_a_private_address_names_the_allow_list() -> None:
    with pytest.raises(BlockedURLError) as caught:
        NetPolicy().check_address("10.1.2.3")
    assert str(caught.value) == (
        "address 10.1.2.3 is private, loopback, link-local or reserved "
        "(allow it with BATON_ALLOW_NETS)"
    )


def test_netpolicy_rebinding_answer_gets_no_connection_to_the_private_host(
    server: LoopbackServer,
) -> None:
    rebinding = answers(PUBLIC_V4, "127.0.0.1")
    row = run(NetPolicy(resolve=rebinding), f"http://rebind.test:{server.port}/page")
    assert row["error"].startswith("blocked: address 127.0.0.1 is private")
    assert server.connections == 0


def test_netpolicy_connection_goes_to_the_address_it_checked(server: LoopbackServer) -> None:
    resolve = answers("127.0.0.1")
    net = NetPolicy.from_cidrs(("127.0.0.0/8",), resolve=resolve)
    row = run(net, f"http://pinned.test:{server.port}/page")
    assert (row["status"], row["title"]) == (200, "here")
    assert resolve.calls == 1
    assert server.received[0].headers["host"] == f"pinned.test:{server.port}"


def test_netpolicy_dns_failure_is_its_own_error_kind() -> None:
    resolve = fails_then_answers(99, "127.0.0.1")
    row = run(NetPolicy(resolve=resolve), "http://nowhere.test/")
    assert row["error"].startswith("dns: cannot resolve 'nowhere.test'")
    assert row["error"].split(":", 1)[0] == "dns"  # the summary groups errors by this head


def test_netpolicy_dns_failure_is_retried() -> None:
    resolve = fails_then_answers(99, "127.0.0.1")
    row = run(NetPolicy(resolve=resolve), "http://nowhere.test/")
    assert (resolve.calls, row["attempts"]) == (3, 3)


def test_netpolicy_dns_failure_that_clears_succeeds_on_retry(server: LoopbackServer) -> None:
    resolve = fails_then_answers(1, "127.0.0.1")
    net = NetPolicy.from_cidrs(("127.0.0.0/8",), resolve=resolve)
    row = run(net, f"http://flaky-dns.test:{server.port}/page")
    assert (row["status"], row["attempts"]) == (200, 2)
