"""robots.txt per origin, with RFC 9309's rules for a file that is missing or broken.

Parsing and matching are Protego's (Scrapy's parser: `*` and `$` wildcards, the
longest match wins and Allow wins a tie, percent-encoding compared normalised,
Crawl-delay, Sitemap lines). This module decides what a fetch means:

    2xx                    the file's rules (the first MAX_ROBOTS_BYTES of it)
    4xx (401 and 403 too)  UNAVAILABLE: no rules, crawl anything (RFC 9309 2.3.1.3)
    429, 5xx, no answer    UNREACHABLE: crawl nothing but robots.txt (2.3.1.4)
    over 5 redirects       UNAVAILABLE (2.3.1.2: "MAY assume ... unavailable")

429 is the one 4xx read as unreachable, as Google does: it asks the crawler to
slow down, so reading it as "no rules, crawl everything" would be the rudest
answer. A group applies to a crawler by its product token (the user agent up to
its first "/"), case-insensitively, else the `*` group; only the best-matching
group counts, so a group for this crawler replaces `*` rather than adding to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any
from urllib.parse import urljoin

import requests
from protego import Protego

from worker.crawl.urls import origin_of

MAX_ROBOTS_BYTES = 500 * 1024
"""RFC 9309 2.5: a crawler must parse at least 500 KiB; what follows is ignored."""
MAX_ROBOTS_REDIRECTS = 5
"""RFC 9309 2.3.1.2: follow at least five consecutive redirects."""
_CHUNK = 64 * 1024


class RobotsStatus(StrEnum):
    OK = "ok"
    UNAVAILABLE = "unavailable"
    """4xx: allow all (RFC 9309 2.3.1.3)."""
    UNREACHABLE = "unreachable"
    """5xx, 429 or a network error: disallow all (RFC 9309 2.3.1.4)."""


@dataclass(frozen=True)
class RobotsRules:
    """One origin's robots.txt as fetched once for a run (persisted with the run)."""

    origin: str
    status: RobotsStatus
    body: str = ""
    fetched_ms: int = 0

    def allowed(self, url: str, user_agent: str) -> bool:
        """Whether a normalised URL of this origin may be fetched (/robots.txt always may)."""
        if origin_of(url) != self.origin:
            raise ValueError(f"{url} is not on {self.origin}, whose robots.txt this is")
        if self.status is RobotsStatus.UNAVAILABLE:
            return True
        if self.status is RobotsStatus.UNREACHABLE:
            return url[len(self.origin) :].partition("?")[0] == "/robots.txt"
        return self._parsed.can_fetch(url, product_token(user_agent))

    def crawl_delay_s(self, user_agent: str) -> float | None:
        """The Crawl-delay of the group that applies to this crawler, if it gives one."""
        if self.status is not RobotsStatus.OK:
            return None
        return self._parsed.crawl_delay(product_token(user_agent))

    def sitemaps(self) -> list[str]:
        """The file's Sitemap: lines (they apply to every crawler)."""
        return list(self._parsed.sitemaps) if self.status is RobotsStatus.OK else []

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "status": self.status.value,
            "body": self.body,
            "fetched_ms": self.fetched_ms,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RobotsRules:
        origin, status, body, fetched_ms = d["origin"], d["status"], d["body"], d["fetched_ms"]
        if not (isinstance(origin, str) and isinstance(body, str) and type(fetched_ms) is int):
            raise ValueError(f"not a stored robots.txt: {sorted(d)}")
        return cls(origin, RobotsStatus(status), body, fetched_ms)

    @cached_property
    def _parsed(self) -> Protego:
        """Parsed on first use (not stored): the body is the record, rules derive from it."""
        return Protego.parse(self.body)


def product_token(user_agent: str) -> str:
    """`mybot` of `MyBot/1.2 (+https://example.com/bot)`, lowercased."""
    return user_agent.split("/", 1)[0].strip().lower()


def rules_from_response(origin: str, status: int | None, body: bytes, at_ms: int) -> RobotsRules:
    """What an answer to GET /robots.txt means; `status` None is a network error."""
    if status is None or status >= 500 or status == 429:
        return RobotsRules(origin, RobotsStatus.UNREACHABLE, fetched_ms=at_ms)
    if not 200 <= status < 300:
        return RobotsRules(origin, RobotsStatus.UNAVAILABLE, fetched_ms=at_ms)
    if len(body) > MAX_ROBOTS_BYTES:
        # a rule cut in half ("Disallow: /priv") would mean something else: drop it whole
        body = body[:MAX_ROBOTS_BYTES].rpartition(b"\n")[0]
    text = body.decode("utf-8-sig", errors="replace")
    return RobotsRules(origin, RobotsStatus.OK, text, at_ms)


def fetch_robots(
    session: requests.Session,
    origin: str,
    user_agent: str,
    timeout_s: float,
    at_ms: int,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> RobotsRules:
    """GET origin/robots.txt, following up to 5 redirects, reading at most MAX_ROBOTS_BYTES.

    Never raises for an HTTP or network problem, nor for a target the session's
    guard refuses (that maps to a status); `timeout_s` bounds the whole fetch,
    a body that drips in slower than that included.
    """
    deadline = clock() + timeout_s
    url = f"{origin}/robots.txt"
    headers = {"User-Agent": user_agent}
    try:
        for _ in range(MAX_ROBOTS_REDIRECTS + 1):
            left = deadline - clock()
            if left <= 0:
                break
            with session.get(
                url, headers=headers, timeout=left, allow_redirects=False, stream=True
            ) as response:
                if response.is_redirect:
                    url = urljoin(url, response.headers["Location"])
                    continue
                body = _read(response, deadline, clock)
                if body is None:
                    break
                return rules_from_response(origin, response.status_code, body, at_ms)
        else:  # more than five redirects (RFC 9309 2.3.1.2)
            return RobotsRules(origin, RobotsStatus.UNAVAILABLE, fetched_ms=at_ms)
    except (requests.RequestException, OSError, ValueError):
        pass  # ValueError: the session's network guard refused the address
    return rules_from_response(origin, None, b"", at_ms)


def _read(response: requests.Response, deadline: float, clock: Callable[[], float]) -> bytes | None:
    """Up to one byte past the cap (so a longer file is known to be cut), or None if late."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(_CHUNK):
        if clock() > deadline:
            return None
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ROBOTS_BYTES:
            break
    return b"".join(chunks)
