"""A deterministic web site of several hosts on loopback, for crawl tests and benchmarks.

Host i answers on 127.0.0.{2+i} (Linux routes all of 127.0.0.0/8 to loopback, no setup),
every host on one shared port when it can be bound (else a port per host, see
`CrawlSite.shared_port`). Everything served follows from `CrawlSiteConfig`; nothing here
contacts anything but those addresses. Routes on every host:

- `/` the home page; `/p/{n}` the pages (n < pages_per_host); `/q?...` a page whatever
  its query; `/go/{h}/{n}` a 301 to page n on host h; `/private/{k}` (k < 3), linked from
  host 0 only, where robots.txt disallows it; `/robots.txt` by the host's `RobotsStyle`.
- Host 0 also: `/sitemap.xml` (named by its robots.txt), `/orphan` (linked only from the
  sitemap), `/missing` (a linked 404) and, with `calendar`, `/cal/{y}/{mm}`: each month
  links to the next and the previous, without end (the trap a depth limit stops).

Links are the point: rings within and across hosts (cycles), random links by seed, one
URL in many spellings (case, dot segments, relative forms, fragments, an empty `?`, a
scheme-relative form, surrounding whitespace, query parameters in either order), links
out of scope (`example.invalid`) and links that are not http at all. `CrawlSite.page`
gives the model of any URL, each link with the absolute URL it must normalise to.

The oracle, `CrawlSite.expected`, walks that model breadth first with its own URL
normaliser (`normalise`, `resolve`: nothing from the worker) and rules:
- Seeds are depth 0. A URL at depth `max_depth` is a row but its links are not followed.
- A URL is a row if its host is in scope and (with `robots`) its host's robots.txt allows
  it: a 4xx robots.txt allows everything, a 5xx one nothing. Every fetched URL is a row,
  whatever its status (`/missing` is a 404 row).
- Redirects: the redirecting URL is the row (its final URL is the target); links are
  taken from the final page and resolved against the final URL, at the redirecting
  URL's depth + 1. The target itself is a row only if something links to it; every
  page links to itself (`#top`, an empty href), so an in-scope target is a row one level
  deeper. The site redirects only to hosts whose robots.txt allows `/p/` and sets no
  crawl delay, so no robots rule is at stake in a redirect hop. `redirects_leave_scope`
  False: a redirect to a host out of scope yields its row but no links.
- With `sitemaps`, the URLs in the sitemaps named by in-scope hosts' robots.txt enter at
  `sitemap_depth`, under the same scope and robots rules as any link.
- `max_pages` is not modelled: a crawl stopped by it yields a subset of the rows.

What the site counts, for the politeness invariants: `hits` per (host, path?query as
received); `max_concurrent` per host, a request counted in from its arrival until its
answer is ready (counted out before the first byte goes back, so a client's next request
never overlaps its last one falsely); `throttled`; `requests()` with start and end times
(`min_interval` for the crawl delay); `served()` answers per normalised URL, 429s left
out. `reset()` forgets all of it.
"""

from __future__ import annotations

import argparse
import logging
import random
import socketserver
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from html import escape
from http.server import BaseHTTPRequestHandler
from itertools import pairwise
from typing import Any, Protocol, Self
from urllib.parse import urljoin, urlsplit, urlunsplit

from devstack.service import Service
from devstack.site import ClosableServer, LatencyProfile

__all__ = [
    "CrawlSite",
    "CrawlSiteConfig",
    "Latency",
    "LatencyProfile",
    "Link",
    "Request",
    "Resource",
    "RobotsStyle",
    "UniformLatency",
    "main",
    "normalise",
    "resolve",
]

logger = logging.getLogger(__name__)

FIRST_ADDRESS = 2
"""Host i binds 127.0.0.{FIRST_ADDRESS + i}; 127.0.0.1 stays free for everything else."""
MAX_HOSTS = 255 - FIRST_ADDRESS
PRIVATE_PAGES = 3
CALENDAR_HOST = 0
SITEMAP_HOST = 0
OUT_OF_SCOPE = "example.invalid"
"""RFC 2606: never resolves, so a crawler that leaves the scope fails rather than escapes."""
_BIND_ATTEMPTS = 5
_MAX_REDIRECTS = 10
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NOT_PAGES = frozenset({"/robots.txt", "/sitemap.xml"})
_STRIPPED = "".join(map(chr, range(0x21)))
"""What the WHATWG URL parser strips from both ends of an href: C0 controls and space."""


