"""A crawl spec: what a crawl run starts from, how far it goes, and how politely.

One schema for the three ways in: a `NAME.crawl.json` upload, the manual
payload's `"crawl"` object, and `baton crawl URL... [options]`. Validation is
strict and happens before anything starts: an unknown field, a seed that is not
an http(s) URL or a pattern that does not compile is a ValueError naming the
field, the value and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from worker.config import BUILTIN_PROCESSORS
from worker.crawl.modes import QueryMode, Scope
from worker.crawl.urls import host_of, normalise

__all__ = [
    "MAX_PAGES_LIMIT",
    "MAX_SEEDS",
    "MAX_SPEC_BYTES",
    "SPEC_FIELDS",
    "SPEC_SUFFIX",
    "CrawlSpec",
    "QueryMode",
    "Scope",
    "parse_crawl_spec",
    "parse_spec_file",
]

SPEC_SUFFIX = ".crawl.json"
"""An upload under tasks/ with this suffix is a crawl spec, not a task list."""
MAX_PAGES_LIMIT = 10_000_000
"""Per run; indices of a chain's log are offsets below this."""
MAX_SEEDS = 1000
MAX_SPEC_BYTES = 256 * 1024
MAX_DEPTH_LIMIT = 1000
MAX_PATTERNS = 100
"""Per list (allow, deny, hosts): each pattern is tried on every link found."""
MAX_PER_HOST_CONCURRENCY = 64
MAX_PER_HOST_DELAY_MS = 60_000
MAX_USER_AGENT_CHARS = 200

_PROCESSOR = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_NOT_IN_HOST = re.compile(r"[/?#@\\\s]")
_Choice = TypeVar("_Choice", Scope, QueryMode)


@dataclass(frozen=True)
class CrawlSpec:
    seeds: tuple[str, ...]
    """Normalised at parse time; http(s) only, duplicates dropped."""
    max_depth: int = 3
    """Links followed from a seed: 0 crawls the seeds only."""
    max_pages: int = 10_000
    scope: Scope = Scope.HOST
    hosts: tuple[str, ...] = ()
    """Non-empty iff scope is HOSTS; lowercased, IDNA (punycode)."""
    allow: tuple[str, ...] = ()
    """Regexes searched in the normalised URL: if any are given, one must match."""
    deny: tuple[str, ...] = ()
    """Regexes searched in the normalised URL: none may match."""
    robots: bool = True
    per_host_concurrency: int = 8
    """Scrapy's default per domain."""
    per_host_delay_ms: int = 0
    """The larger of this and robots.txt's Crawl-delay applies."""
    user_agent: str = "baton-crawler/0.3"
    query: QueryMode = QueryMode.SORT
    sitemaps: bool = False
    """Also seed from each seed host's /sitemap.xml and its robots.txt Sitemap: lines."""
    processor: str | None = None
    """`module:function`; None: the default page fetcher."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, absent fields left out; parse_crawl_spec(spec.as_dict()) == spec."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == ():
                continue  # absent: what the parser would default it to
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def digest(self) -> str:
        """Pins a manual crawl run's identity the way an ETag pins a list's."""
        text = json.dumps(self.as_dict(), sort_keys=True)
        return f'"crawl-{hashlib.sha256(text.encode()).hexdigest()[:24]}"'


SPEC_FIELDS: frozenset[str] = frozenset(f.name for f in fields(CrawlSpec))


def parse_crawl_spec(value: Any, what: str) -> CrawlSpec:
    """Validate a spec (or the payload's `crawl` object) strictly; ValueError says why."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(value).__name__}")
    unknown = value.keys() - SPEC_FIELDS
    if unknown:
        raise ValueError(
            f"{what} has unknown fields {sorted(unknown)} (allowed: {sorted(SPEC_FIELDS)})"
        )
    query = _choice(value, "query", QueryMode, what)
    scope = _choice(value, "scope", Scope, what)
    hosts = _hosts(value, scope, what)
    return CrawlSpec(
        seeds=_seeds(value, query, what),
        max_depth=_number(value, "max_depth", 0, MAX_DEPTH_LIMIT, what),
        max_pages=_number(value, "max_pages", 1, MAX_PAGES_LIMIT, what),
        scope=scope,
        hosts=hosts,
        allow=_patterns(value, "allow", what),
        deny=_patterns(value, "deny", what),
        robots=_flag(value, "robots", what),
        per_host_concurrency=_number(
            value, "per_host_concurrency", 1, MAX_PER_HOST_CONCURRENCY, what
        ),
        per_host_delay_ms=_number(value, "per_host_delay_ms", 0, MAX_PER_HOST_DELAY_MS, what),
        user_agent=_user_agent(value, what),
        query=query,
        sitemaps=_flag(value, "sitemaps", what),
        processor=_processor(value, what),
    )


def parse_spec_file(body: bytes, key: str) -> CrawlSpec:
    """A `NAME.crawl.json` upload; ValueError says what is wrong with it."""
    if len(body) > MAX_SPEC_BYTES:
        raise ValueError(f"crawl spec {key} is {len(body)} bytes; at most {MAX_SPEC_BYTES}")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"crawl spec {key} is not JSON: {exc}") from None
    return parse_crawl_spec(data, f"crawl spec {key}")


