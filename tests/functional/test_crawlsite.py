"""The multi-host crawl site: what it serves over HTTP, what it counts, and its oracle."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urlsplit
from xml.etree import ElementTree

import pytest
from protego import Protego

from devstack import crawlsite
from devstack.crawlsite import (
    CrawlSite,
    CrawlSiteConfig,
    LatencyProfile,
    RobotsStyle,
    normalise,
    resolve,
)

QUICK = CrawlSiteConfig(crawl_delay_s=0.05)
SLOW = LatencyProfile(median_s=0.3)


@pytest.fixture(scope="module")
def site() -> Iterator[CrawlSite]:
    """The default four hosts, shared by the tests that only read."""
    with CrawlSite(QUICK) as served:
        yield served


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    """One GET, no redirects followed, no proxy: (status, headers lower-cased, body)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = conn.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        conn.close()


def concurrently(urls: list[str]) -> list[tuple[int, dict[str, str], bytes]]:
    """GET every URL at once, each on its own thread and connection."""
    results: list[tuple[int, dict[str, str], bytes] | None] = [None] * len(urls)
    barrier = threading.Barrier(len(urls))

    def fetch(i: int) -> None:
        barrier.wait()
        results[i] = get(urls[i])

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [value or "" for name, value in attrs if name == "href"]


def hrefs(body: bytes) -> list[str]:
    parser = _Hrefs()
    parser.feed(body.decode())
    return parser.hrefs


def test_crawlsite_hosts_answer_on_their_own_addresses(site: CrawlSite) -> None:
    assert site.shared_port  # Linux: 127.0.0.2, .3, ... all bind one port
    for i in range(4):
        url = site.host_url(i)
        assert urlsplit(url).hostname == f"127.0.0.{2 + i}"
        status, _, body = get(url + "/")
        assert status == 200
        assert f"<title>Host {i} home</title>".encode() in body
        assert site.hits[(i, "/")] >= 1
    with pytest.raises(ConnectionRefusedError):
        get(f"http://127.0.0.6:{urlsplit(site.host_url(0)).port}/")


def test_crawlsite_serves_the_links_its_model_holds(site: CrawlSite) -> None:
    for url in (site.url(0, "/"), site.url(1, "/p/0"), site.url(0, "/p/12")):
        _, _, body = get(url)
        assert hrefs(body) == [link.href for link in site.page(url).links]


def test_crawlsite_spellings_of_one_url_normalise_to_it(site: CrawlSite) -> None:
    home = site.url(0, "/")
    _, _, body = get(home)
    found = [resolve(home, href) for href in hrefs(body)]
    spellings = {h for h in hrefs(body) if resolve(home, h) == site.url(0, "/p/1")}
    assert len(spellings) >= 10
    assert {"./p/1#frag", "/p/./1", "/p/1?", f"HTTP://{site.host_url(0)[7:]}/p/1"} <= spellings
    assert found.count(home) == 2  # "#top" and "": the page itself
    assert None in found  # mailto:, javascript:, tel:

    page = site.url(1, "/p/0")
    across = {
        h for h in hrefs(get(page)[2]) if resolve(page, h) == site.url(2, "/p/1")
    }  # every spelling of the next host's /p/1
    assert len(across) >= 6
    assert f"//{site.host_url(2)[7:]}/p/1" in across


def test_crawlsite_query_parameters_in_either_order_are_one_url(site: CrawlSite) -> None:
    page = site.url(0, "/p/5")
    queries = [h for h in hrefs(get(page)[2]) if "q?" in h]
    assert len(queries) == 3
    assert {resolve(page, h) for h in queries} == {site.url(0, "/q?a=5&b=0")}
    assert len({resolve(page, h, query_sort=False) for h in queries}) == 2


def test_crawlsite_every_link_resolves_to_its_model_target(site: CrawlSite) -> None:
    pages = site.expected(max_depth=6, robots=False)
    checked = 0
    for url in pages:
        if urlsplit(url).hostname == "example.invalid":
            continue
        for link in site.page(url).links:
            assert resolve(url, link.href) == link.target, (url, link)
            checked += 1
    assert checked > 1000


