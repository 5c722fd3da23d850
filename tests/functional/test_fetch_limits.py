"""What a fetch may send and how long it may take: credentials across redirects, deadlines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.site import Hostile, Site, SiteConfig
from tests.functional.loopback import LoopbackServer, redirect, static
from worker.exceptions import OutOfTimeError
from worker.fetch import Fetcher, FetchPolicy
from worker.netguard import NetPolicy
from worker.processor import TaskContext, process
from worker.tasks import Task

LOOPBACK = NetPolicy.from_cidrs(("127.0.0.0/8",))
CREDENTIALS = {
    "Authorization": "Bearer secret",
    "Cookie": "session=secret",
    "Proxy-Authorization": "Basic c2VjcmV0",
}


@pytest.fixture
def origin() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.1") as server:
        yield server


@pytest.fixture
def elsewhere() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.2") as server:
        server.routes["/landing"] = static(b"<title>landed</title>")
        yield server


@pytest.fixture
def dripping_site() -> Iterator[Site]:
    with Site(SiteConfig(pages=1, drip_interval_s=0.1)) as site:
        yield site


def run(
    url: str, seconds: float = 5.0, headers: dict[str, str] | None = None, **policy: Any
) -> dict[str, Any]:
    fetcher = Fetcher(FetchPolicy(**policy), LOOPBACK, sleep=lambda _: None)
    task = Task(0, url, options={"headers": headers} if headers else {})
    try:
        return process(task, TaskContext(fetcher, time.monotonic() + seconds))
    finally:
        fetcher.close()


def test_fetch_cross_origin_redirect_drops_credential_headers(
    origin: LoopbackServer, elsewhere: LoopbackServer
) -> None:
    origin.routes["/start"] = redirect(elsewhere.url("/landing"))
    row = run(origin.url("/start"), headers={**CREDENTIALS, "X-Trace": "kept"})
    assert row["title"] == "landed"
    received = elsewhere.received[0].headers
    assert not {name.lower() for name in CREDENTIALS} & set(received)
    assert received["x-trace"] == "kept"


def test_fetch_redirect_to_another_port_is_cross_origin(origin: LoopbackServer) -> None:
    with LoopbackServer("127.0.0.1") as other_port:
        other_port.routes["/landing"] = static(b"<title>landed</title>")
        origin.routes["/start"] = redirect(other_port.url("/landing"))
        run(origin.url("/start"), headers=CREDENTIALS)
    assert "authorization" not in other_port.received[0].headers


def test_fetch_same_origin_redirect_keeps_credential_headers(origin: LoopbackServer) -> None:
    origin.routes["/start"] = redirect("/landing")
    origin.routes["/landing"] = static(b"<title>landed</title>")
    run(origin.url("/start"), headers=CREDENTIALS)
    assert origin.received[1].headers["authorization"] == "Bearer secret"


def test_fetch_sends_its_own_headers_and_a_tasks_header_in_any_case_replaces_its_own(
    origin: LoopbackServer,
) -> None:
    origin.routes["/page"] = static(b"<title>t</title>")
    run(origin.url("/page"), user_agent="baton-test")
    run(origin.url("/page"), headers={"user-agent": "the task's", "X-Trace": "1"})
    plain, given = origin.received[0].headers, origin.received[1].headers
    assert plain["user-agent"] == "baton-test"
    assert plain["accept"].startswith("text/html")
    assert given["user-agent"] == "the task's"
    assert given["x-trace"] == "1"
    assert "cookie" not in plain


def test_fetch_a_tasks_null_header_drops_the_fetchers_own(origin: LoopbackServer) -> None:
    origin.routes["/page"] = static(b"<title>t</title>")
    row = run(origin.url("/page"), headers={"Accept": None})  # type: ignore[dict-item]
    assert row["title"] == "t"
    assert "accept" not in origin.received[0].headers


def test_fetch_final_url_carries_no_credentials(origin: LoopbackServer) -> None:
    origin.routes["/start"] = redirect("/landing")
    origin.routes["/landing"] = static(b"<title>landed</title>")
    url = f"http://user:secret@127.0.0.1:{origin.port}/start"
    row = run(url)
    assert row["final_url"] == origin.url("/landing")


def test_fetch_links_and_canonical_carry_no_credentials(origin: LoopbackServer) -> None:
    origin.routes["/page"] = static(
        b'<link rel="canonical" href="/page?v=1">'
        b'<a href="/relative">r</a><a href="http://ann:pw@example.com/x">x</a>'
    )
    row = run(f"http://user:secret@127.0.0.1:{origin.port}/page")
    assert row["canonical"] == origin.url("/page?v=1")
    assert row["links"] == [origin.url("/relative"), "http://example.com/x"]


def test_fetch_slow_headers_end_at_the_request_timeout(dripping_site: Site) -> None:
    started = time.monotonic()
    row = run(dripping_site.url(Hostile.SLOW_HEADERS), attempts=1, request_timeout_s=1.0)
    assert row["error"] == "Timeout: no response within 1 s"
    assert time.monotonic() - started < 2.0


def test_fetch_slow_headers_past_the_leg_deadline_defer_the_task(dripping_site: Site) -> None:
    started = time.monotonic()
    with pytest.raises(OutOfTimeError, match="no response before the leg's deadline") as caught:
        run(dripping_site.url(Hostile.SLOW_HEADERS), seconds=1.0, request_timeout_s=30.0)
    assert caught.value.tried is True
    assert time.monotonic() - started < 2.0


def test_fetch_body_cut_at_the_deadline_is_not_taken_for_its_end(origin: LoopbackServer) -> None:
    def stall_after_100_bytes(handler: Any) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Connection", "close")  # no length: the body ends when the socket does
        handler.end_headers()
        handler.wfile.write(b"<title>partial</title>".ljust(100))
        handler.wfile.flush()
        origin.stopping.wait(5)
        handler.close_connection = True

    origin.routes["/stall"] = stall_after_100_bytes
    row = run(origin.url("/stall"), attempts=1, request_timeout_s=1.0)
    assert row["error"] == "body not read in time (100 bytes so far)"
