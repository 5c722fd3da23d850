"""Sitemaps: urlsets, indexes, text and gzip, and everything a server might send instead."""

from __future__ import annotations

import gzip

import pytest

from worker.crawl.sitemap import MAX_SITEMAP_BYTES, MAX_SITEMAP_URLS, Sitemap, parse_sitemap

URLSET = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url><loc>https://example.com/</loc><lastmod>2026-01-01</lastmod></url>
  <url>
    <loc>
      https://example.com/a?x=1&amp;y=2
    </loc>
    <image:image><image:loc>https://example.com/pic.jpg</image:loc></image:image>
  </url>
</urlset>
"""
INDEX = b"""<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>https://example.com/sitemap-1.xml.gz</loc></sitemap>
  <sitemap><loc>https://example.com/sitemap-2.xml</loc></sitemap>
</sitemapindex>
"""


def test_sitemap_lists_the_locations_of_a_urlset() -> None:
    assert parse_sitemap(URLSET) == Sitemap(
        urls=["https://example.com/", "https://example.com/a?x=1&y=2"], sitemaps=[]
    )


def test_sitemap_index_lists_its_sitemaps() -> None:
    assert parse_sitemap(INDEX) == Sitemap(
        urls=[],
        sitemaps=["https://example.com/sitemap-1.xml.gz", "https://example.com/sitemap-2.xml"],
    )


def test_sitemap_without_a_namespace_is_read_too() -> None:
    body = b"<urlset><url><loc>https://example.com/x</loc></url></urlset>"
    assert parse_sitemap(body).urls == ["https://example.com/x"]


def test_sitemap_leaves_out_locations_outside_url_and_sitemap() -> None:
    body = b"<urlset><loc>https://a.com/stray</loc><url><x><loc>https://a.com/deep</loc></x></url></urlset>"
    assert parse_sitemap(body) == Sitemap()


def test_sitemap_gzip_is_inflated_by_its_magic_bytes() -> None:
    assert parse_sitemap(gzip.compress(INDEX)) == parse_sitemap(INDEX)


def test_sitemap_gzip_bomb_inflates_only_to_the_limit() -> None:
    head = b"<urlset><url><loc>https://example.com/1</loc></url>"
    bomb = gzip.compress(head + b" " * (MAX_SITEMAP_BYTES + 1024 * 1024), compresslevel=9)
    assert len(bomb) < MAX_SITEMAP_BYTES // 100
    assert parse_sitemap(bomb).urls == ["https://example.com/1"]


def test_sitemap_broken_gzip_is_empty() -> None:
    assert parse_sitemap(b"\x1f\x8b\x08\x00garbage") == Sitemap()


def test_sitemap_cut_short_keeps_the_urls_before_the_cut() -> None:
    cut = URLSET[: URLSET.index(b"<url>\n")]
    assert parse_sitemap(cut).urls == ["https://example.com/"]


def test_sitemap_with_a_doctype_is_refused_whole() -> None:
    laughs = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<urlset><url><loc>https://example.com/&lol2;</loc></url></urlset>"""
    assert parse_sitemap(laughs) == Sitemap()


def test_sitemap_never_reads_an_external_entity() -> None:
    xxe = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<urlset><url><loc>&xxe;</loc></url></urlset>"""
    assert parse_sitemap(xxe) == Sitemap()


def test_sitemap_in_text_is_one_url_a_line() -> None:
    body = b"\xef\xbb\xbfhttps://example.com/a\r\n\n  http://example.com/b  \nnot a url\nftp://x/\n"
    assert parse_sitemap(body).urls == ["https://example.com/a", "http://example.com/b"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x01\x02\xff" * 100,
        b"<html><body><a href='https://example.com/'>hi</a></body></html>",
        b"<urlset><url><loc>https://example.com/</lo",
        b'{"urls": ["https://example.com/"]}',
    ],
)
def test_sitemap_garbage_is_empty_and_never_raises(body: bytes) -> None:
    assert parse_sitemap(body) == Sitemap()


def test_sitemap_keeps_at_most_the_protocols_url_limit() -> None:
    urls = b"".join(
        b"<url><loc>https://e.com/%d</loc></url>" % i for i in range(MAX_SITEMAP_URLS + 5)
    )
    found = parse_sitemap(b"<urlset>" + urls + b"</urlset>").urls
    assert len(found) == MAX_SITEMAP_URLS
    assert found[-1] == f"https://e.com/{MAX_SITEMAP_URLS - 1}"


def test_sitemap_reads_a_declared_encoding() -> None:
    body = '<?xml version="1.0" encoding="ISO-8859-1"?><urlset><url><loc>https://e.com/café</loc></url></urlset>'
    assert parse_sitemap(body.encode("latin-1")).urls == ["https://e.com/café"]
