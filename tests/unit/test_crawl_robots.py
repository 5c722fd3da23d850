"""robots.txt: RFC 9309 rules through Protego, the meaning of each answer, and the fetch."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from worker.crawl.robots import (
    MAX_ROBOTS_BYTES,
    RobotsRules,
    RobotsStatus,
    fetch_robots,
    rules_from_response,
)

ORIGIN = "https://example.com"
UA = "baton-crawler/0.3 (+https://example.com/bot)"
ROBOTS = b"""# comment
User-agent: *
Disallow: /private
Allow: /private/open
Disallow: /*.pdf$
Crawl-delay: 2.5

User-agent: Baton-Crawler
Disallow: /not-for-baton
Crawl-delay: 7

Sitemap: https://example.com/sitemap.xml
Sitemap: https://example.com/news.xml
"""


def rules(body: bytes = ROBOTS, status: int | None = 200) -> RobotsRules:
    return rules_from_response(ORIGIN, status, body, at_ms=1000)


def test_robots_star_group_applies_to_crawlers_it_does_not_name() -> None:
    r = rules()
    assert not r.allowed(f"{ORIGIN}/private/x", "otherbot/1.0")
    assert r.allowed(f"{ORIGIN}/not-for-baton", "otherbot/1.0")


def test_robots_group_for_this_crawler_replaces_the_star_group() -> None:
    r = rules()
    assert not r.allowed(f"{ORIGIN}/not-for-baton", UA)
    assert r.allowed(f"{ORIGIN}/private/x", UA)


def test_robots_matches_the_product_token_case_insensitively() -> None:
    assert not rules().allowed(f"{ORIGIN}/not-for-baton", "BATON-CRAWLER")


def test_robots_longest_match_wins() -> None:
    r = rules()
    assert r.allowed(f"{ORIGIN}/private/open/page", "otherbot")
    assert not r.allowed(f"{ORIGIN}/private/closed", "otherbot")


def test_robots_honours_wildcards_and_the_end_anchor() -> None:
    r = rules()
    assert not r.allowed(f"{ORIGIN}/docs/a.pdf", "otherbot")
    assert r.allowed(f"{ORIGIN}/docs/a.pdf?download=1", "otherbot")


def test_robots_allow_wins_a_tie() -> None:
    r = rules(b"User-agent: *\nDisallow: /page\nAllow: /page\n")
    assert r.allowed(f"{ORIGIN}/page", UA)


def test_robots_compares_paths_with_escapes_normalised() -> None:
    assert not rules().allowed(f"{ORIGIN}/%70rivate/x", "otherbot")


def test_robots_txt_itself_is_always_allowed() -> None:
    assert rules(b"User-agent: *\nDisallow: /\n").allowed(f"{ORIGIN}/robots.txt", UA)
    assert rules(status=503).allowed(f"{ORIGIN}/robots.txt", UA)


def test_robots_crawl_delay_is_the_matching_groups() -> None:
    assert rules().crawl_delay_s(UA) == 7
    assert rules().crawl_delay_s("otherbot") == 2.5
    assert rules(b"User-agent: *\nDisallow: /x\n").crawl_delay_s(UA) is None


def test_robots_sitemaps_are_listed_for_every_crawler() -> None:
    assert rules().sitemaps() == [
        "https://example.com/sitemap.xml",
        "https://example.com/news.xml",
    ]


def test_robots_refuses_a_url_of_another_origin() -> None:
    with pytest.raises(ValueError, match=r"not on https://example\.com"):
        rules().allowed("https://example.org/private", UA)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_robots_4xx_is_unavailable_and_allows_everything(status: int) -> None:
    r = rules(b"User-agent: *\nDisallow: /\n", status)
    assert r.status is RobotsStatus.UNAVAILABLE
    assert r.allowed(f"{ORIGIN}/anything", UA)
    assert r.crawl_delay_s(UA) is None


@pytest.mark.parametrize("status", [None, 429, 500, 503])
def test_robots_server_errors_and_no_answer_are_unreachable_and_allow_nothing(
    status: int | None,
) -> None:
    r = rules(ROBOTS, status)
    assert r.status is RobotsStatus.UNREACHABLE
    assert not r.allowed(f"{ORIGIN}/", UA)
    assert not r.allowed(f"{ORIGIN}/robots.txt.bak", UA)
    assert r.sitemaps() == []


def test_robots_empty_or_garbage_file_allows_everything() -> None:
    assert rules(b"").allowed(f"{ORIGIN}/x", UA)
    assert rules(b"<html><body>Not found</body></html>").allowed(f"{ORIGIN}/x", UA)
    assert rules(b"\xff\xfe\x00garbage\x80").allowed(f"{ORIGIN}/x", UA)


def test_robots_reads_a_file_with_a_byte_order_mark() -> None:
    r = rules(b"\xef\xbb\xbfUser-agent: *\nDisallow: /x\n")
    assert not r.allowed(f"{ORIGIN}/x", UA)


def test_robots_ignores_what_follows_the_size_cap_and_the_rule_it_cut() -> None:
    padding = b"# " + b"." * (MAX_ROBOTS_BYTES - 40) + b"\n"
    body = b"User-agent: *\nDisallow: /a\n" + padding + b"Disallow: /private-area\n"
    r = rules(body)
    assert not r.allowed(f"{ORIGIN}/a", UA)
    assert r.allowed(f"{ORIGIN}/priv", UA)
    assert r.allowed(f"{ORIGIN}/private-area", UA)


def test_robots_round_trips_through_to_dict() -> None:
    r = rules()
    again = RobotsRules.from_dict(r.to_dict())
    assert again == r
    assert not again.allowed(f"{ORIGIN}/not-for-baton", UA)


def test_robots_from_dict_refuses_a_damaged_record() -> None:
    with pytest.raises(ValueError, match=r"not a stored robots\.txt"):
        RobotsRules.from_dict({"origin": ORIGIN, "status": "ok", "body": 3, "fetched_ms": 0})


class FakeTransport(BaseAdapter):
    """Answers from a table of URL -> (status, headers, body), or raises what it holds."""

    def __init__(self, answers: Mapping[str, Any]) -> None:
        super().__init__()
        self.answers = answers
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        answer = self.answers[request.url]
        if isinstance(answer, Exception):
            raise answer
        status, headers, body = answer
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response.raw = body if not isinstance(body, bytes) else io.BytesIO(body)
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass


def session(answers: Mapping[str, Any]) -> tuple[requests.Session, FakeTransport]:
    s = requests.Session()
    transport = FakeTransport(answers)
    s.mount("https://", transport)
    s.mount("http://", transport)
    return s, transport


def fetch(answers: Mapping[str, Any], **kwargs: Any) -> RobotsRules:
    s, _ = session(answers)
    return fetch_robots(s, ORIGIN, UA, 5.0, 1234, **kwargs)


def test_fetch_robots_reads_the_origins_file_with_the_user_agent() -> None:
    s, transport = session({f"{ORIGIN}/robots.txt": (200, {}, ROBOTS)})
    r = fetch_robots(s, ORIGIN, UA, 5.0, 1234)
    assert (r.origin, r.status, r.fetched_ms) == (ORIGIN, RobotsStatus.OK, 1234)
    assert not r.allowed(f"{ORIGIN}/not-for-baton", UA)
    assert transport.sent[0].headers["User-Agent"] == UA


def test_fetch_robots_follows_redirects() -> None:
    r = fetch(
        {
            f"{ORIGIN}/robots.txt": (301, {"Location": "https://www.example.com/robots.txt"}, b""),
            "https://www.example.com/robots.txt": (200, {}, b"User-agent: *\nDisallow: /x\n"),
        }
    )
    assert r.origin == ORIGIN
    assert not r.allowed(f"{ORIGIN}/x", UA)


def test_fetch_robots_after_more_than_five_redirects_is_unavailable() -> None:
    hops = {f"{ORIGIN}/robots.txt": (302, {"Location": "/r1"}, b"")}
    hops |= {f"{ORIGIN}/r{i}": (302, {"Location": f"/r{i + 1}"}, b"") for i in range(1, 6)}
    hops[f"{ORIGIN}/r6"] = (200, {}, b"User-agent: *\nDisallow: /\n")
    assert fetch(hops).status is RobotsStatus.UNAVAILABLE


def test_fetch_robots_within_five_redirects_reads_the_file() -> None:
    hops = {f"{ORIGIN}/robots.txt": (302, {"Location": "/r1"}, b"")}
    hops |= {f"{ORIGIN}/r{i}": (302, {"Location": f"/r{i + 1}"}, b"") for i in range(1, 5)}
    hops[f"{ORIGIN}/r5"] = (200, {}, b"User-agent: *\nDisallow: /\n")
    assert fetch(hops).status is RobotsStatus.OK


def test_fetch_robots_maps_a_404_to_unavailable() -> None:
    assert fetch({f"{ORIGIN}/robots.txt": (404, {}, b"nope")}).status is RobotsStatus.UNAVAILABLE


def test_fetch_robots_maps_a_network_error_to_unreachable() -> None:
    error = requests.ConnectionError("refused")
    assert fetch({f"{ORIGIN}/robots.txt": error}).status is RobotsStatus.UNREACHABLE


def test_fetch_robots_maps_a_refused_address_to_unreachable() -> None:
    blocked = ValueError("10.0.0.1 is private")
    assert fetch({f"{ORIGIN}/robots.txt": blocked}).status is RobotsStatus.UNREACHABLE


def test_fetch_robots_stops_reading_past_the_cap() -> None:
    read: list[int] = []

    class Endless(io.RawIOBase):
        def readinto(self, buffer: Any) -> int:
            read.append(len(buffer))
            buffer[:] = b"#" * len(buffer)
            return len(buffer)

    r = fetch({f"{ORIGIN}/robots.txt": (200, {}, Endless())})
    assert r.status is RobotsStatus.OK
    assert sum(read) <= MAX_ROBOTS_BYTES + 2 * 64 * 1024


def test_fetch_robots_gives_up_on_a_body_slower_than_the_timeout() -> None:
    now = iter(float(t) for t in range(100))

    class Drip(io.RawIOBase):
        """One line per read, one (fake) second apart."""

        chunks = iter([b"User-agent: *\n"] * 50)

        def readinto(self, buffer: Any) -> int:
            chunk = next(self.chunks, b"")
            buffer[: len(chunk)] = chunk
            return len(chunk)

    r = fetch({f"{ORIGIN}/robots.txt": (200, {}, Drip())}, clock=lambda: next(now))
    assert r.status is RobotsStatus.UNREACHABLE
