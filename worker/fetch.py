"""Fetch a page: pooled session, time-bounded requests, one retry policy.

Transient failures (connection errors, timeouts, DNS failures, 5xx, 429) are
retried with tenacity, honouring `Retry-After`, and never past the task's
deadline. Each request ends by its own deadline, min(leg deadline, request
timeout), however slowly the server drips its headers or body (worker.watchdog),
and the body is read with a size cap, so a slow or huge page costs one task an
error, never the leg.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from worker.exceptions import OutOfTimeError
from worker.netguard import (
    BlockedURLError,
    NetPolicy,
    UnresolvedHostError,
    guarded_pool_classes,
)
from worker.watchdog import Limit, Watchdog

HOST_POOLS = 256
"""Hosts whose connection pools stay open at once (an LRU): a many-host run keeps its
connections instead of reconnecting as the pools of other hosts push them out."""
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 30.0
CHUNK = 64 * 1024
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
"""Task headers that stay with the origin they were given for."""


class FetchError(Exception):
    """A fetch that failed for good; the message goes into the task's result."""

    attempts: int | None = None
    """Requests made before the failure, when the fetcher got that far."""


class TryAgain(Exception):
    """A crawl's request the leg must make again in the host's turn, not here: a redirect
    to another host, or an answer to retry (429, 503, a dropped connection). Sent from
    the task, it would skip that host's slot and delay; queued, it waits for both."""

    def __init__(
        self, url: str, *, hops: int, tries: int, wait_s: float = 0.0, redirect: int = 0
    ) -> None:
        super().__init__(f"again at {url} in {wait_s:g} s")
        self.url = url
        self.redirect = redirect
        """The redirect's status (301, 302, ...); 0 for a retry."""
        self.hops = hops
        self.tries = tries
        """Failed requests so far (the fetcher's attempts, counted across turns)."""
        self.wait_s = wait_s
        """How long the host asked to be left alone (Retry-After), else the backoff."""


class TransientFetchError(FetchError):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class FetchPolicy:
    attempts: int = 3
    request_timeout_s: float = 15.0
    """The most one request (connect, headers and body together) may take."""
    connect_timeout_s: float = 5.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    user_agent: str = "baton"
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0


@dataclass(frozen=True)
class Page:
    url: str
    final_url: str
    status: int
    content_type: str
    body: bytes
    attempts: int
    redirects: int


@dataclass(frozen=True)
class _Hop:
    """One answered request: a page, or where a redirect points."""

    status: int
    content_type: str
    body: bytes
    location: str | None