def test_normalise_lowercases_drops_defaults_and_sorts_the_query() -> None:
    assert (
        normalise("HTTP://Example.COM:80/a/./b/../c?b=2&a=1#x") == "http://example.com/a/c?a=1&b=2"
    )
    assert normalise("https://example.com:443") == "https://example.com/"
    assert normalise("http://example.com:8080/p?") == "http://example.com:8080/p"
    assert normalise("http://example.com/p?b=2&a=1", query_sort=False) == (
        "http://example.com/p?b=2&a=1"
    )
    assert normalise("mailto:someone@example.com") is None
    assert normalise("javascript:void(0)") is None
    assert resolve("http://h/p/5", " ../p/1\n") == "http://h/p/1"
    assert resolve("http://h/p/5", "//OTHER:81/x/../y#z") == "http://other:81/y"


def test_crawlsite_robots_txt_per_host() -> None:
    config = CrawlSiteConfig(hosts=5, crawl_delay_s=0.05, calendar=False)
    with CrawlSite(config) as site:
        answers = [get(site.url(i, "/robots.txt")) for i in range(5)]
        assert [status for status, _, _ in answers] == [200, 200, 404, 500, 200]
        rules = [Protego.parse(body.decode()) for _, _, body in answers]
        assert not rules[0].can_fetch(site.url(0, "/private/1"), "baton")
        assert rules[0].can_fetch(site.url(0, "/p/1"), "baton")
        assert list(rules[0].sitemaps) == [site.url(0, "/sitemap.xml")]
        assert rules[1].crawl_delay("baton") == 0.05
        assert rules[1].can_fetch(site.url(1, "/private/1"), "baton")
        assert rules[4].can_fetch(site.url(4, "/private/1"), "baton")
        assert rules[4].crawl_delay("baton") is None
        assert [config.robots_style(i) for i in range(5)] == [*config.robots, RobotsStyle.PLAIN]


def test_crawlsite_oracle_obeys_robots(site: CrawlSite) -> None:
    obeyed = site.expected(max_depth=4)
    ignored = site.expected(max_depth=4, robots=False)
    assert not any("/private/" in url for url in obeyed)
    assert site.url(0, "/private/0") in ignored
    assert not any(url.startswith(site.host_url(3)) for url in obeyed)  # robots.txt 500
    assert any(url.startswith(site.host_url(3)) for url in ignored)
    assert any(url.startswith(site.host_url(2)) for url in obeyed)  # robots.txt 404
    assert site.url(0, "/missing") in obeyed  # a 404 is still a row


def test_crawlsite_oracle_keeps_to_the_scope(site: CrawlSite) -> None:
    seeds = site.seed_urls([0])
    alone = site.expected(seeds, 3)
    assert {urlsplit(url).hostname for url in alone} == {"127.0.0.2"}
    two = site.expected(seeds, 3, {0, "127.0.0.3"})
    assert {urlsplit(url).hostname for url in two} == {"127.0.0.2", "127.0.0.3"}
    everything = site.expected(site.seed_urls(), 3, robots=False)
    assert "example.invalid" not in {urlsplit(url).hostname for url in everything}


def test_crawlsite_links_reach_every_page_through_cycles() -> None:
    config = CrawlSiteConfig(hosts=3, pages_per_host=10, links_per_page=0, calendar=False)
    with CrawlSite(config) as site:
        rows = site.expected(site.seed_urls([0]), 40, range(3), robots=False)
        for host in range(3):
            for n in range(10):
                assert site.url(host, f"/p/{n}") in rows
        # The ring within a host and the ring across hosts both lead back to the start.
        assert site.url(0, "/p/0") in {link.target for link in site.page(site.url(0, "/p/9")).links}
        assert site.url(0, "/p/4") in {link.target for link in site.page(site.url(2, "/p/4")).links}


def test_crawlsite_oracle_depths_on_a_tiny_site() -> None:
    config = CrawlSiteConfig(
        hosts=2,
        pages_per_host=3,
        links_per_page=0,
        robots=(RobotsStyle.DISALLOW_PRIVATE,),
        rate_limited_pages=(),
        calendar=False,
    )
    with CrawlSite(config) as site:
        a, b = site.host_url(0), site.host_url(1)
        rows = site.expected(site.seed_urls([0]), 2, {0, 1})
    assert rows == {
        f"{a}/": 0,
        f"{a}/p/0": 1,
        f"{a}/p/1": 1,
        f"{a}/go/1/0": 1,  # redirects to {b}/p/0: one row, the links come from b's page
        f"{a}/missing": 1,  # (/private/0 is disallowed)
        f"{b}/p/0": 2,  # linked from a/p/0 by the ring across hosts
        f"{b}/p/1": 2,
        f"{a}/q?a=0&b=0": 2,
        f"{a}/p/2": 2,
        f"{a}/go/1/1": 2,
        f"{b}/": 2,  # "../" on b/p/0, read through the redirect
        f"{b}/q?a=0&b=1": 2,
    }


