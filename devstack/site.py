"""A deterministic web site on loopback: linked pages, broken ones and hostile endpoints.

The demo, the integration tests and the benchmarks fetch from it instead of the
internet. Everything it serves follows from `SiteConfig` (same seed, same site), and
`Site.hits` counts requests per path so a test can assert how often a page was fetched.

Routes: `/` (an index), `/page/{i}` (the pages), `/go/{i}` (a 301 to `/page/{i}`, for
final-URL tests) and the `Hostile` endpoints under `/hostile/`.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import math
import random
import socket
import struct
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

from devstack.service import Service

__all__ = [
    "ClosableServer",
    "Hostile",
    "LatencyProfile",
    "PageInfo",
    "PageKind",
    "Site",
    "SiteConfig",
    "main",
]

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
METADATA_URL = "http://169.254.169.254/latest/meta-data/"
FILE_URL = "file:///etc/passwd"
_RESET_PAUSE_S = 0.1
"""Lets the client read the headers first, so the reset lands mid-body."""


class PageKind(StrEnum):
    OK = "ok"
    NOT_FOUND = "not_found"
    SERVER_ERROR = "server_error"
    UNAVAILABLE = "unavailable"
    """503 with Retry-After; serves the page after `transient_failures` attempts."""
    RATE_LIMITED = "rate_limited"
    """429 with Retry-After; serves the page after `transient_failures` attempts."""


_STATUS = {
    PageKind.OK: 200,
    PageKind.NOT_FOUND: 404,
    PageKind.SERVER_ERROR: 500,
    PageKind.UNAVAILABLE: 503,
    PageKind.RATE_LIMITED: 429,
}
TRANSIENT_KINDS = frozenset({PageKind.UNAVAILABLE, PageKind.RATE_LIMITED})


class Hostile(StrEnum):
    """Paths of the endpoints that misbehave on purpose, for the safe-fetch tests."""

    REDIRECT_LOOP = "/hostile/redirect-loop"
    REDIRECT_METADATA = "/hostile/redirect-metadata"
    REDIRECT_FILE = "/hostile/redirect-file"
    HUGE = "/hostile/huge"
    HUGE_CHUNKED = "/hostile/huge-chunked"
    SLOW_DRIP = "/hostile/slow-drip"
    RESET = "/hostile/reset"
    PNG = "/hostile/png"
    JSON = "/hostile/json"
    MALFORMED = "/hostile/malformed"
    NO_CONTENT_TYPE = "/hostile/no-content-type"
    WRONG_CONTENT_TYPE = "/hostile/wrong-content-type"
    GZIP_BOMB = "/hostile/gzip-bomb"
    LYING_LENGTH = "/hostile/lying-length"
    SLOW_HEADERS = "/hostile/slow-headers"
    """Drips its status line and headers a byte per `drip_interval_s`: no read ever times out."""
    DEEP_NESTING = "/hostile/deep-nesting"
    """100,000 nested <div> in 500 KB: quadratic for an HTML tree builder."""
    REBUILT_FORMATTING = "/hostile/rebuilt-formatting"
    """Formatting tags left open, rebuilt by the tree builder at every later paragraph."""


_LOOP_SECOND_HOP = "/hostile/redirect-loop/b"


@dataclass(frozen=True)
class LatencyProfile:
    """Latency added to every page response, to benchmark against a network-like delay.

    `sigma` 0 gives a fixed delay; otherwise each delay is lognormal around `median_s`,
    seeded by (seed, path, hit number) so a rerun sees the same delays whatever the
    thread scheduling.
    """

    median_s: float = 0.0
    sigma: float = 0.0
    max_s: float = 10.0

    def delay(self, seed: int, path: str, hit: int) -> float:
        if self.median_s <= 0:
            return 0.0
        if self.sigma <= 0:
            return min(self.median_s, self.max_s)
        rng = random.Random(f"{seed}:{path}:{hit}")
        return min(rng.lognormvariate(math.log(self.median_s), self.sigma), self.max_s)


@dataclass(frozen=True)
class SiteConfig:
    pages: int = 100
    seed: int = 0
    page_bytes: tuple[int, int] = (20_000, 80_000)
    links: tuple[int, int] = (5, 20)
    slow_share: float = 0.0
    slow_delay_s: float = 1.0
    broken_share: float = 0.0
    broken_kinds: tuple[PageKind, ...] = (
        PageKind.NOT_FOUND,
        PageKind.SERVER_ERROR,
        PageKind.UNAVAILABLE,
        PageKind.RATE_LIMITED,
    )
    """Broken pages take these kinds in turn."""
    transient_failures: int = 1
    retry_after_s: int = 1
    latency: LatencyProfile = field(default_factory=LatencyProfile)
    huge_bytes: int = 64 * MiB
    drip_interval_s: float = 0.5
    drip_bytes: int = 64
    bomb_bytes: int = 256 * MiB
    """What the gzip bomb expands to; about a thousandth of it goes over the wire."""
    max_in_flight: int = 0
    """A throttling origin: a page request that arrives while this many are being served
    is answered 429 at once (Retry-After: `retry_after_s`); 0 serves every request."""

    def __post_init__(self) -> None:
        problems = []
        if self.pages < 1:
            problems.append("pages must be >= 1")
        for name in ("page_bytes", "links"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                problems.append(f"{name} must be (low, high) with 0 <= low <= high")
        for name in ("slow_share", "broken_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be within [0, 1]")
        if not self.broken_kinds or PageKind.OK in self.broken_kinds:
            problems.append("broken_kinds must be non-empty and must not hold OK")
        if self.bomb_bytes < MiB:
            problems.append("bomb_bytes must be >= 1 MiB")
        if min(self.transient_failures, self.retry_after_s, self.huge_bytes, self.drip_bytes) < 0:
            problems.append("counts and sizes must be >= 0")
        if self.max_in_flight < 0:
            problems.append("max_in_flight must be >= 0 (0: no limit)")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class PageInfo:
    """What `/page/{index}` holds: what an extractor should find there."""

    index: int
    path: str
    kind: PageKind
    slow: bool
    title: str
    description: str
    canonical: str
    h1: str
    links: tuple[str, ...]
    """Paths of the outgoing links, in document order, all distinct."""
    size: int

    @property
    def status(self) -> int:
        """The status of the first request (transient kinds succeed later)."""
        return _STATUS[self.kind]


class Site(Service):
    """The site and its server; `with Site(config) as site:` serves it on a free port."""

    def __init__(self, config: SiteConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.config = config or SiteConfig()
        self._host = host
        self._port = port
        self._kinds, self._slow = _plan(self.config)
        self._rendered: dict[int, tuple[PageInfo, bytes]] = {}
        self._hits: Counter[str] = Counter()
        self._hits_lock = threading.Lock()
        self._in_flight = 0
        self._throttled = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("site already started")
        self._stopping.clear()
        self._rendered.clear()
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="baton-site",
            daemon=True,
        )
        self._thread.start()
        logger.debug("site serving %d pages at %s", self.config.pages, self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections (drips, keep-alives) and join every thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        server.drop_connections()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("site not started")
        return f"http://{self._host}:{self._server.server_port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def urls(self) -> list[str]:
        """Every page's URL, in index order (broken pages included)."""
        return [self.url(f"/page/{i}") for i in range(self.config.pages)]

    def pages_of(self, kind: PageKind) -> list[int]:
        return [i for i in range(self.config.pages) if self._kind(i) is kind]

    def slow_pages(self) -> list[int]:
        return sorted(self._slow)

    def page(self, index: int) -> PageInfo:
        return self._render(index)[0]

    @property
    def hits(self) -> Counter[str]:
        """Requests so far per path (query strings dropped); a snapshot."""
        with self._hits_lock:
            return Counter(self._hits)

    def reset_hits(self) -> None:
        """Forget the counts; transient pages fail again from the next request."""
        with self._hits_lock:
            self._hits.clear()
            self._throttled = 0

    @property
    def throttled(self) -> int:
        """Page requests answered 429 because `max_in_flight` were being served."""
        with self._hits_lock:
            return self._throttled

    def _enter(self) -> bool:
        """Count a page request in; False (and counted as throttled) if over the limit."""
        with self._hits_lock:
            limit = self.config.max_in_flight
            if limit and self._in_flight >= limit:
                self._throttled += 1
                return False
            self._in_flight += 1
            return True

    def _leave(self) -> None:
        with self._hits_lock:
            self._in_flight -= 1

    def _count(self, path: str) -> int:
        with self._hits_lock:
            self._hits[path] += 1
            return self._hits[path]

    def _kind(self, index: int) -> PageKind:
        return self._kinds.get(index, PageKind.OK)

    def _render(self, index: int) -> tuple[PageInfo, bytes]:
        cached = self._rendered.get(index)
        if cached is None:
            cached = _render_page(self.config, index, self._kind(index), index in self._slow, self)
            self._rendered[index] = cached
        return cached

    @cached_property
    def _bomb(self) -> bytes:
        # Concatenated gzip members decode as one stream: a 1 KiB member per MiB of zeros.
        member = gzip.compress(bytes(MiB), compresslevel=9, mtime=0)
        return member * (self.config.bomb_bytes // MiB)


def _plan(config: SiteConfig) -> tuple[dict[int, PageKind], frozenset[int]]:
    """Which pages are broken and which are slow; page 0, the home page, is always fine."""
    rng = random.Random(config.seed)
    others = list(range(1, config.pages))
    rng.shuffle(others)
    broken = others[: round(config.broken_share * config.pages)]
    kinds = {i: config.broken_kinds[n % len(config.broken_kinds)] for n, i in enumerate(broken)}
    slow_count = min(len(others), round(config.slow_share * config.pages))
    return kinds, frozenset(rng.sample(range(1, config.pages), slow_count))


# --- page content -------------------------------------------------------------------------

_ADJECTIVE_TEXT = (
    "quiet coastal modern seasonal practical hidden urban rural digital early northern "
    "southern careful open compact durable local global slow bright"
)
_NOUN_TEXT = (
    "harbour market garden railway library bakery workshop bridge orchard festival "
    "museum vineyard archive studio kitchen lighthouse observatory ferry bicycle river"
)
_WORD_TEXT = (
    "the a of and to in is was for on with as by at from that this it be are were have has "
    "not but or an which their its they more one all would there been if when will can "
    "about into time year people way day man thing woman life child world school state "
    "family student group country problem hand part place case week company system program "
    "question work government number night point home water room mother area money story "
    "fact month lot right study book eye job word business issue side kind head house "
    "service friend father power hour game line end member law car city community name "
    "president team minute idea kid body information back parent face others level office "
    "door health person art war history party result change morning reason research girl "
    "guy moment air teacher force education café naïve façade résumé Zürich jalapeño"
)
_ADJECTIVES, _NOUNS, _WORDS = (t.split() for t in (_ADJECTIVE_TEXT, _NOUN_TEXT, _WORD_TEXT))
_CSS = "body{font-family:sans-serif;max-width:44em;margin:auto;line-height:1.5}a{color:#1a5}"
_SCRIPT = "window.dataLayer=window.dataLayer||[];dataLayer.push({page:'article'});"


def _sentence(rng: random.Random, low: int = 8, high: int = 22) -> str:
    words = rng.choices(_WORDS, k=rng.randint(low, high))
    return " ".join(words).capitalize() + "."


def _render_page(
    config: SiteConfig, index: int, kind: PageKind, slow: bool, site: Site
) -> tuple[PageInfo, bytes]:
    rng = random.Random(f"{config.seed}:page:{index}")
    adjective, noun, other = rng.choice(_ADJECTIVES), rng.choice(_NOUNS), rng.choice(_NOUNS)
    h1 = f"The {adjective} {noun} and the {other}"
    title = f"{h1} | page {index}"
    description = _sentence(rng, 14, 24)
    path = f"/page/{index}"
    canonical = site.url(path)
    target = rng.randint(*config.page_bytes)
    count = min(config.pages - 1, rng.randint(*config.links))
    # Sample among the other pages: index j >= page index maps to j + 1.
    links = tuple(f"/page/{j + (j >= index)}" for j in rng.sample(range(config.pages - 1), count))

    parts = [
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        f"<title>{escape(title)}</title>\n",
        f'<meta name="description" content="{escape(description)}">\n',
        f'<link rel="canonical" href="{escape(canonical)}">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<style>{_CSS}</style>\n<script>{_SCRIPT}</script>\n</head>\n<body>\n",
        f'<header><p class="site">The baton test site</p></header>\n<main>\n<article>\n'
        f"<h1>{escape(h1)}</h1>\n",
    ]
    size = sum(len(p.encode()) for p in parts)
    pending = list(links)
    while pending or size < target:
        sentences = [_sentence(rng) for _ in range(rng.randint(3, 7))]
        hrefs = [pending.pop(0) for _ in range(min(len(pending), rng.randint(1, 3)))]
        slots = sorted(rng.randint(0, len(sentences)) for _ in hrefs)
        # Insert from the back so the links keep their order in the document.
        for slot, href in reversed(list(zip(slots, hrefs, strict=True))):
            anchor = " ".join(rng.choices(_WORDS, k=rng.randint(1, 4)))
            sentences.insert(slot, f'<a href="{href}">{anchor}</a>')
        paragraph = f"<p>{' '.join(sentences)}</p>\n"
        parts.append(paragraph)
        size += len(paragraph.encode())
    parts.append("</article>\n</main>\n<footer><p>Generated for testing.</p></footer>\n")
    parts.append("</body>\n</html>\n")
    body = "".join(parts).encode()
    info = PageInfo(index, path, kind, slow, title, description, canonical, h1, links, len(body))
    return info, body


def _error_page(status: int, reason: str) -> bytes:
    return f"<!doctype html><title>{status} {reason}</title><h1>{reason}</h1>\n".encode()


def _png(width: int = 32, height: int = 32) -> bytes:
    """A valid grayscale PNG, built by hand so no binary blob lives in the source."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data)
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    rows = b"".join(
        b"\x00" + bytes((x * 8 + y * 4) % 256 for x in range(width)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


_PNG = _png()
_FILLER = (b"<p>" + b"filler " * 60 + b"</p>\n") * 150
_MALFORMED = (
    b'<html><head><title>Broken <b>title</title><meta name="description" content="never '
    b"closed><body><h1>Heading<p>para <a href='/page/1'>one<a href=/page/2>two</div></span>"
    b"<table><tr><td>cell<p>\x00\xff\xfe invalid utf-8 \xc3\x28 <script>if (a < b) {</script"
    b'<!-- unterminated comment <a href="javascript:alert(1)">x</a> &bogus; &#xZZ;'
)
_DEEP_NESTING = b"<!doctype html><title>Deep</title><h1>Deep</h1>" + b"<div>" * 100_000 + b"x"
_REBUILT_FORMATTING = (
    b"<!doctype html><title>Rebuilt</title><h1>Rebuilt</h1><p>"
    + b"".join(b"<b id=%d>" % i for i in range(1_000))
    + b"</p>"
    + b"<p>x</p>" * 3_000
)
_JSON = json.dumps({"items": [{"id": i, "name": f"item {i}"} for i in range(20)]}).encode()


# --- the server ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "baton-site/1.0"
    disable_nagle_algorithm = True  # else keep-alive responses stall on delayed ACKs
    server: _Server

    def do_GET(self) -> None:
        site = self.server.site
        path = urlsplit(self.path).path
        hit = site._count(path)
        try:
            self._route(site, path, hit)
        except (ConnectionError, TimeoutError):
            logger.debug("site: client left during %s", path)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("site: " + format, *args)

    def _route(self, site: Site, path: str, hit: int) -> None:
        if path == "/":
            self._send(200, _index(site))
            return
        prefix, _, tail = path.rpartition("/")
        if prefix in ("/page", "/go") and tail.isdigit() and int(tail) < site.config.pages:
            if prefix == "/go":
                self._redirect(301, f"/page/{int(tail)}")
            else:
                self._page(site, int(tail), path, hit)
            return
        if path == _LOOP_SECOND_HOP:
            self._redirect(302, Hostile.REDIRECT_LOOP)
            return
        try:
            hostile = Hostile(path)
        except ValueError:
            self._send(404, _error_page(404, "Not Found"))
            return
        _HOSTILE_ROUTES[hostile](self, site)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str | None = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, status: int, location: str) -> None:
        self._send(status, _error_page(status, "Moved"), headers={"Location": location})

    def _page(self, site: Site, index: int, path: str, hit: int) -> None:
        if not site._enter():
            retry = {"Retry-After": str(site.config.retry_after_s)}
            self._send(429, _error_page(429, "Too many requests"), headers=retry)
            return
        try:
            self._serve_page(site, index, path, hit)
        finally:
            site._leave()

    def _serve_page(self, site: Site, index: int, path: str, hit: int) -> None:
        config = site.config
        info, body = site._render(index)
        delay = config.latency.delay(config.seed, path, hit)
        if info.slow:
            delay += config.slow_delay_s
        if delay > 0 and site._stopping.wait(delay):
            self.close_connection = True
            return
        status = info.status
        if info.kind in TRANSIENT_KINDS and hit > config.transient_failures:
            status = 200
        if status == 200:
            self._send(200, body)
        elif info.kind in TRANSIENT_KINDS:
            retry = {"Retry-After": str(config.retry_after_s)}
            self._send(status, _error_page(status, "Try again later"), headers=retry)
        else:
            self._send(status, _error_page(status, self.responses[status][0]))

    def _start_body(self, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _stream(self, site: Site, total: int, chunked: bool) -> None:
        sent = 0
        while sent < total:
            if site._stopping.is_set():
                self.close_connection = True
                return
            block = _FILLER[: total - sent]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            sent += len(block)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    # The Hostile endpoints, routed by _HOSTILE_ROUTES.

    def _redirect_loop(self, site: Site) -> None:
        self._redirect(302, _LOOP_SECOND_HOP)

    def _redirect_metadata(self, site: Site) -> None:
        self._redirect(302, METADATA_URL)

    def _redirect_file(self, site: Site) -> None:
        self._redirect(302, FILE_URL)

    def _huge(self, site: Site) -> None:
        total = site.config.huge_bytes
        self._start_body("text/html; charset=utf-8", {"Content-Length": str(total)})
        self._stream(site, total, chunked=False)

    def _huge_chunked(self, site: Site) -> None:
        self._start_body("text/html; charset=utf-8", {"Transfer-Encoding": "chunked"})
        self._stream(site, site.config.huge_bytes, chunked=True)

    def _slow_drip(self, site: Site) -> None:
        count = site.config.drip_bytes
        self._start_body("text/html; charset=utf-8", {"Content-Length": str(count)})
        for n in range(count):
            self.wfile.write(b"<" if n == 0 else b".")
            if n + 1 < count and site._stopping.wait(site.config.drip_interval_s):
                self.close_connection = True
                return

    def _reset(self, site: Site) -> None:
        self._start_body("text/html; charset=utf-8", {"Content-Length": str(len(_FILLER))})
        self.wfile.write(_FILLER[:1000])
        site._stopping.wait(_RESET_PAUSE_S)
        # Linger 0 turns the close into a RST; the real close happens when finish() drops
        # the socket's last file object.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _png(self, site: Site) -> None:
        self._send(200, _PNG, "image/png")

    def _json(self, site: Site) -> None:
        self._send(200, _JSON, "application/json")

    def _malformed(self, site: Site) -> None:
        self._send(200, _MALFORMED)

    def _no_content_type(self, site: Site) -> None:
        self._send(200, site._render(0)[1], content_type=None)

    def _wrong_content_type(self, site: Site) -> None:
        self._send(200, _PNG)

    def _gzip_bomb(self, site: Site) -> None:
        self._send(200, site._bomb, headers={"Content-Encoding": "gzip"})

    def _slow_headers(self, site: Site) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nok"
        for n in range(len(head)):
            self.wfile.write(head[n : n + 1])
            if site._stopping.wait(site.config.drip_interval_s):
                break
        self.close_connection = True

    def _deep_nesting(self, site: Site) -> None:
        self._send(200, _DEEP_NESTING)

    def _rebuilt_formatting(self, site: Site) -> None:
        self._send(200, _REBUILT_FORMATTING)

    def _lying_length(self, site: Site) -> None:
        body = _error_page(200, "Shorter than it says")
        self._start_body("text/html; charset=utf-8", {"Content-Length": str(len(body) * 10)})
        self.wfile.write(body)
        self.close_connection = True


_HOSTILE_ROUTES: dict[Hostile, Callable[[_Handler, Site], None]] = {
    Hostile.REDIRECT_LOOP: _Handler._redirect_loop,
    Hostile.REDIRECT_METADATA: _Handler._redirect_metadata,
    Hostile.REDIRECT_FILE: _Handler._redirect_file,
    Hostile.HUGE: _Handler._huge,
    Hostile.HUGE_CHUNKED: _Handler._huge_chunked,
    Hostile.SLOW_DRIP: _Handler._slow_drip,
    Hostile.RESET: _Handler._reset,
    Hostile.PNG: _Handler._png,
    Hostile.JSON: _Handler._json,
    Hostile.MALFORMED: _Handler._malformed,
    Hostile.NO_CONTENT_TYPE: _Handler._no_content_type,
    Hostile.WRONG_CONTENT_TYPE: _Handler._wrong_content_type,
    Hostile.GZIP_BOMB: _Handler._gzip_bomb,
    Hostile.LYING_LENGTH: _Handler._lying_length,
    Hostile.SLOW_HEADERS: _Handler._slow_headers,
    Hostile.DEEP_NESTING: _Handler._deep_nesting,
    Hostile.REBUILT_FORMATTING: _Handler._rebuilt_formatting,
}


def _index(site: Site) -> bytes:
    pages = "".join(f'<li><a href="/page/{i}">page {i}</a></li>' for i in range(site.config.pages))
    hostile = "".join(f'<li><a href="{h.value}">{h.name.lower()}</a></li>' for h in Hostile)
    return (
        f"<!doctype html><title>baton test site</title><h1>Pages</h1><ul>{pages}</ul>"
        f"<h2>Hostile endpoints</h2><ul>{hostile}</ul>\n"
    ).encode()


class ClosableServer(ThreadingHTTPServer):
    """A threading HTTP server that can be stopped mid-request: it tracks its open
    sockets, so `drop_connections` wakes every handler blocked on one before
    `server_close()` joins them. The sites of the test suite and benches serve on it."""

    daemon_threads = True
    request_queue_size = 128
    label = "site"
    """How its log lines name it."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(request, socket.socket):
            with self._open_lock:
                self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._open_lock:
                self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Wake every handler blocked on a socket, so server_close() can join it."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by its handler
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            logger.debug("%s: connection from %s dropped", self.label, client_address)
        else:
            logger.exception("%s: error serving %s", self.label, client_address)


class _Server(ClosableServer):
    def __init__(self, address: tuple[str, int], site: Site):
        self.site = site
        super().__init__(address, _Handler)


# --- command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Serve the site by hand: `python -m devstack.site --pages 300 --port 8000`."""
    parser = argparse.ArgumentParser(prog="python -m devstack.site", description=__doc__)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--page-kb", type=int, nargs=2, default=(20, 80), metavar=("MIN", "MAX"))
    parser.add_argument("--slow-share", type=float, default=0.0)
    parser.add_argument("--slow-delay", type=float, default=1.0, help="seconds")
    parser.add_argument("--broken-share", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="median added latency")
    parser.add_argument("--latency-sigma", type=float, default=0.0, help="0 = fixed latency")
    parser.add_argument("--max-in-flight", type=int, default=0, help="429 above this; 0 = off")
    parser.add_argument("--tasks", metavar="FILE", help="also write the page URLs as a JSON list")
    args = parser.parse_args(argv)
    config = SiteConfig(
        pages=args.pages,
        seed=args.seed,
        page_bytes=(args.page_kb[0] * 1000, args.page_kb[1] * 1000),
        slow_share=args.slow_share,
        slow_delay_s=args.slow_delay,
        broken_share=args.broken_share,
        latency=LatencyProfile(median_s=args.latency_ms / 1000, sigma=args.latency_sigma),
        max_in_flight=args.max_in_flight,
    )
    with Site(config, host=args.host, port=args.port) as site:
        if args.tasks:
            with open(args.tasks, "w", encoding="utf-8") as out:
                json.dump(site.urls(), out, indent=0)
            print(f"wrote {config.pages} URLs to {args.tasks}")
        print(f"serving {config.pages} pages at {site.base_url}/ (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