class Fetcher:
    """One pooled session per container, shared by the batch's threads."""

    def __init__(
        self,
        policy: FetchPolicy,
        net: NetPolicy,
        pool_size: int = 16,
        sleep: Callable[[float], None] = time.sleep,
        hosts: int = HOST_POOLS,
    ) -> None:
        """`pool_size` connections are kept per host (the per-host cap), for `hosts` hosts."""
        self.policy = policy
        self.net = net
        self.sleep = sleep
        self.watchdog = Watchdog()
        self.session = requests.Session()
        self.session.trust_env = False
        # Tasks are independent: one task's cookies must never ride along with another's.
        self.session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self.session.headers["User-Agent"] = policy.user_agent
        self.session.headers["Accept"] = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
        for scheme in ("http://", "https://"):
            adapter = HTTPAdapter(pool_connections=hosts, pool_maxsize=pool_size, max_retries=0)
            adapter.poolmanager.pool_classes_by_scheme = guarded_pool_classes(net)
            self.session.mount(scheme, adapter)

    def close(self) -> None:
        self.session.close()
        self.watchdog.close()

    def fetch(
        self,
        url: str,
        deadline: float,
        headers: dict[str, str] | None = None,
        *,
        hops: int = 0,
        tries: int = 0,
        same_host: bool = False,
    ) -> Page:
        """Fetch `url`, following redirects by hand so every hop is checked.

        A task's credential headers go only to the origin they were given for: a
        redirect to another origin drops them, as a browser does. With `same_host` (a
        crawl's politeness), a redirect to another host is not followed here: it raises
        `TryAgain`, and the leg moves the task to that host's queue, where it
        waits for that host's slot. `hops` are the redirects taken before this call.
        """
        attempts = 0
        sent = dict(headers) if headers else None

        def one_attempt(target: str) -> _Hop:
            nonlocal attempts
            attempts += 1
            return self._attempt(target, deadline, sent, tried=attempts > 1)

        current = url
        try:
            for redirects in range(hops, self.policy.max_redirects + 1):
                self._check(current)
                if same_host:
                    hop = self._once(one_attempt, current, redirects, tries)
                else:
                    hop = self._retrying(deadline)(one_attempt, current)
                if hop.location is None:
                    return Page(
                        url=url,
                        final_url=current,
                        status=hop.status,
                        content_type=hop.content_type,
                        body=hop.body,
                        attempts=attempts,
                        redirects=redirects,
                    )
                target = urljoin(current, hop.location)
                if same_host and _origin(target)[1] != _origin(current)[1]:
                    raise TryAgain(target, hops=redirects + 1, tries=tries, redirect=hop.status)
                if sent and _origin(target) != _origin(current):
                    sent = {k: v for k, v in sent.items() if k.lower() not in CREDENTIAL_HEADERS}
                current = target
            raise FetchError(f"more than {self.policy.max_redirects} redirects (last: {current})")
        except FetchError as exc:
            exc.attempts = attempts
            raise

    def _once(self, attempt: Callable[[str], _Hop], url: str, hops: int, tries: int) -> _Hop:
        """One request, its retry left to the leg's queue (`TryAgain`) while tries remain."""
        try:
            return attempt(url)
        except TransientFetchError as exc:
            if tries + 1 >= self.policy.attempts:
                raise
            backoff = min(self.policy.backoff_max_s, self.policy.backoff_initial_s * 2**tries)
            wait = exc.retry_after_s if exc.retry_after_s is not None else backoff
            raise TryAgain(url, hops=hops, tries=tries + 1, wait_s=wait) from exc

    def _check(self, url: str) -> None:
        try:
            self.net.check_url(url)
        except BlockedURLError as exc:
            raise FetchError(f"blocked: {exc}") from exc

    def _retrying(self, deadline: float) -> Retrying:
        backoff = wait_exponential_jitter(
            multiplier=self.policy.backoff_initial_s,
            max=self.policy.backoff_max_s,
            jitter=self.policy.backoff_initial_s,
        )

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            delay = backoff(state)
            if isinstance(exc, TransientFetchError) and exc.retry_after_s is not None:
                delay = exc.retry_after_s
            if time.monotonic() + delay >= deadline - 0.05:
                raise OutOfTimeError(f"{exc} (no time left to retry)", tried=True) from exc
            return delay

        return Retrying(
            stop=stop_after_attempt(self.policy.attempts),
            wait=wait,
            retry=retry_if_exception_type(TransientFetchError),
            sleep=self.sleep,
            reraise=True,
        )

    def _attempt(
        self, url: str, leg_deadline: float, headers: dict[str, str] | None, *, tried: bool
    ) -> _Hop:
        """One request under one total deadline: connect, headers and body together."""
        now = time.monotonic()
        left = leg_deadline - now
        if left <= 0.05:
            raise OutOfTimeError("no time left in the leg for this request", tried=tried)
        deadline = min(leg_deadline, now + self.policy.request_timeout_s)
        timeout = (
            min(self.policy.connect_timeout_s, left),
            min(self.policy.request_timeout_s, left),
        )
        with self.watchdog.limit(deadline) as limit:
            try:
                response = self._send(url, headers, timeout)
            except BlockedURLError as exc:
                raise FetchError(f"blocked: {exc}") from exc
            except UnresolvedHostError as exc:
                raise TransientFetchError(f"dns: {exc}") from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                if limit.fired:
                    raise self._overrun("no response", deadline, leg_deadline) from exc
                raise TransientFetchError(f"{type(exc).__name__}: {_short(exc)}") from exc
            except requests.RequestException as exc:
                raise FetchError(f"{type(exc).__name__}: {_short(exc)}") from exc
            try:
                return self._answer(response, deadline, leg_deadline, limit)
            finally:
                response.close()

    def _send(
        self, url: str, headers: dict[str, str] | None, timeout: tuple[float, float]
    ) -> requests.Response:
        """The session's adapter, called without the session: `Session.request` merges
        cookies, environment settings and hooks and looks ahead for a redirect on every
        call, a fifth of a fetch's CPU (bench/profile_leg.py) for what a fetch never uses:
        its cookies are refused, the environment is not trusted, redirects are followed
        by hand. The session's headers still go, a task's own over them."""
        sent = self.session.headers
        if headers:
            sent = CaseInsensitiveDict(sent)
            for name, value in headers.items():
                if value is None:  # as requests merges: a task's null drops the header
                    sent.pop(name, None)
                else:
                    sent[name] = value
        request = requests.PreparedRequest()
        request.prepare(method="GET", url=url, headers=sent)
        return self.session.get_adapter(url).send(request, stream=True, timeout=timeout)

    def _answer(
        self, response: requests.Response, deadline: float, leg_deadline: float, limit: Limit
    ) -> _Hop:
        status = response.status_code
        if status in RETRY_STATUSES:
            raise TransientFetchError(
                f"HTTP {status}", _retry_after(response.headers.get("Retry-After"))
            )
        content_type = response.headers.get("Content-Type", "")
        if response.is_redirect:
            return _Hop(status, content_type, b"", response.headers.get("Location", ""))
        body = self._read_body(response, deadline, leg_deadline, limit)
        return _Hop(status, content_type, body, None)

    def _overrun(self, what: str, deadline: float, leg_deadline: float) -> Exception:
        if deadline >= leg_deadline:
            return OutOfTimeError(f"{what} before the leg's deadline", tried=True)
        return TransientFetchError(f"Timeout: {what} within {self.policy.request_timeout_s:g} s")

    def _read_body(
        self, response: requests.Response, deadline: float, leg_deadline: float, limit: Limit
    ) -> bytes:
        """Read under the request's deadline (a slow drip) and the size cap."""
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.policy.max_bytes:
            raise FetchError(f"page is {declared} bytes, over the {self.policy.max_bytes} byte cap")
        chunks: list[bytes] = []
        size = 0
        raw: Any = response.raw
        try:
            while True:
                if time.monotonic() >= deadline:
                    raise self._late_body(size, deadline, leg_deadline)
                chunk = raw.read1(CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.policy.max_bytes:
                    raise FetchError(f"page is over the {self.policy.max_bytes} byte cap")
                chunks.append(chunk)
        except (requests.RequestException, OSError, ValueError) as exc:
            raise self._broken_body(exc, size, deadline, leg_deadline, limit) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("urllib3"):
                raise self._broken_body(exc, size, deadline, leg_deadline, limit) from exc
            raise
        if limit.fired:  # the cut looks like the end of a body sent without a length
            raise self._late_body(size, deadline, leg_deadline)
        return b"".join(chunks)

    def _broken_body(
        self, exc: Exception, size: int, deadline: float, leg_deadline: float, limit: Limit
    ) -> Exception:
        if limit.fired:
            return self._late_body(size, deadline, leg_deadline)
        return FetchError(f"body read failed: {type(exc).__name__}: {_short(exc)}")

    def _late_body(self, size: int, deadline: float, leg_deadline: float) -> Exception:
        message = f"body not read in time ({size} bytes so far)"
        if deadline >= leg_deadline:
            return OutOfTimeError(message, tried=True)
        return FetchError(message)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or ""), port


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."
