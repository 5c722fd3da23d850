"""URL normalisation, scope and partitioning: what makes two links one page, and whose it is.

`normalise` is the crawl's identity for a page: the seen-set hashes its output,
so every spelling of one URL must normalise to one string, and it runs on every
link of every page (a few microseconds each). It parses with ada (the WHATWG
parser browsers and Node.js use: scheme and host case, IDNA, default ports, dot
segments, IPv4 forms) and then applies RFC 3986 section 6.2.2 on top: escapes of
unreserved characters decoded, other escapes upper-cased. w3lib's
`canonicalize_url` does similar work at about four times the cost per URL and
re-encodes the query beyond what 6.2.2 calls safe, so it is not used here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from functools import cache
from typing import TYPE_CHECKING

import ada_url
from publicsuffixlist import PublicSuffixList

from worker.crawl.modes import QueryMode, Scope

if TYPE_CHECKING:
    from worker.crawl.spec import CrawlSpec

MAX_URL_LENGTH = 2083
"""Longer URLs are refused (Scrapy's URLLENGTH_LIMIT): they are nearly always traps."""

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def normalise(url: str, *, query: QueryMode = QueryMode.SORT) -> str | None:
    """The canonical spelling of an http(s) URL, or None for one a crawl never fetches.

    None: not http(s) (javascript:, mailto:, ftp:, ...), unparseable, longer than
    MAX_URL_LENGTH, or carrying userinfo (credentials in a link are a leak or a
    phishing trick, never a page to crawl). The fragment is dropped, a host's
    trailing dot too (one DNS name), and an empty query with its "?".
    """
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        return None
    try:
        href = ada_url.normalize_url(url.strip())
    except ValueError:
        return None
    if not href.startswith(("http://", "https://")):
        return None
    href = href.partition("#")[0]
    start = href.index("://") + 3
    slash = href.find("/", start)  # ada always gives http(s) URLs a path
    authority, rest = href[start:slash], href[slash:]
    if "@" in authority:
        return None
    host, port = _split_authority(authority)
    host = host.rstrip(".") if not host.startswith("[") else host
    if not host:
        return None
    path, _, search = rest.partition("?")
    return f"{href[:start]}{host}{port}{_escapes(path)}{_query(search, query)}"


def _split_authority(authority: str) -> tuple[str, str]:
    """("host", ":port" or "") of a normalised authority; an IPv6 host keeps its brackets."""
    if authority.startswith("["):
        end = authority.index("]") + 1
        return authority[:end], authority[end:]
    host, colon, port = authority.partition(":")
    return host, colon + port


def _escapes(text: str) -> str:
    return _ESCAPE.sub(_escape, text) if "%" in text else text


def _escape(match: re.Match[str]) -> str:
    byte = int(match.group(1), 16)
    return chr(byte) if byte in _UNRESERVED else "%" + match.group(1).upper()


def _query(search: str, mode: QueryMode) -> str:
    """The normalised query with its "?", or "" when there is none.

    SORT also drops empty parameters (`a=1&&b=2`); blank values (`a=`) are kept,
    since `?q=` and no `q` can be different pages.
    """
    if mode is QueryMode.KEEP:
        return "?" + _escapes(search) if search else ""
    params = sorted(
        (_escapes(p) for p in search.split("&") if p), key=lambda p: p.partition("=")[::2]
    )
    return "?" + "&".join(params) if params else ""


def host_of(url: str) -> str:
    """The host of a normalised URL, without its port (an IPv6 host keeps its brackets)."""
    return _split_authority(_authority(url))[0]


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a normalised URL: the unit robots.txt applies to."""
    start = url.index("://") + 3
    slash = url.find("/", start)
    return url if slash < 0 else url[:slash]


def _authority(url: str) -> str:
    start = url.index("://") + 3
    slash = url.find("/", start)
    return url[start:] if slash < 0 else url[start:slash]


def registrable_domain(host: str) -> str:
    """The site a host belongs to: its eTLD+1 by the Public Suffix List.

    `www.example.co.uk` -> `example.co.uk`; `alice.github.io` -> `alice.github.io`
    (github.io is a suffix in the list's private section, so each user's pages are
    their own site). IP addresses, single-label hosts and hosts that are
    themselves a public suffix are their own registrable domain.

    The list is the `publicsuffixlist` package's bundled copy (no network at run
    time; the package has no dependencies and is republished as the list
    changes), so a two- or three-label rule of thumb does not misfile the many
    suffixes it would not know.
    """
    host = host.lower()
    if "." not in host or host.startswith("[") or _is_ip(host):
        return host
    return _suffixes().privatesuffix(host) or host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@cache
def _suffixes() -> PublicSuffixList:
    """Loaded on first use (about 40 ms, 2.5 MB), so legs that never crawl never pay."""
    return PublicSuffixList()


class ScopeFilter:
    """Whether a normalised URL is inside a spec's scope."""

    def __init__(self, spec: CrawlSpec) -> None:
        self.scope = spec.scope
        if spec.scope is Scope.HOSTS:
            self.sites = frozenset(spec.hosts)
        elif spec.scope is Scope.DOMAIN:
            self.sites = frozenset(registrable_domain(host_of(seed)) for seed in spec.seeds)
        else:
            self.sites = frozenset(host_of(seed) for seed in spec.seeds)
        self.allow = tuple(re.compile(p) for p in spec.allow)
        self.deny = tuple(re.compile(p) for p in spec.deny)

    def allows(self, url: str) -> bool:
        """In one of the sites; then matching an allow pattern (if any) and no deny pattern."""
        host = host_of(url)
        site = registrable_domain(host) if self.scope is Scope.DOMAIN else host
        if site not in self.sites:
            return False
        if self.allow and not any(p.search(url) for p in self.allow):
            return False
        return not any(p.search(url) for p in self.deny)


def partition(url: str, chains: int) -> int:
    """The chain that owns a URL's site: one site's pages (and politeness) stay on one chain.

    blake2b, not `hash()`: str hashes are salted per process, and every leg of
    every chain must agree.
    """
    if chains < 1:
        raise ValueError(f"chains must be at least 1, got {chains}")
    site = registrable_domain(host_of(url)).encode()
    return int.from_bytes(hashlib.blake2b(site, digest_size=8).digest(), "big") % chains