class RobotsStyle(StrEnum):
    PLAIN = "plain"
    """200: allows everything."""
    DISALLOW_PRIVATE = "disallow_private"
    """200: `Disallow: /private/` for every agent."""
    CRAWL_DELAY = "crawl_delay"
    """200: allows everything, `Crawl-delay: {crawl_delay_s}` for every agent."""
    MISSING = "missing"
    """404: RFC 9309 says a crawler may then fetch everything."""
    ERROR = "error"
    """500: RFC 9309 says a crawler must then assume everything is disallowed."""


class Latency(Protocol):
    """How long a response waits; `LatencyProfile` (lognormal) and `UniformLatency` fit."""

    def delay(self, seed: int, path: str, hit: int) -> float: ...


@dataclass(frozen=True)
class UniformLatency:
    """A delay drawn uniformly from [low_s, high_s], seeded by (seed, host+path, hit)."""

    low_s: float
    high_s: float

    def __post_init__(self) -> None:
        if not 0 <= self.low_s <= self.high_s:
            raise ValueError("UniformLatency needs 0 <= low_s <= high_s")

    def delay(self, seed: int, path: str, hit: int) -> float:
        return random.Random(f"{seed}:{path}:{hit}").uniform(self.low_s, self.high_s)


@dataclass(frozen=True)
class CrawlSiteConfig:
    hosts: int = 4
    pages_per_host: int = 30
    links_per_page: int = 6
    """Random links per page, beside the fixed ones (rings, spellings, traps)."""
    seed: int = 0
    latency: Latency | None = None
    """Added to every response but a throttled 429; None: answer at once."""
    robots: tuple[RobotsStyle, ...] = (
        RobotsStyle.DISALLOW_PRIVATE,
        RobotsStyle.CRAWL_DELAY,
        RobotsStyle.MISSING,
        RobotsStyle.ERROR,
    )
    """Host i's robots.txt is robots[i]; hosts beyond the tuple get PLAIN."""
    crawl_delay_s: float = 1.0
    throttle_above: int | None = None
    """Answer 429 (Retry-After: `retry_after_s`) to a request that arrives while this many
    requests to its host are already in flight; None: never."""
    rate_limited_pages: tuple[int, ...] = (3, 17)
    """`/p/{n}` for these n, on every host, answer 429 to their first request, then 200;
    numbers beyond the pages name no page."""
    retry_after_s: int = 1
    calendar: bool = True
    calendar_start: tuple[int, int] = (2026, 11)

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.hosts <= MAX_HOSTS:
            problems.append(f"hosts must be within [1, {MAX_HOSTS}]")
        if self.pages_per_host < 2:
            problems.append("pages_per_host must be >= 2")
        if self.links_per_page < 0:
            problems.append("links_per_page must be >= 0")
        if self.crawl_delay_s < 0 or self.retry_after_s < 0:
            problems.append("crawl_delay_s and retry_after_s must be >= 0")
        if self.throttle_above is not None and self.throttle_above < 1:
            problems.append("throttle_above must be >= 1 (None: no throttle)")
        year, month = self.calendar_start
        if not (1 <= year <= 9999 and 1 <= month <= 12):
            problems.append("calendar_start must be (year 1-9999, month 1-12)")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def benchmark(cls, hosts: int = 16, pages_per_host: int = 30) -> Self:
        """Many hosts, pages delayed 100-300 ms, nothing a crawler must obey or dodge."""
        return cls(
            hosts=hosts,
            pages_per_host=pages_per_host,
            latency=UniformLatency(0.1, 0.3),
            robots=(),
            rate_limited_pages=(),
            calendar=False,
        )

    def robots_style(self, host: int) -> RobotsStyle:
        return self.robots[host] if host < len(self.robots) else RobotsStyle.PLAIN


@dataclass(frozen=True)
class Link:
    href: str
    """As written in the page (before HTML escaping)."""
    target: str | None
    """The absolute URL it must normalise to (query sorted); None: not http(s)."""


@dataclass(frozen=True)
class Resource:
    """What a URL is in the site's model."""

    status: int
    title: str = ""
    links: tuple[Link, ...] = ()
    location: str | None = None
    """A redirect's absolute target."""
    rate_limited: bool = False
    """Answers 429 to its first request."""