def test_crawlsite_redirects_go_between_hosts(site: CrawlSite) -> None:
    status, headers, _ = get(site.url(0, "/go/2/5"))
    assert status == 301
    assert headers["location"] == site.url(2, "/p/5")
    assert get(headers["location"])[0] == 200
    assert all(link.target is not None for link in site.page(site.url(0, "/")).links[:2])
    assert site.page(site.url(1, "/go/0/7")).location == site.url(0, "/p/7")


def test_crawlsite_oracle_can_keep_redirect_targets_out_of_scope() -> None:
    config = CrawlSiteConfig(hosts=2, robots=(), calendar=False)
    with CrawlSite(config) as site:
        followed = site.expected(site.seed_urls([0]), 2, {0})
        stopped = site.expected(site.seed_urls([0]), 2, {0}, redirects_leave_scope=False)
        redirect = site.url(0, "/go/1/0")
    # Both keep the redirecting row; only the first reads links on the other host's page.
    assert redirect in stopped
    assert set(stopped) < set(followed)


def test_crawlsite_rate_limited_page_answers_429_then_200(site: CrawlSite) -> None:
    url = site.url(2, "/p/3")
    assert url in site.rate_limited_urls()
    site.reset()
    status, headers, _ = get(url)
    assert (status, headers["retry-after"]) == (429, "1")
    assert get(url)[0] == 200
    assert get(site.url(2, "/p/4"))[0] == 200
    site.reset()
    assert get(url)[0] == 429


def test_crawlsite_throttle_answers_429_above_the_limit() -> None:
    config = CrawlSiteConfig(throttle_above=2, latency=SLOW, rate_limited_pages=())
    with CrawlSite(config) as site:
        answers = concurrently([site.url(0, f"/p/{n}") for n in range(4)])
        assert sorted(status for status, _, _ in answers) == [200, 200, 429, 429]
        assert all(h["retry-after"] == "1" for status, h, _ in answers if status == 429)
        assert site.throttled == {0: 2, 1: 0, 2: 0, 3: 0}
        assert get(site.url(0, "/p/0"))[0] == 200  # the burst is over


def test_crawlsite_counts_concurrent_requests_per_host() -> None:
    with CrawlSite(CrawlSiteConfig(latency=SLOW, rate_limited_pages=())) as site:
        concurrently([site.url(1, f"/p/{n}") for n in range(5)] + [site.url(2, "/p/0")])
        assert site.max_concurrent == {0: 0, 1: 5, 2: 1, 3: 0}
        site.reset()
        for n in range(3):
            get(site.url(1, f"/p/{n}"))
        assert site.max_concurrent[1] == 1
        served = site.requests(1)
        assert [r.target for r in served] == ["/p/0", "/p/1", "/p/2"]
        assert all(r.ended - r.started >= 0.25 for r in served)


def test_crawlsite_calendar_is_an_infinite_trap(site: CrawlSite) -> None:
    url = site.url(0, "/cal/2026/11")
    months = []
    for _ in range(30):
        status, _, body = get(url)
        assert status == 200
        months.append(url)
        nexts = [resolve(url, h) for h in hrefs(body)]
        url = next(u for u in nexts if u and u > url and "/cal/" in u)  # the next month
    assert months[-1] == site.url(0, "/cal/2029/04")
    assert len(set(months)) == 30


def test_crawlsite_oracle_bounds_the_calendar_by_depth(site: CrawlSite) -> None:
    seeds = site.seed_urls([0])
    for depth in range(1, 6):
        months = [u for u in site.expected(seeds, depth) if "/cal/" in u]
        assert len(months) == 2 * depth - 1  # depth 1 enters it; each level adds two
    with pytest.raises(ValueError, match="calendar"):
        site.expected(seeds, None)


def test_crawlsite_sitemap_lists_a_page_no_link_reaches(site: CrawlSite) -> None:
    status, _, body = get(site.url(0, "/sitemap.xml"))
    assert status == 200
    tag = "{http://www.sitemaps.org/schemas/sitemap/0.9}loc"
    locs = [loc.text for loc in ElementTree.fromstring(body).iter(tag)]
    orphan = site.url(0, "/orphan")
    assert orphan in locs
    assert site.url(0, "/private/1") in locs
    assert orphan not in site.expected(max_depth=8, robots=False)
    with_sitemaps = site.expected(max_depth=1, sitemaps=True)
    assert with_sitemaps[orphan] == 0
    assert with_sitemaps[site.url(0, "/p/2")] == 0  # listed as HTTP://.../p/./2
    assert site.url(0, "/private/1") not in with_sitemaps


