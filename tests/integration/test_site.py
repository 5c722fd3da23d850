"""The loopback web site itself: pages, broken pages, hits and hostile endpoints."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests
from selectolax.lexbor import LexborHTMLParser

from devstack.site import (
    FILE_URL,
    METADATA_URL,
    Hostile,
    LatencyProfile,
    PageKind,
    Site,
    SiteConfig,
)

pytestmark = pytest.mark.integration

SMALL = SiteConfig(
    pages=40,
    seed=7,
    page_bytes=(2_000, 6_000),
    broken_share=0.4,
    retry_after_s=0,
    huge_bytes=4 * 1024 * 1024,
    drip_interval_s=0.2,
    drip_bytes=5,
    bomb_bytes=8 * 1024 * 1024,
)


@pytest.fixture
def site() -> Iterator[Site]:
    with Site(SMALL) as running:
        yield running


def get(site: Site, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(site.url(path), timeout=5, **kwargs)


def test_site_pages_link_to_other_pages(site: Site) -> None:
    tree = LexborHTMLParser(get(site, "/page/3").content)
    hrefs = tuple(a.attributes["href"] for a in tree.css("a[href]"))
    assert hrefs == site.page(3).links
    assert 5 <= len(hrefs) <= 20
    assert len(set(hrefs)) == len(hrefs)
    assert "/page/3" not in hrefs
    assert all(0 <= int(h.rsplit("/", 1)[1]) < SMALL.pages for h in hrefs)


def test_site_page_carries_the_fields_an_extractor_reads(site: Site) -> None:
    info = site.page(5)
    tree = LexborHTMLParser(get(site, "/page/5").content)
    assert tree.css_first("title").text() == info.title
    assert tree.css_first('meta[name="description"]').attributes["content"] == info.description
    assert tree.css_first('link[rel="canonical"]').attributes["href"] == site.url("/page/5")
    assert tree.css_first("h1").text() == info.h1


def test_site_page_size_follows_the_config() -> None:
    config = SiteConfig(pages=20, page_bytes=(20_000, 80_000))
    with Site(config) as site:
        sizes = [len(get(site, f"/page/{i}").content) for i in range(config.pages)]
    assert all(20_000 <= size <= 82_000 for size in sizes)
    assert max(sizes) - min(sizes) > 10_000


def test_site_content_is_deterministic_for_a_seed() -> None:
    def snapshot(config: SiteConfig) -> list[tuple[object, ...]]:
        with Site(config) as site:
            return [
                (p.title, p.description, p.links, p.kind, p.size)
                for p in map(site.page, range(config.pages))
            ]

    assert snapshot(SMALL) == snapshot(SMALL)
    assert snapshot(SMALL) != snapshot(replace(SMALL, seed=8))


def test_site_broken_share_assigns_every_broken_kind(site: Site) -> None:
    broken = [i for kind in PageKind if kind is not PageKind.OK for i in site.pages_of(kind)]
    assert len(broken) == round(SMALL.broken_share * SMALL.pages)
    assert all(site.pages_of(kind) for kind in PageKind)
    assert 0 in site.pages_of(PageKind.OK)


@pytest.mark.parametrize(
    ("kind", "status"), [(PageKind.NOT_FOUND, 404), (PageKind.SERVER_ERROR, 500)]
)
def test_site_broken_page_answers_its_status_every_time(
    site: Site, kind: PageKind, status: int
) -> None:
    path = f"/page/{site.pages_of(kind)[0]}"
    assert [get(site, path).status_code for _ in range(3)] == [status] * 3


@pytest.mark.parametrize(
    ("kind", "status"), [(PageKind.RATE_LIMITED, 429), (PageKind.UNAVAILABLE, 503)]
)
def test_site_transient_page_succeeds_after_retry_after(
    site: Site, kind: PageKind, status: int
) -> None:
    path = f"/page/{site.pages_of(kind)[0]}"
    first = get(site, path)
    assert first.status_code == status
    assert first.headers["Retry-After"] == "0"
    second = get(site, path)
    assert second.status_code == 200
    assert LexborHTMLParser(second.content).css_first("h1") is not None


def test_site_reset_hits_makes_transient_pages_fail_again(site: Site) -> None:
    path = f"/page/{site.pages_of(PageKind.RATE_LIMITED)[0]}"
    get(site, path)
    get(site, path)
    site.reset_hits()
    assert get(site, path).status_code == 429


def test_site_counts_hits_per_path(site: Site) -> None:
    for _ in range(3):
        get(site, "/page/0?utm=x")
    get(site, "/page/1")
    assert site.hits["/page/0"] == 3
    assert site.hits["/page/1"] == 1
    assert site.hits["/page/2"] == 0


def test_site_urls_lists_every_page(site: Site) -> None:
    urls = site.urls()
    assert len(urls) == SMALL.pages
    assert urls[7] == f"{site.base_url}/page/7"


def test_site_index_links_every_page_and_hostile_endpoint(site: Site) -> None:
    hrefs = {a.attributes["href"] for a in LexborHTMLParser(get(site, "/").content).css("a")}
    assert {f"/page/{i}" for i in range(SMALL.pages)} | {h.value for h in Hostile} == hrefs


def test_site_go_redirects_to_its_page(site: Site) -> None:
    response = get(site, "/go/4")
    assert response.url == site.url("/page/4")
    assert [r.status_code for r in response.history] == [301]


def test_site_unknown_path_is_not_found(site: Site) -> None:
    assert get(site, "/nowhere").status_code == 404
    assert get(site, f"/page/{SMALL.pages}").status_code == 404


def test_site_slow_page_adds_its_delay() -> None:
    config = SiteConfig(pages=10, page_bytes=(1_000, 2_000), slow_share=0.5, slow_delay_s=0.3)
    with Site(config) as site:
        slow, fast = site.slow_pages()[0], site.pages_of(PageKind.OK)[0]
        assert fast not in site.slow_pages()
        assert get(site, f"/page/{slow}").elapsed.total_seconds() >= 0.3
        assert get(site, f"/page/{fast}").elapsed.total_seconds() < 0.3


def test_site_fixed_latency_delays_every_page() -> None:
    config = SiteConfig(pages=5, page_bytes=(1_000, 2_000), latency=LatencyProfile(median_s=0.1))
    with Site(config) as site:
        assert all(get(site, f"/page/{i}").elapsed.total_seconds() >= 0.1 for i in range(5))


def test_latency_profile_is_seeded_and_capped() -> None:
    profile = LatencyProfile(median_s=0.05, sigma=1.0, max_s=0.2)
    delays = [profile.delay(1, f"/page/{i}", 1) for i in range(200)]
    assert delays == [profile.delay(1, f"/page/{i}", 1) for i in range(200)]
    assert delays != [profile.delay(2, f"/page/{i}", 1) for i in range(200)]
    assert max(delays) == 0.2
    assert min(delays) < 0.05 < sorted(delays)[150]


def test_site_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="broken_share"):
        SiteConfig(broken_share=1.5)
    with pytest.raises(ValueError, match="page_bytes"):
        SiteConfig(page_bytes=(10, 5))


def test_site_stop_cuts_open_connections() -> None:
    site = Site(SiteConfig(pages=2, drip_interval_s=5.0, drip_bytes=10)).start()
    with requests.Session() as session:
        session.get(site.url("/page/0"), timeout=5)  # an idle keep-alive connection
        with session.get(site.url(Hostile.SLOW_DRIP), stream=True, timeout=5):
            started = time.monotonic()
            site.stop()
            assert time.monotonic() - started < 2


# --- hostile endpoints ---------------------------------------------------------------------


def test_hostile_redirect_loop_never_ends(site: Site) -> None:
    first = get(site, Hostile.REDIRECT_LOOP, allow_redirects=False)
    second = get(site, first.headers["Location"], allow_redirects=False)
    assert second.headers["Location"] == Hostile.REDIRECT_LOOP
    with pytest.raises(requests.TooManyRedirects):
        get(site, Hostile.REDIRECT_LOOP)


def test_hostile_redirect_to_metadata_points_at_link_local(site: Site) -> None:
    # Never followed here: nothing may be sent to that address.
    response = get(site, Hostile.REDIRECT_METADATA, allow_redirects=False)
    assert response.status_code == 302
    assert (
        response.headers["Location"] == METADATA_URL == "http://169.254.169.254/latest/meta-data/"
    )


def test_hostile_redirect_to_file_is_refused_by_requests(site: Site) -> None:
    assert get(site, Hostile.REDIRECT_FILE, allow_redirects=False).headers["Location"] == FILE_URL
    with pytest.raises(requests.exceptions.InvalidSchema):
        get(site, Hostile.REDIRECT_FILE)


def test_hostile_huge_declares_its_size_and_streams(site: Site) -> None:
    with get(site, Hostile.HUGE, stream=True) as response:
        assert int(response.headers["Content-Length"]) == SMALL.huge_bytes
        assert len(next(response.iter_content(1024 * 1024))) == 1024 * 1024


def test_hostile_huge_chunked_has_no_length_and_streams_to_the_end(site: Site) -> None:
    with get(site, Hostile.HUGE_CHUNKED, stream=True) as response:
        assert "Content-Length" not in response.headers
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert sum(len(c) for c in response.iter_content(1024 * 1024)) == SMALL.huge_bytes


def test_hostile_slow_drip_sends_a_byte_per_interval(site: Site) -> None:
    with get(site, Hostile.SLOW_DRIP, stream=True) as response:
        started = time.monotonic()
        body = response.raw.read(SMALL.drip_bytes)
        elapsed = time.monotonic() - started
    assert len(body) == SMALL.drip_bytes
    assert elapsed >= (SMALL.drip_bytes - 1) * SMALL.drip_interval_s * 0.9


def test_hostile_reset_breaks_the_connection_mid_body(site: Site) -> None:
    with get(site, Hostile.RESET, stream=True) as response:
        assert response.status_code == 200
        with pytest.raises(requests.exceptions.ChunkedEncodingError, match="reset"):
            _ = response.content


def test_hostile_png_is_a_real_image(site: Site) -> None:
    response = get(site, Hostile.PNG)
    assert response.headers["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_hostile_json_is_not_html(site: Site) -> None:
    response = get(site, Hostile.JSON)
    assert response.headers["Content-Type"] == "application/json"
    assert len(json.loads(response.content)["items"]) == 20


def test_hostile_malformed_html_is_invalid_utf8_but_parses(site: Site) -> None:
    body = get(site, Hostile.MALFORMED).content
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    assert LexborHTMLParser(body).css_first("title") is not None


def test_hostile_no_content_type_sends_html_without_the_header(site: Site) -> None:
    response = get(site, Hostile.NO_CONTENT_TYPE)
    assert "Content-Type" not in response.headers
    assert response.content.startswith(b"<!doctype html>")


def test_hostile_wrong_content_type_labels_an_image_as_html(site: Site) -> None:
    response = get(site, Hostile.WRONG_CONTENT_TYPE)
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.content.startswith(b"\x89PNG")


def test_hostile_gzip_bomb_expands_a_thousandfold(site: Site) -> None:
    with get(site, Hostile.GZIP_BOMB, stream=True) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        wire = response.raw.read(decode_content=False)
    expanded, data = 0, wire
    while data:  # one gzip member per MiB
        member = zlib.decompressobj(wbits=31)
        expanded += len(member.decompress(data))
        data = member.unused_data
    assert expanded == SMALL.bomb_bytes
    assert len(wire) * 500 < expanded


def test_hostile_lying_length_ends_before_its_content_length(site: Site) -> None:
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
        get(site, Hostile.LYING_LENGTH)


def test_hostile_endpoints_are_counted_in_hits(site: Site) -> None:
    get(site, Hostile.PNG)
    assert site.hits[Hostile.PNG] == 1