_DEFAULTS = CrawlSpec(seeds=())


def _seeds(value: dict[str, Any], query: QueryMode, what: str) -> tuple[str, ...]:
    seeds = value.get("seeds")
    if isinstance(seeds, str):
        seeds = [seeds]
    if not isinstance(seeds, list) or not 1 <= len(seeds) <= MAX_SEEDS:
        raise ValueError(
            f"{what}: 'seeds' must be a URL or a list of 1 to {MAX_SEEDS} URLs, got {_short(seeds)}"
        )
    out: dict[str, None] = {}
    for seed in seeds:
        url = normalise(seed, query=query) if isinstance(seed, str) else None
        if url is None:
            raise ValueError(f"{what}: seed {seed!r} is not an http(s) URL baton can crawl")
        out[url] = None
    return tuple(out)


def _choice(value: dict[str, Any], name: str, kind: type[_Choice], what: str) -> _Choice:
    raw = value.get(name, getattr(_DEFAULTS, name))
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(
            f"{what}: {name!r} must be one of {[k.value for k in kind]}, got {raw!r}"
        ) from None


def _number(value: dict[str, Any], name: str, low: int, high: int, what: str) -> int:
    raw = value.get(name, getattr(_DEFAULTS, name))
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise ValueError(
            f"{what}: {name!r} must be a whole number from {low} to {high}, got {raw!r}"
        )
    return raw


def _flag(value: dict[str, Any], name: str, what: str) -> bool:
    raw = value.get(name, getattr(_DEFAULTS, name))
    if not isinstance(raw, bool):
        raise ValueError(f"{what}: {name!r} must be true or false, got {raw!r}")
    return raw


def _strings(value: dict[str, Any], name: str, what: str) -> list[str]:
    raw = value.get(name, [])
    if (
        not isinstance(raw, list)
        or len(raw) > MAX_PATTERNS
        or not all(isinstance(s, str) and s for s in raw)
    ):
        raise ValueError(
            f"{what}: {name!r} must be a list of at most {MAX_PATTERNS} non-empty strings, "
            f"got {_short(raw)}"
        )
    return raw


def _patterns(value: dict[str, Any], name: str, what: str) -> tuple[str, ...]:
    patterns = _strings(value, name, what)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"{what}: {name!r} pattern {pattern!r} is not a regular expression: {exc}"
            ) from None
    return tuple(patterns)


def _hosts(value: dict[str, Any], scope: Scope, what: str) -> tuple[str, ...]:
    if scope is not Scope.HOSTS:
        if "hosts" in value:
            raise ValueError(
                f"{what}: 'hosts' applies only with scope 'hosts' (scope is {scope.value!r})"
            )
        return ()
    hosts = _strings(value, "hosts", what)
    if not hosts:
        raise ValueError(f"{what}: scope 'hosts' needs a non-empty 'hosts' list")
    return tuple(dict.fromkeys(_host(h, what) for h in hosts))


def _host(host: str, what: str) -> str:
    """A bare host name (or IP address) as normalised URLs spell it."""
    url = None
    if not _NOT_IN_HOST.search(host) and (host.startswith("[") or ":" not in host):
        url = normalise(f"http://{host}/")
    if url is None or url != f"http://{host_of(url)}/":
        raise ValueError(f"{what}: host {host!r} is not a host name (no scheme, port or path)")
    return host_of(url)


def _user_agent(value: dict[str, Any], what: str) -> str:
    raw = value.get("user_agent", _DEFAULTS.user_agent)
    if (
        not isinstance(raw, str)
        or not 1 <= len(raw) <= MAX_USER_AGENT_CHARS
        or not (raw.isascii() and raw.isprintable())
        or not raw.split("/", 1)[0].strip()
    ):
        raise ValueError(
            f"{what}: 'user_agent' must be 1 to {MAX_USER_AGENT_CHARS} printable ASCII "
            f"characters starting with a product token (like 'mybot/1.0'), got {_short(raw)}"
        )
    return raw


def _processor(value: dict[str, Any], what: str) -> str | None:
    raw = value.get("processor")
    if raw is None:
        return None
    if raw in BUILTIN_PROCESSORS:
        raise ValueError(
            f"{what}: 'processor' {raw!r} processes S3 objects (prefix runs); a crawl's "
            "processor fetches pages: give 'module:function', or leave it out for the default"
        )
    if not isinstance(raw, str) or not _PROCESSOR.fullmatch(raw):
        raise ValueError(f"{what}: 'processor' must look like 'module:function', got {raw!r}")
    return raw


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