@dataclass(frozen=True)
class Request:
    """One request as the site saw it (monotonic clock)."""

    host: int
    target: str
    """Path and query as received."""
    status: int
    """0: the client left or the site stopped before an answer."""
    started: float
    ended: float


# --- URL normalisation (the oracle's own; independent of the worker's) -----------------


def normalise(url: str, query_sort: bool = True) -> str | None:
    """The URL as a crawler should key it; None unless absolute http(s) with a host.

    Lower-case scheme and host, no default port, no userinfo, dot segments resolved, an
    empty path as `/`, no fragment, no empty query, and with `query_sort` the `&`-separated
    parameters sorted as strings (the site never repeats a key, so any stable order works).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    query = parts.query
    if query_sort:
        query = "&".join(sorted(p for p in query.split("&") if p))
    return urlunsplit((scheme, netloc, _remove_dot_segments(parts.path) or "/", query, ""))


def resolve(base: str, href: str, query_sort: bool = True) -> str | None:
    """An href found on the page at `base`, as `normalise` keys it (WHATWG whitespace rules)."""
    href = href.strip(_STRIPPED).replace("\t", "").replace("\n", "").replace("\r", "")
    return normalise(urljoin(base, href), query_sort)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4; urljoin does it for relative references only."""
    output: list[str] = []
    for segment in path.split("/")[1:] if path.startswith("/") else path.split("/"):
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    trailing = path.endswith(("/.", "/..")) and output != []
    result = "/" + "/".join(output)
    return result + "/" if trailing and not result.endswith("/") else result


# --- the model -------------------------------------------------------------------------


