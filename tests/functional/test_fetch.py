"""The default processor against a real web site on loopback: fetch, retry, extract, refuse."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.crawlsite import CrawlSite, CrawlSiteConfig
from devstack.site import Hostile, PageKind, Site, SiteConfig
from worker.exceptions import OutOfTimeError
from worker.fetch import Fetcher, FetchError, FetchPolicy, TryAgain
from worker.netguard import BlockedURLError, NetPolicy
from worker.processor import TaskContext, process
from worker.tasks import Task

LOOPBACK = NetPolicy.from_cidrs(("127.0.0.0/8",))


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    config = SiteConfig(
        pages=40,
        seed=7,
        broken_share=0.25,
        page_bytes=(2_000, 6_000),
        retry_after_s=0,
        huge_bytes=8_000_000,
        bomb_bytes=64 * 1024 * 1024,
        drip_interval_s=0.2,
    )
    with Site(config) as running:
        yield running


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    sleeps: list[float] = []
    f = Fetcher(
        FetchPolicy(attempts=3, request_timeout_s=2.0, max_bytes=1_000_000, backoff_initial_s=0.01),
        LOOPBACK,
        sleep=sleeps.append,
    )
    yield f
    f.close()


def run(fetcher: Fetcher, url: str, seconds: float = 5.0) -> dict[str, Any]:
    return process(Task(0, url), TaskContext(fetcher, time.monotonic() + seconds))


def test_fetch_extracts_the_fields_of_a_page(site: Site, fetcher: Fetcher) -> None:
    index = site.pages_of(PageKind.OK)[0]
    info = site.page(index)
    row = run(fetcher, site.url(info.path))
    assert row["status"] == 200
    assert row["content_type"] == "text/html"
    assert (row["title"], row["description"], row["h1"]) == (info.title, info.description, info.h1)
    assert row["canonical"] == site.url(info.canonical) or row["canonical"] == info.canonical
    assert row["links"] == [site.url(p) for p in info.links]
    assert row["bytes"] == info.size
    assert row["text_length"] > 0
    assert "error" not in row


def test_fetch_follows_a_redirect_and_reports_the_final_url(site: Site, fetcher: Fetcher) -> None:
    index = site.pages_of(PageKind.OK)[0]
    row = run(fetcher, site.url(f"/go/{index}"))
    assert row["final_url"] == site.url(f"/page/{index}")
    assert row["status"] == 200


@pytest.mark.parametrize("kind", [PageKind.RATE_LIMITED, PageKind.UNAVAILABLE])
def test_fetch_retries_transient_statuses_then_succeeds(
    site: Site, fetcher: Fetcher, kind: PageKind
) -> None:
    index = site.pages_of(kind)[0]
    row = run(fetcher, site.url(f"/page/{index}"))
    assert row["status"] == 200
    assert row["attempts"] == 2


def test_fetch_for_a_crawl_leaves_a_retry_to_the_hosts_turn(site: Site, fetcher: Fetcher) -> None:
    path = f"/page/{site.pages_of(PageKind.RATE_LIMITED)[1]}"
    with pytest.raises(TryAgain) as again:
        fetcher.fetch(site.url(path), time.monotonic() + 5, same_host=True)
    assert (again.value.url, again.value.tries, again.value.wait_s) == (site.url(path), 1, 0)
    page = fetcher.fetch(site.url(path), time.monotonic() + 5, tries=1, same_host=True)
    assert page.status == 200


def test_fetch_for_a_crawl_gives_up_after_its_attempts_across_turns(
    site: Site, fetcher: Fetcher
) -> None:
    url = site.url(f"/page/{site.pages_of(PageKind.SERVER_ERROR)[2]}")
    with pytest.raises(FetchError, match="HTTP 500"):
        fetcher.fetch(url, time.monotonic() + 5, tries=2, same_host=True)


@pytest.mark.parametrize(
    ("kind", "error"), [(PageKind.NOT_FOUND, "HTTP 404"), (PageKind.SERVER_ERROR, "HTTP 500")]
)
def test_fetch_broken_pages_are_per_task_errors(
    site: Site, fetcher: Fetcher, kind: PageKind, error: str
) -> None:
    row = run(fetcher, site.url(f"/page/{site.pages_of(kind)[0]}"))
    assert error in row["error"]


def test_fetch_server_errors_are_retried_up_to_the_attempt_limit(
    site: Site, fetcher: Fetcher
) -> None:
    path = f"/page/{site.pages_of(PageKind.SERVER_ERROR)[1]}"
    before = site.hits[path]
    run(fetcher, site.url(path))
    assert site.hits[path] - before == 3


def test_fetch_unreachable_host_is_a_per_task_error(fetcher: Fetcher) -> None:
    row = run(fetcher, "http://127.0.0.1:9/nothing-listens-here")
    assert "ConnectionError" in row["error"]


def test_fetch_refuses_loopback_unless_allowed(site: Site) -> None:
    strict = Fetcher(FetchPolicy(), NetPolicy())
    try:
        row = run(strict, site.url("/page/0"))
    finally:
        strict.close()
    assert row["error"].startswith("blocked: address 127.0.0.1 is private")
    assert site.hits["/page/0"] >= 0


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (Hostile.REDIRECT_LOOP, "more than 5 redirects"),
        (Hostile.REDIRECT_METADATA, "blocked: address 169.254.169.254"),
        (Hostile.REDIRECT_FILE, "blocked: scheme 'file'"),
        (Hostile.HUGE, "over the 1000000 byte cap"),
        (Hostile.HUGE_CHUNKED, "over the 1000000 byte cap"),
        (Hostile.GZIP_BOMB, "over the 1000000 byte cap"),
        (Hostile.SLOW_DRIP, "body not read in time"),
        (Hostile.PNG, "not HTML: image/png"),
        (Hostile.JSON, "not HTML: application/json"),
        (Hostile.RESET, "body read failed"),
        (Hostile.LYING_LENGTH, "body read failed"),
    ],
)
def test_fetch_hostile_endpoints_cost_one_task_an_error(
    site: Site, fetcher: Fetcher, path: str, error: str
) -> None:
    row = run(fetcher, site.url(path))
    assert error in row["error"]


def test_fetch_malformed_html_still_extracts(site: Site, fetcher: Fetcher) -> None:
    row = run(fetcher, site.url(Hostile.MALFORMED))
    assert row["status"] == 200
    assert "error" not in row


def test_fetch_defers_the_task_when_the_leg_has_no_time_left(site: Site, fetcher: Fetcher) -> None:
    with pytest.raises(OutOfTimeError, match="no time left in the leg") as caught:
        run(fetcher, site.url("/page/1"), seconds=0.0)
    assert caught.value.tried is False


def test_fetch_defers_a_retry_that_cannot_fit_in_the_leg(site: Site) -> None:
    path = f"/page/{site.pages_of(PageKind.SERVER_ERROR)[2]}"
    slow_backoff = Fetcher(FetchPolicy(backoff_initial_s=5.0), LOOPBACK)
    try:
        with pytest.raises(OutOfTimeError, match="no time left to retry") as caught:
            run(slow_backoff, site.url(path), seconds=1.0)
    finally:
        slow_backoff.close()
    assert caught.value.tried is True


def test_fetch_connection_guard_refuses_a_private_peer_even_past_the_dns_check(
    site: Site,
) -> None:
    # As if DNS had answered a public address to the check, then a private one to connect.
    strict = Fetcher(FetchPolicy(), NetPolicy())
    try:
        with pytest.raises(BlockedURLError, match=r"127\.0\.0\.1 is private"):
            strict.session.get(site.url("/page/0"), timeout=2)
    finally:
        strict.close()


def test_fetch_for_a_crawl_hands_a_redirect_to_another_host_back(fetcher: Fetcher) -> None:
    with CrawlSite(CrawlSiteConfig(hosts=2, pages_per_host=3, calendar=False)) as crawl_site:
        start = crawl_site.url(0, "/go/1/0")
        with pytest.raises(TryAgain) as again:
            fetcher.fetch(start, time.monotonic() + 5, same_host=True)
        assert again.value.url == crawl_site.url(1, "/p/0")
        assert (again.value.hops, again.value.wait_s) == (1, 0)
        assert crawl_site.served()[crawl_site.url(1, "/p/0")] == 0  # not fetched here