def test_crawlsite_refuses_a_port_it_cannot_bind_for_every_host() -> None:
    with CrawlSite(CrawlSiteConfig(hosts=2)) as first:
        port = urlsplit(first.host_url(1)).port
        with pytest.raises(OSError, match="cannot bind"):
            CrawlSite(CrawlSiteConfig(hosts=2), port=port or 0).start()


def test_crawlsite_sequential_requests_never_count_as_overlapping() -> None:
    # A request is counted out before its answer leaves, so a client's next request, even on
    # a new connection, never finds the last one still in flight.
    with CrawlSite(CrawlSiteConfig(hosts=1, rate_limited_pages=())) as site:
        for n in range(40):
            get(site.url(0, f"/p/{n % 30}"))
        assert site.max_concurrent == {0: 1}
        assert len(site.requests()) == 40


def test_crawlsite_served_counts_answers_per_normalised_url() -> None:
    with CrawlSite(CrawlSiteConfig(hosts=2, rate_limited_pages=(1,))) as site:
        for target in ("/robots.txt", "/p/1", "/p/1", "/p/2?", "/p/./2", "/q?b=1&a=2"):
            get(site.url(0, target))
        assert site.served() == {
            site.url(0, "/p/1"): 1,  # its first answer was a 429
            site.url(0, "/p/2"): 2,  # one URL, two spellings on the wire
            site.url(0, "/q?a=2&b=1"): 1,
        }


def test_crawlsite_min_interval_measures_the_gap_between_requests() -> None:
    config = CrawlSiteConfig(crawl_delay_s=0.1)
    with CrawlSite(config) as site:
        assert b"Crawl-delay: 0.1" in get(site.url(1, "/robots.txt"))[2]
        assert site.min_interval(1) is None
        for n in range(3):
            time.sleep(0.1)
            get(site.url(1, f"/p/{n}"))
        interval = site.min_interval(1)
        assert interval is not None
        assert 0.1 <= interval < 0.5


def test_crawlsite_benchmark_config_serves_many_slow_hosts() -> None:
    config = CrawlSiteConfig.benchmark()
    assert config.hosts == 16
    assert config.latency is not None
    assert all(0.1 <= config.latency.delay(0, f"/p/{n}", 1) <= 0.3 for n in range(50))
    assert {config.robots_style(i) for i in range(16)} == {RobotsStyle.PLAIN}


def test_crawlsite_gives_each_host_its_own_port_if_one_port_will_not_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(crawlsite, "_BIND_ATTEMPTS", 0)  # as if every shared try failed
    with CrawlSite(CrawlSiteConfig(hosts=3)) as site:
        assert not site.shared_port
        assert len({urlsplit(site.host_url(i)).port for i in range(3)}) == 3
        assert [get(site.url(i, "/"))[0] for i in range(3)] == [200, 200, 200]
        assert site.url(1, "/p/0") in site.expected(site.seed_urls(), 1)


def test_crawlsite_a_plain_crawl_over_http_finds_exactly_the_oracle_rows(site: CrawlSite) -> None:
    # The robots.txt bodies (read by protego), the HTML and the 301s as served, against the
    # model the oracle walks; 429s retried at once.
    scope = {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
    robots: dict[str, Protego | None] = {}

    def allowed(url: str) -> bool:
        origin = url[: url.index("/", 7)]
        if origin not in robots:
            status, _, body = get(origin + "/robots.txt")
            text = body.decode() if status == 200 else "User-agent: *\nDisallow: /"
            robots[origin] = None if 400 <= status < 500 else Protego.parse(text)
        rules = robots[origin]
        return rules is None or rules.can_fetch(url, "baton")

    rows: dict[str, int] = {}
    queue = [(url, 0) for url in site.seed_urls()]
    seen = {url for url, _ in queue}
    while queue:
        url, depth = queue.pop(0)
        if urlsplit(url).hostname not in scope or not allowed(url):
            continue
        rows[url] = depth
        final, (status, headers, body) = url, get(url)
        while status in (301, 429):
            final = headers["location"] if status == 301 else final
            status, headers, body = get(final)
        if depth == 2 or status != 200:
            continue
        for href in hrefs(body):
            target = resolve(final, href)
            if target is not None and target not in seen:
                seen.add(target)
                queue.append((target, depth + 1))
    assert len(rows) > 40
    assert rows == site.expected(site.seed_urls(), 2)
