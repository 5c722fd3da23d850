"""Fetch a page: pooled session, time-bounded requests, one retry policy.

Transient failures (connection errors, timeouts, 5xx, 429) are retried with
tenacity, honouring `Retry-After`, and never past the task's deadline. The
body is read in pieces with caps on size and total time, so a slow-drip or a
huge page costs one task an error, never the leg.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from worker.exceptions import OutOfTimeError
from worker.netguard import BlockedURLError, NetPolicy, guarded_pool_classes

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 30.0
CHUNK = 64 * 1024


class FetchError(Exception):
    """A fetch that failed for good; the message goes into the task's result."""


class TransientFetchError(FetchError):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class FetchPolicy:
    attempts: int = 3
    request_timeout_s: float = 15.0
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


class Fetcher:
    """One pooled session per container, shared by the batch's threads."""

    def __init__(
        self,
        policy: FetchPolicy,
        net: NetPolicy,
        pool_size: int = 16,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy
        self.net = net
        self.sleep = sleep
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["User-Agent"] = policy.user_agent
        self.session.headers["Accept"] = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
        for scheme in ("http://", "https://"):
            adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
            adapter.poolmanager.pool_classes_by_scheme = guarded_pool_classes(net)
            self.session.mount(scheme, adapter)

    def close(self) -> None:
        self.session.close()

    def fetch(self, url: str, deadline: float, headers: dict[str, str] | None = None) -> Page:
        """Fetch `url`, following redirects by hand so every hop is checked."""
        attempts = 0

        def one_hop(target: str) -> requests.Response:
            nonlocal attempts
            attempts += 1
            return self._request(target, deadline, headers, tried=attempts > 1)

        current = url
        for redirects in range(self.policy.max_redirects + 1):
            self._check(current)
            response = self._retrying(deadline)(one_hop, current)
            if response.is_redirect:
                location = response.headers.get("Location", "")
                response.close()
                current = urljoin(current, location)
                if redirects == self.policy.max_redirects:
                    break
                continue
            try:
                body = self._read_body(response, deadline)
            finally:
                response.close()
            return Page(
                url=url,
                final_url=current,
                status=response.status_code,
                content_type=response.headers.get("Content-Type", ""),
                body=body,
                attempts=attempts,
                redirects=redirects,
            )
        raise FetchError(f"more than {self.policy.max_redirects} redirects (last: {current})")

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

    def _request(
        self, url: str, deadline: float, headers: dict[str, str] | None, *, tried: bool
    ) -> requests.Response:
        left = deadline - time.monotonic()
        if left <= 0.05:
            raise OutOfTimeError("no time left in the leg for this request", tried=tried)
        timeout = (
            min(self.policy.connect_timeout_s, left),
            min(self.policy.request_timeout_s, left),
        )
        try:
            response = self.session.get(
                url, headers=headers, timeout=timeout, allow_redirects=False, stream=True
            )
        except BlockedURLError as exc:
            raise FetchError(f"blocked: {exc}") from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientFetchError(f"{type(exc).__name__}: {_short(exc)}") from exc
        except requests.RequestException as exc:
            raise FetchError(f"{type(exc).__name__}: {_short(exc)}") from exc
        if response.status_code in RETRY_STATUSES:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            response.close()
            raise TransientFetchError(f"HTTP {response.status_code}", retry_after)
        return response

    def _read_body(self, response: requests.Response, leg_deadline: float) -> bytes:
        """Read under two clocks: the request's own cap (slow drip) and the leg's deadline."""
        request_deadline = time.monotonic() + self.policy.request_timeout_s
        deadline = min(leg_deadline, request_deadline)
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.policy.max_bytes:
            raise FetchError(f"page is {declared} bytes, over the {self.policy.max_bytes} byte cap")
        chunks: list[bytes] = []
        size = 0
        raw: Any = response.raw
        try:
            while True:
                if time.monotonic() >= deadline:
                    message = f"body not read in time ({size} bytes so far)"
                    if deadline == leg_deadline:
                        raise OutOfTimeError(message, tried=True)
                    raise FetchError(message)
                chunk = raw.read1(CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.policy.max_bytes:
                    raise FetchError(f"page is over the {self.policy.max_bytes} byte cap")
                chunks.append(chunk)
        except (requests.RequestException, OSError, ValueError) as exc:
            raise FetchError(f"body read failed: {type(exc).__name__}: {_short(exc)}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("urllib3"):
                raise FetchError(f"body read failed: {type(exc).__name__}: {_short(exc)}") from exc
            raise
        return b"".join(chunks)


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