class _Model:
    """Every URL of the site as a `Resource`, once the hosts' addresses are known."""

    def __init__(self, config: CrawlSiteConfig, netlocs: list[str]) -> None:
        self.config = config
        self.netlocs = netlocs
        self.by_netloc = {n: i for i, n in enumerate(netlocs)}
        self.redirect_hosts = [
            i
            for i in range(config.hosts)
            if config.robots_style(i)
            in (RobotsStyle.PLAIN, RobotsStyle.DISALLOW_PRIVATE, RobotsStyle.MISSING)
        ]
        self._cache: dict[tuple[int, str], Resource] = {}

    def url(self, host: int, path: str) -> str:
        return f"http://{self.netlocs[host]}{path}"

    def resource(self, host: int, target: str) -> Resource:
        key = (host, target)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._build(host, target)
        return found

    def _build(self, host: int, target: str) -> Resource:
        path = target.partition("?")[0]
        parts = path.split("/")[1:]
        n = self.config.pages_per_host
        if path == "/":
            return self._home(host)
        if len(parts) == 2 and parts[0] == "p" and _number(parts[1], n) is not None:
            return self._page(host, int(parts[1]))
        if path == "/q":
            return self._query_page(host)
        if len(parts) == 3 and parts[0] == "go":
            to_host, page = _number(parts[1], self.config.hosts), _number(parts[2], n)
            if to_host is not None and page is not None:
                return Resource(301, location=self.url(to_host, f"/p/{page}"))
        if len(parts) == 2 and parts[0] == "private":
            private = _number(parts[1], PRIVATE_PAGES)
            if private is not None:
                return self._private(host, private)
        if host == SITEMAP_HOST and path == "/orphan":
            links = (self._link(host, "/p/0"), self._link(host, "/p/1"))
            return Resource(200, f"Orphan on host {host}", links)
        calendar = host == CALENDAR_HOST and self.config.calendar
        if calendar and len(parts) == 3 and parts[0] == "cal" and _month(parts[2]):
            year = _number(parts[1], 10_000)
            if year:
                return self._calendar(host, year, int(parts[2]))
        return Resource(404, "Not found")

    def _link(self, host: int, path: str, href: str | None = None) -> Link:
        return Link(path if href is None else href, self.url(host, path))

    def _fixed_extras(self, host: int, base: str, number: int) -> list[Link]:
        """Links every page carries that must never be rows (or are the page itself)."""
        me = self.url(host, base)
        return [
            Link("#top", me),
            Link("", me),
            Link("mailto:webmaster@example.invalid", None),
            Link("javascript:void(0)", None),
            Link("tel:+15550100", None),
            Link(f"http://{OUT_OF_SCOPE}/p/{number}", f"http://{OUT_OF_SCOPE}/p/{number}"),
        ]

    def _home(self, host: int) -> Resource:
        links = [self._link(host, "/p/0", "p/0")]
        # The spellings showcase: one URL written every way a same-host link can be.
        links += [
            Link(href, self.url(host, "/p/1")) for href in self._spellings(host, "/", host, "/p/1")
        ]
        links += self._redirect_links(host, 0)
        if host == 0:
            links += [self._link(host, "/private/0"), self._link(host, "/missing")]
            if self.config.calendar:
                year, month = self.config.calendar_start
                links.append(self._link(host, f"/cal/{year}/{month:02d}"))
        links += self._fixed_extras(host, "/", 0)
        return Resource(200, f"Host {host} home", tuple(links))

    def _page(self, host: int, number: int) -> Resource:
        config = self.config
        hosts, pages = config.hosts, config.pages_per_host
        rng = random.Random(f"{config.seed}:{host}:{number}")
        base = f"/p/{number}"
        targets = [(host, (number + 1) % pages)]  # the ring within the host
        if hosts > 1:
            targets.append(((host + 1) % hosts, number))  # the ring across hosts
        for _ in range(config.links_per_page):
            other = hosts > 1 and rng.random() < 0.3
            targets.append((rng.randrange(hosts) if other else host, rng.randrange(pages)))
        links = [self._link(host, "/", "../")]
        for to_host, page in targets:
            href = rng.choice(self._spellings(host, base, to_host, f"/p/{page}"))
            links.append(Link(href, self.url(to_host, f"/p/{page}")))
        if number == 0 and hosts > 1:
            # Every cross-host spelling of the next host's /p/1.
            next_host = (host + 1) % hosts
            links += [
                Link(href, self.url(next_host, "/p/1"))
                for href in self._spellings(host, base, next_host, "/p/1")
            ]
        if number % 5 == 0:
            query = self.url(host, f"/q?a={number}&b={host}")
            links += [
                Link(f"/q?a={number}&b={host}", query),
                Link(f"/q?b={host}&a={number}", query),
                Link(f"../q?b={host}&a={number}#results", query),
            ]
        if number % 7 == 1:
            links += self._redirect_links(host, number)
        if host == 0 and number % 10 == 2:
            links.append(self._link(host, f"/private/{number % PRIVATE_PAGES}"))
        links += self._fixed_extras(host, base, number)
        rate_limited = number in config.rate_limited_pages
        return Resource(200, f"Host {host} page {number}", tuple(links), rate_limited=rate_limited)

    def _redirect_links(self, host: int, number: int) -> list[Link]:
        others = [h for h in self.redirect_hosts if h != host]
        if not others:
            return []
        to_host = others[number % len(others)]
        return [self._link(host, f"/go/{to_host}/{number}")]

    def _query_page(self, host: int) -> Resource:
        links = (self._link(host, "/", "./"), self._link(host, "/p/0", "p/0"))
        return Resource(200, f"Search on host {host}", links)

    def _private(self, host: int, number: int) -> Resource:
        links = [self._link(host, "/")]
        if number + 1 < PRIVATE_PAGES:
            links.append(self._link(host, f"/private/{number + 1}", f"{number + 1}"))
        return Resource(200, f"Private {number} on host {host}", tuple(links))

    def _calendar(self, host: int, year: int, month: int) -> Resource:
        links = [self._link(host, "/", "../../")]
        if (year, month) < (9999, 12):
            ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
            href = f"../{ny}/{nm:02d}" if ny != year else f"{nm:02d}"
            links.append(Link(href, self.url(host, f"/cal/{ny}/{nm:02d}")))
        if (year, month) > (1, 1):
            py, pm = (year - 1, 12) if month == 1 else (year, month - 1)
            links.append(self._link(host, f"/cal/{py}/{pm:02d}"))
        return Resource(200, f"Calendar {year}-{month:02d}", tuple(links))

    def _spellings(self, host: int, base: str, to_host: int, path: str) -> list[str]:
        """Ways to write the link from `base` on `host` to `path` on `to_host`."""
        netloc = self.netlocs[to_host]
        head, _, leaf = path.rpartition("/")
        across = [
            f"http://{netloc}{path}",
            f"HTTP://{netloc}{path}",
            f"Http://{netloc}{path}#top",
            f"http://{netloc}{head}/./{leaf}",
            f"http://{netloc}{head}/x/../{leaf}",
            f"http://{netloc}{path}?",
            f"//{netloc}{path}",
        ]
        if to_host != host:
            return across
        directory = base.rpartition("/")[0]
        up = "../" * directory.count("/")
        same = [
            path,
            up + path[1:],
            ("./" + leaf if directory == head else "./" + up + path[1:]) + "#frag",
            f"{head}/./{leaf}",
            f"{head}/x/../{leaf}",
            f"{path}?",
            f"{path}#section-2",
            f" {path}\n",
            across[1],
            across[6],
        ]
        if directory == head:
            same.append(leaf)
        return same

    def robots(self, host: int) -> tuple[int, str]:
        style = self.config.robots_style(host)
        if style is RobotsStyle.MISSING:
            return 404, "Not found\n"
        if style is RobotsStyle.ERROR:
            return 500, "Internal server error\n"
        lines = [f"# robots.txt for host {host}", "User-agent: *"]
        if style is RobotsStyle.DISALLOW_PRIVATE:
            lines.append("Disallow: /private/")
        else:
            lines.append("Disallow:")
        if style is RobotsStyle.CRAWL_DELAY:
            lines.append(f"Crawl-delay: {self.config.crawl_delay_s:g}")
        if host == SITEMAP_HOST:
            lines += ["", f"Sitemap: {self.url(host, '/sitemap.xml')}"]
        return 200, "\n".join(lines) + "\n"

    def allows(self, host: int, path: str) -> bool:
        style = self.config.robots_style(host)
        if style is RobotsStyle.ERROR:
            return False
        return not (style is RobotsStyle.DISALLOW_PRIVATE and path.startswith("/private/"))

    def sitemaps(self, host: int) -> list[str]:
        status, text = self.robots(host)
        if status != 200:
            return []
        return [
            line.split(":", 1)[1].strip()
            for line in text.splitlines()
            if line.startswith("Sitemap:")
        ]

    def sitemap_urls(self, host: int) -> list[str]:
        """The `<loc>`s of host's /sitemap.xml; an empty list where it has none."""
        if host != SITEMAP_HOST:
            return []
        last = self.config.pages_per_host - 1
        netloc = self.netlocs[host]
        return [
            self.url(host, "/p/0"),
            self.url(host, f"/p/{last}"),
            f"HTTP://{netloc}/p/./2",
            self.url(host, "/orphan"),
            self.url(host, "/private/1"),
        ]

    def sitemap_xml(self, host: int) -> str | None:
        urls = self.sitemap_urls(host)
        if not urls:
            return None
        locs = "".join(f"  <url><loc>{escape(u)}</loc></url>\n" for u in urls)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
            f"{locs}</urlset>\n"
        )

    def locate(self, url: str) -> tuple[int, str] | None:
        """(host, path?query) of a URL on the site, or None."""
        parts = urlsplit(url)
        host = self.by_netloc.get(parts.netloc.lower())
        if host is None:
            return None
        return host, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _number(text: str, below: int) -> int | None:
    """A canonical decimal (no sign, no leading zero) below `below`, else None."""
    if not text.isdigit() or not text.isascii() or str(int(text)) != text:
        return None
    value = int(text)
    return value if value < below else None


