"""URL normalisation, hosts and sites, scope filters and partitions."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.crawl.spec import CrawlSpec, QueryMode, parse_crawl_spec
from worker.crawl.urls import (
    MAX_URL_LENGTH,
    ScopeFilter,
    host_of,
    normalise,
    origin_of,
    partition,
    registrable_domain,
)


def test_normalise_makes_many_spellings_of_one_url_equal() -> None:
    assert normalise("HTTP://Example.COM:80/a/./b/../c?b=2&a=1#frag") == (
        "http://example.com/a/c?a=1&b=2"
    )


def test_normalise_drops_the_default_port() -> None:
    assert normalise("http://example.com:80/x") == "http://example.com/x"
    assert normalise("https://example.com:443/x") == "https://example.com/x"


def test_normalise_keeps_a_port_that_is_not_the_default() -> None:
    assert normalise("https://example.com:80/x") == "https://example.com:80/x"


def test_normalise_gives_an_empty_path_a_slash() -> None:
    assert normalise("http://example.com") == "http://example.com/"


def test_normalise_removes_the_fragment() -> None:
    assert normalise("http://example.com/a#top") == "http://example.com/a"


def test_normalise_drops_an_empty_query() -> None:
    assert normalise("http://example.com/a?") == "http://example.com/a"
    assert normalise("http://example.com/a?#x") == "http://example.com/a"


def test_normalise_drops_the_trailing_dot_of_a_host() -> None:
    assert normalise("http://example.com./a") == "http://example.com/a"


def test_normalise_spells_an_international_host_in_punycode() -> None:
    assert normalise("http://Bücher.Example/") == "http://xn--bcher-kva.example/"


def test_normalise_upper_cases_escapes_and_decodes_unreserved_ones() -> None:
    assert normalise("http://example.com/%7euser/%2f%e2%82%ac%41") == (
        "http://example.com/~user/%2F%E2%82%ACA"
    )


def test_normalise_escapes_what_a_path_may_not_hold() -> None:
    assert normalise("http://example.com/a b/ä") == "http://example.com/a%20b/%C3%A4"


def test_normalise_sorts_query_parameters_by_key_then_value() -> None:
    assert normalise("http://example.com/?b=2&a=9&a=1") == "http://example.com/?a=1&a=9&b=2"


def test_normalise_keeps_blank_query_values_and_drops_empty_parameters() -> None:
    assert normalise("http://example.com/?q=&&b") == "http://example.com/?b&q="


def test_normalise_keep_mode_keeps_the_query_order() -> None:
    url = "http://example.com/?b=2&a=1&&c=%7e"
    assert normalise(url, query=QueryMode.KEEP) == "http://example.com/?b=2&a=1&&c=~"


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "mailto:someone@example.com",
        "ftp://example.com/file",
        "data:text/html,hi",
        "tel:+441234",
        "/relative/path",
        "//example.com/scheme-relative",
        "http://",
        "http://exa mple.com/",
        "",
    ],
)
def test_normalise_refuses_what_a_crawl_cannot_fetch(url: str) -> None:
    assert normalise(url) is None


def test_normalise_refuses_urls_with_credentials() -> None:
    assert normalise("http://user:secret@example.com/") is None
    assert normalise("http://user@example.com/") is None


def test_normalise_refuses_urls_longer_than_the_limit() -> None:
    url = "http://example.com/" + "a" * MAX_URL_LENGTH
    assert normalise(url) is None


def test_normalise_spells_an_ipv4_address_canonically() -> None:
    assert normalise("http://0x7f.1/") == "http://127.0.0.1/"


_url_parts = st.text(alphabet="abcXYZ019-._~%/?&=#:;+ äé", max_size=30)


@given(path=_url_parts, host=st.sampled_from(["Example.COM", "xn--bcher-kva.example", "1.2.3.4"]))
def test_normalise_is_idempotent(path: str, host: str) -> None:
    once = normalise(f"http://{host}/{path}")
    assert once is None or normalise(once) == once


def test_host_of_is_the_host_without_its_port() -> None:
    assert host_of("http://example.com:8080/a?b") == "example.com"
    assert host_of("http://[::1]:8080/a") == "[::1]"


def test_origin_of_keeps_scheme_host_and_port() -> None:
    assert origin_of("https://example.com:8443/a/b?c") == "https://example.com:8443"
    assert origin_of("https://example.com/") == "https://example.com"


@pytest.mark.parametrize(
    ("host", "site"),
    [
        ("www.example.com", "example.com"),
        ("a.b.example.com", "example.com"),
        ("example.com", "example.com"),
        ("www.example.co.uk", "example.co.uk"),
        ("shop.example.com.au", "example.com.au"),
        ("alice.github.io", "alice.github.io"),
        ("www.example.xn--p1ai", "example.xn--p1ai"),
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "[::1]"),
        ("co.uk", "co.uk"),
    ],
)
def test_registrable_domain_follows_the_public_suffix_list(host: str, site: str) -> None:
    assert registrable_domain(host) == site


def spec(**fields: object) -> CrawlSpec:
    return parse_crawl_spec({"seeds": ["http://www.example.com/"], **fields}, "test")


def test_scope_host_admits_the_seed_hosts_only() -> None:
    scope = ScopeFilter(spec())
    assert scope.allows("http://www.example.com/a")
    assert scope.allows("https://www.example.com:8443/a")
    assert not scope.allows("http://example.com/a")
    assert not scope.allows("http://other.example.com/a")


def test_scope_domain_admits_every_host_of_the_seed_sites() -> None:
    scope = ScopeFilter(spec(scope="domain"))
    assert scope.allows("http://example.com/a")
    assert scope.allows("http://deep.sub.example.com/a")
    assert not scope.allows("http://example.org/a")
    assert not scope.allows("http://notexample.com/a")


def test_scope_hosts_admits_the_listed_hosts_only() -> None:
    scope = ScopeFilter(spec(scope="hosts", hosts=["docs.example.org", "Example.NET"]))
    assert scope.allows("http://docs.example.org/a")
    assert scope.allows("http://example.net/a")
    assert not scope.allows("http://www.example.com/a")


def test_scope_allow_patterns_need_one_match() -> None:
    scope = ScopeFilter(spec(allow=["/blog/", r"/news/\d+$"]))
    assert scope.allows("http://www.example.com/blog/post")
    assert scope.allows("http://www.example.com/news/12")
    assert not scope.allows("http://www.example.com/shop/item")


def test_scope_deny_patterns_refuse_any_match() -> None:
    scope = ScopeFilter(spec(allow=["/blog/"], deny=[r"\?.*page=", "/private"]))
    assert scope.allows("http://www.example.com/blog/post")
    assert not scope.allows("http://www.example.com/blog/post?page=2")
    assert not scope.allows("http://www.example.com/blog/private")


def test_scope_patterns_see_the_normalised_url() -> None:
    scope = ScopeFilter(spec(allow=["^http://www.example.com/~user/"]))
    url = normalise("HTTP://WWW.Example.com:80/%7Euser/x")
    assert url is not None
    assert scope.allows(url)


def test_partition_is_the_same_for_every_host_of_a_site() -> None:
    chains = 16
    assert partition("http://a.example.com/x", chains) == partition(
        "https://b.example.com/y", chains
    )


def test_partition_is_blake2b_of_the_site_so_every_process_agrees() -> None:
    digest = hashlib.blake2b(b"example.com", digest_size=8).digest()
    assert partition("http://www.example.com/", 1_000_003) == (
        int.from_bytes(digest, "big") % 1_000_003
    )


def test_partition_spreads_sites_over_the_chains() -> None:
    used = {partition(f"http://site{i}.com/", 8) for i in range(200)}
    assert used == set(range(8))


def test_partition_refuses_fewer_than_one_chain() -> None:
    with pytest.raises(ValueError, match="chains"):
        partition("http://example.com/", 0)