def _month(text: str) -> bool:
    return len(text) == 2 and text.isdigit() and text.isascii() and 1 <= int(text) <= 12


# --- the site --------------------------------------------------------------------------


class CrawlSite(Service):
    """The site and its servers; `with CrawlSite(config) as site:` serves every host."""

    def __init__(self, config: CrawlSiteConfig | None = None, port: int = 0) -> None:
        self.config = config or CrawlSiteConfig()
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._servers: list[_HostServer] = []
        self._threads: list[threading.Thread] = []
        self._model: _Model | None = None
        hosts = self.config.hosts
        self._hits: Counter[tuple[int, str]] = Counter()
        self._in_flight = [0] * hosts
        self._max_concurrent = [0] * hosts
        self._throttled = [0] * hosts
        self._requests: list[Request] = []
        self.shared_port = True
        """False if the hosts could not all bind one port and each has its own."""

    def start(self) -> Self:
        if self._servers:
            raise RuntimeError("crawl site already started")
        self._stopping.clear()
        self._servers = self._bind()
        self._model = _Model(self.config, [f"{s.address}:{s.server_port}" for s in self._servers])
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"baton-crawlsite-{server.host}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        logger.debug("crawl site serving %d hosts: %s", self.config.hosts, self.seed_urls())
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and join every thread."""
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
            server.drop_connections()
            server.server_close()
        for thread in self._threads:
            thread.join()
        self._servers, self._threads = [], []

    def _bind(self) -> list[_HostServer]:
        addresses = [address(i) for i in range(self.config.hosts)]
        attempts = 1 if self._port else _BIND_ATTEMPTS
        for _ in range(attempts):
            servers: list[_HostServer] = []
            try:
                for i, addr in enumerate(addresses):
                    port = servers[0].server_port if servers else self._port
                    servers.append(_HostServer(addr, port, i, self))
                return servers
            except OSError as exc:
                logger.debug("crawl site: one port for every host failed: %s", exc)
                for server in servers:
                    server.server_close()
        if self._port:
            raise OSError(f"cannot bind every host on port {self._port}")
        logger.warning("crawl site: each host gets its own port")
        self.shared_port = False
        return [_HostServer(addr, 0, i, self) for i, addr in enumerate(addresses)]

    @property
    def model(self) -> _Model:
        if self._model is None or not self._servers:
            raise RuntimeError("crawl site not started")
        return self._model

    def host_url(self, host: int) -> str:
        """`http://127.0.0.{2+host}:{port}`, no trailing slash."""
        return f"http://{self.model.netlocs[host]}"

    def hostname(self, host: int) -> str:
        return address(host)

    def url(self, host: int, path: str) -> str:
        return self.host_url(host) + path

    def seed_urls(self, hosts: Iterable[int] | None = None) -> list[str]:
        """The home pages of `hosts` (default all), normalised."""
        chosen = range(self.config.hosts) if hosts is None else hosts
        return [self.url(i, "/") for i in chosen]

    def page(self, url: str) -> Resource:
        """What `url` is in the model (resolved against nothing: pass it absolute)."""
        located = self.model.locate(url)
        if located is None:
            raise ValueError(f"{url} is not on this site")
        return self.model.resource(*located)

    def rate_limited_urls(self) -> list[str]:
        return [
            self.url(h, f"/p/{n}")
            for h in range(self.config.hosts)
            for n in self.config.rate_limited_pages
            if n < self.config.pages_per_host
        ]

    # --- what the site saw

    @property
    def hits(self) -> Counter[tuple[int, str]]:
        """Requests so far per (host, path?query as received); a snapshot."""
        with self._lock:
            return Counter(self._hits)

    @property
    def max_concurrent(self) -> dict[int, int]:
        """The most requests in flight at once, per host (every host listed)."""
        with self._lock:
            return dict(enumerate(self._max_concurrent))

    @property
    def throttled(self) -> dict[int, int]:
        """Requests answered 429 because `throttle_above` were in flight, per host."""
        with self._lock:
            return dict(enumerate(self._throttled))

    def requests(self, host: int | None = None) -> list[Request]:
        """Every finished request in the order they ended (optionally one host's)."""
        with self._lock:
            return [r for r in self._requests if host is None or r.host == host]

    def served(self) -> Counter[str]:
        """Answers per normalised URL, 429s (and cut requests) left out, robots.txt and
        sitemap.xml too: a crawl that fetched each URL once has every count at 1."""
        served: Counter[str] = Counter()
        for r in self.requests():
            if r.status not in (0, 429) and r.target not in _NOT_PAGES:
                served[normalise(self.url(r.host, r.target)) or r.target] += 1
        return served

    def min_interval(self, host: int) -> float | None:
        """The shortest time between two successive request starts on `host` (the crawl
        delay a crawler kept); None with fewer than two requests."""
        starts = sorted(r.started for r in self.requests(host))
        return min((b - a for a, b in pairwise(starts)), default=None)

    def reset(self) -> None:
        """Forget what the site saw; rate-limited pages answer 429 again."""
        with self._lock:
            self._hits.clear()
            self._max_concurrent = list(self._in_flight)
            self._throttled = [0] * self.config.hosts
            self._requests.clear()

    def _enter(self, host: int, target: str) -> tuple[int, int]:
        """Count a request in: (its hit number, requests in flight on its host with it)."""
        with self._lock:
            self._hits[(host, target)] += 1
            self._in_flight[host] += 1
            in_flight = self._in_flight[host]
            self._max_concurrent[host] = max(self._max_concurrent[host], in_flight)
            return self._hits[(host, target)], in_flight

    def _leave(self, host: int, target: str, status: int, started: float) -> None:
        with self._lock:
            self._in_flight[host] -= 1
            self._requests.append(Request(host, target, status, started, time.monotonic()))

    def _count_throttled(self, host: int) -> None:
        with self._lock:
            self._throttled[host] += 1

    # --- the oracle

    def expected(
        self,
        seeds: Iterable[str] | None = None,
        max_depth: int | None = 2,
        scope_hosts: Collection[int | str] | None = None,
        *,
        robots: bool = True,
        query_sort: bool = True,
        sitemaps: bool = False,
        sitemap_depth: int = 0,
        redirects_leave_scope: bool = True,
    ) -> dict[str, int]:
        """Every URL a correct crawl yields, normalised, with its breadth-first depth.

        `scope_hosts` holds host numbers or hostnames (default: the seeds' hosts); the
        rules are in the module docstring. No depth limit is refused if the calendar is on.
        `redirects_leave_scope` False: a redirect to a host out of scope is a row without
        links (for a crawler that will not read pages its scope excludes).
        """
        if max_depth is None and self.config.calendar:
            raise ValueError("the calendar is infinite: give max_depth")
        model = self.model
        starts = [u for u in (normalise(s, query_sort) for s in seeds or self.seed_urls()) if u]
        scope = self._scope(starts, scope_hosts)

        def admitted(url: str) -> bool:
            parts = urlsplit(url)
            if parts.hostname not in scope:
                return False
            located = model.locate(url)
            return not (robots and located and not model.allows(located[0], parts.path))

        levels: dict[int, list[str]] = {0: starts}
        if sitemaps:
            for host in range(self.config.hosts):
                if address(host) in scope and model.sitemaps(host):
                    found = (normalise(u, query_sort) for u in model.sitemap_urls(host))
                    levels.setdefault(sitemap_depth, []).extend(u for u in found if u)
        rows: dict[str, int] = {}
        seen: set[str] = set()
        queue: deque[tuple[str, int]] = deque()
        depth = 0
        while queue or any(d >= depth for d in levels):
            if not queue or queue[0][1] >= depth:
                for url in levels.pop(depth, []):
                    if url not in seen:
                        seen.add(url)
                        queue.append((url, depth))
                depth += 1
                continue
            url, at = queue.popleft()
            if not admitted(url):
                continue
            if max_depth is not None and at > max_depth:
                continue  # a sitemap entered deeper than the limit
            rows[url] = at
            if max_depth is not None and at >= max_depth:
                continue
            final, resource = self._follow(url)
            if not redirects_leave_scope and urlsplit(final).hostname not in scope:
                continue
            for link in resource.links:
                target = resolve(final, link.href, query_sort)
                if target is not None and target not in seen:
                    seen.add(target)
                    queue.append((target, at + 1))
        return rows

    def _scope(self, starts: list[str], scope_hosts: Collection[int | str] | None) -> set[str]:
        if scope_hosts is None:
            return {h for h in (urlsplit(s).hostname for s in starts) if h}
        return {address(h) if isinstance(h, int) else h.lower() for h in scope_hosts}

    def _follow(self, url: str) -> tuple[str, Resource]:
        """The final URL and its resource, following the model's redirects."""
        for _ in range(_MAX_REDIRECTS):
            located = self.model.locate(url)
            if located is None:
                return url, Resource(0)  # off the site: a crawler's fetch fails, no links
            resource = self.model.resource(*located)
            if resource.location is None:
                return url, resource
            url = resource.location
        return url, Resource(0)


def address(host: int) -> str:
    return f"127.0.0.{FIRST_ADDRESS + host}"


# --- the servers -----------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "baton-crawlsite/1.0"
    disable_nagle_algorithm = True  # else keep-alive responses stall on delayed ACKs
    server: _HostServer

    def do_GET(self) -> None:
        site, host, target = self.server.site, self.server.host, self.path
        started = time.monotonic()
        hit, in_flight = site._enter(host, target)
        answer = None
        try:
            answer = self._answer(site, host, target, hit, in_flight)
        finally:
            # Counted out before the first byte goes back: a client holding its answer
            # never finds its request still in flight (no false overlap with its next one).
            site._leave(host, target, answer.status if answer else 0, started)
        if answer is None:
            self.close_connection = True
            return
        try:
            self._send(answer)
        except (ConnectionError, TimeoutError):
            logger.debug("crawl site: client left during %s", target)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("crawl site: " + format, *args)

    def _answer(
        self, site: CrawlSite, host: int, target: str, hit: int, in_flight: int
    ) -> _Answer | None:
        """What to send; None if the site stopped first."""
        config, model = site.config, site.model
        retry = {"Retry-After": str(config.retry_after_s)}
        if config.throttle_above is not None and in_flight > config.throttle_above:
            site._count_throttled(host)
            return _Answer(429, _html("Too many requests", ""), headers=retry)
        if config.latency is not None:
            delay = config.latency.delay(config.seed, f"{host}{target}", hit)
            if delay > 0 and site._stopping.wait(delay):
                return None
        path = target.partition("?")[0]
        if path == "/robots.txt":
            status, text = model.robots(host)
            return _Answer(status, text.encode(), "text/plain; charset=utf-8")
        if path == "/sitemap.xml" and (xml := model.sitemap_xml(host)) is not None:
            return _Answer(200, xml.encode(), "application/xml")
        resource = model.resource(host, target)
        if resource.rate_limited and hit == 1:
            return _Answer(429, _html("Too many requests", ""), headers=retry)
        if resource.location is not None:
            headers = {"Location": resource.location}
            return _Answer(resource.status, _html("Moved", ""), headers=headers)
        links = "".join(
            f'<li><a href="{escape(link.href)}">link {i}</a></li>\n'
            for i, link in enumerate(resource.links)
        )
        return _Answer(resource.status, _html(resource.title, f"<ul>\n{links}</ul>\n"))

    def _send(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def _html(title: str, body: str) -> bytes:
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n</head>\n<body>\n<h1>{escape(title)}</h1>\n"
        f"<p>A page of the baton crawl test site.</p>\n{body}</body>\n</html>\n"
    ).encode()


class _HostServer(ClosableServer):
    label = "crawl site"

    def __init__(self, addr: str, port: int, host: int, site: CrawlSite) -> None:
        self.address = addr
        self.host = host
        self.site = site
        super().__init__((addr, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the address up (getfqdn): skip the resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.address
        self.server_port = self.socket.getsockname()[1]


# --- command line ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Serve the site by hand: `python -m devstack.crawlsite --hosts 4 --port 8000`."""
    parser = argparse.ArgumentParser(prog="python -m devstack.crawlsite", description=__doc__)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--pages", type=int, default=30, help="per host")
    parser.add_argument("--links", type=int, default=6, help="random links per page")
    parser.add_argument("--port", type=int, default=0, help="0: a free one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, nargs=2, metavar=("MIN", "MAX"))
    parser.add_argument("--crawl-delay", type=float, default=1.0, help="seconds, host 1")
    parser.add_argument("--throttle-above", type=int, help="429 above this many in flight")
    parser.add_argument("--no-calendar", action="store_true", help="no infinite calendar")
    parser.add_argument("--all-plain", action="store_true", help="every robots.txt allows all")
    args = parser.parse_args(argv)
    low, high = args.latency_ms or (0.0, 0.0)
    config = CrawlSiteConfig(
        hosts=args.hosts,
        pages_per_host=args.pages,
        links_per_page=args.links,
        seed=args.seed,
        latency=UniformLatency(low / 1000, high / 1000) if args.latency_ms else None,
        crawl_delay_s=args.crawl_delay,
        throttle_above=args.throttle_above,
        calendar=not args.no_calendar,
    )
    if args.all_plain:
        config = replace(config, robots=())
    with CrawlSite(config, port=args.port) as site:
        print(f"serving {config.hosts} hosts x {config.pages_per_host} pages (Ctrl-C to stop):")
        for url in site.seed_urls():
            print(f"  {url}")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
