"""The crawl spec: defaults, strict validation with clear messages, round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.crawl.spec import (
    MAX_PAGES_LIMIT,
    MAX_SEEDS,
    MAX_SPEC_BYTES,
    SPEC_FIELDS,
    CrawlSpec,
    QueryMode,
    Scope,
    parse_crawl_spec,
    parse_spec_file,
)

SEED = "https://example.com/"


def parse(**fields: Any) -> CrawlSpec:
    return parse_crawl_spec({"seeds": [SEED], **fields}, "crawl spec tasks/x.crawl.json")


def refused(match: str, **fields: Any) -> None:
    with pytest.raises(ValueError, match=match):
        parse(**fields)


def test_spec_defaults_are_the_documented_ones() -> None:
    spec = parse()
    assert spec == CrawlSpec(seeds=(SEED,))
    assert (spec.max_depth, spec.max_pages, spec.scope, spec.robots) == (3, 10_000, "host", True)
    assert (spec.per_host_concurrency, spec.per_host_delay_ms) == (8, 0)
    assert (spec.query, spec.sitemaps, spec.processor) == (QueryMode.SORT, False, None)


def test_spec_as_dict_leaves_out_what_is_absent() -> None:
    assert set(parse().as_dict()) == SPEC_FIELDS - {"hosts", "allow", "deny", "processor"}


def test_spec_seeds_are_normalised_and_deduplicated() -> None:
    spec = parse(seeds=["HTTPS://Example.com:443/#top", "https://example.com/", "http://b.org"])
    assert spec.seeds == ("https://example.com/", "http://b.org/")


def test_spec_seeds_may_be_one_string() -> None:
    assert parse(seeds="https://example.com").seeds == (SEED,)


def test_spec_seeds_follow_the_query_mode() -> None:
    assert parse(seeds="http://a.com/?b=1&a=2", query="keep").seeds == ("http://a.com/?b=1&a=2",)
    assert parse(seeds="http://a.com/?b=1&a=2").seeds == ("http://a.com/?a=2&b=1",)


def test_spec_refuses_a_seed_that_is_not_http_naming_it() -> None:
    refused("seed 'ftp://example.com/'", seeds=[SEED, "ftp://example.com/"])


def test_spec_refuses_a_seed_that_is_not_a_string() -> None:
    refused("seed 42", seeds=[42])


def test_spec_refuses_no_seeds_or_too_many() -> None:
    refused("'seeds' must be a URL or a list of 1 to 1000", seeds=[])
    refused("'seeds'", seeds=[f"http://e.com/{i}" for i in range(MAX_SEEDS + 1)])
    with pytest.raises(ValueError, match="'seeds'"):
        parse_crawl_spec({}, "spec")


def test_spec_refuses_unknown_fields_listing_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown fields \['depth'\] \(allowed: \['allow'"):
        parse(depth=2)


def test_spec_must_be_an_object() -> None:
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        parse_crawl_spec([SEED], "spec")


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("max_depth", -1),
        ("max_depth", 1001),
        ("max_pages", 0),
        ("max_pages", MAX_PAGES_LIMIT + 1),
        ("max_pages", True),
        ("max_pages", 1.5),
        ("per_host_concurrency", 0),
        ("per_host_concurrency", 65),
        ("per_host_delay_ms", -1),
        ("per_host_delay_ms", 60_001),
    ],
)
def test_spec_refuses_numbers_out_of_range_naming_field_value_and_range(
    name: str, bad: Any
) -> None:
    refused(rf"'{name}' must be a whole number from \d+ to \d+, got {bad!r}", **{name: bad})


def test_spec_max_depth_zero_is_the_seeds_only() -> None:
    assert parse(max_depth=0).max_depth == 0


def test_spec_refuses_an_unknown_scope_listing_the_kinds() -> None:
    refused(r"'scope' must be one of \['host', 'domain', 'hosts'\], got 'site'", scope="site")


def test_spec_scope_hosts_needs_hosts() -> None:
    refused("scope 'hosts' needs a non-empty 'hosts' list", scope="hosts")
    refused("scope 'hosts' needs a non-empty 'hosts' list", scope="hosts", hosts=[])


def test_spec_refuses_hosts_with_another_scope() -> None:
    refused("'hosts' applies only with scope 'hosts'", scope="domain", hosts=["a.com"])


def test_spec_hosts_are_lowercased_and_punycoded() -> None:
    spec = parse(scope="hosts", hosts=["Docs.Example.ORG", "bücher.example", "docs.example.org"])
    assert spec.scope is Scope.HOSTS
    assert spec.hosts == ("docs.example.org", "xn--bcher-kva.example")


@pytest.mark.parametrize("bad", ["http://a.com", "a.com:8080", "a.com/path", "user@a.com", "a b"])
def test_spec_refuses_hosts_that_are_not_bare_host_names(bad: str) -> None:
    refused(f"host {bad!r} is not a host name", scope="hosts", hosts=[bad])


def test_spec_refuses_a_pattern_that_does_not_compile_naming_it() -> None:
    refused(r"'deny' pattern '\(unclosed' is not a regular expression", deny=["(unclosed"])


def test_spec_refuses_patterns_that_are_not_a_list_of_strings() -> None:
    refused("'allow' must be a list of at most 100 non-empty strings", allow="/blog/")
    refused("'allow' must be a list", allow=[""])


def test_spec_refuses_a_flag_that_is_not_a_boolean() -> None:
    refused("'robots' must be true or false, got 'no'", robots="no")
    refused("'sitemaps' must be true or false, got 1", sitemaps=1)


@pytest.mark.parametrize("bad", ["", " /1.0", "bot\r\nX-Evil: 1", "bøt/1", "x" * 201, 7])
def test_spec_refuses_a_user_agent_that_cannot_be_a_header(bad: Any) -> None:
    refused("'user_agent' must be 1 to 200 printable ASCII characters", user_agent=bad)


def test_spec_refuses_an_unknown_query_mode() -> None:
    refused(r"'query' must be one of \['sort', 'keep'\], got 'drop'", query="drop")


def test_spec_processor_is_module_colon_function() -> None:
    assert parse(processor="mypkg.pages:process").processor == "mypkg.pages:process"
    refused(
        "'processor' must look like 'module:function', got 'mypkg.pages'", processor="mypkg.pages"
    )


def test_spec_refuses_the_object_processors_of_prefix_runs() -> None:
    refused("'processor' 'sha256' processes S3 objects", processor="sha256")


def test_spec_round_trips_through_as_dict_and_json() -> None:
    spec = parse(
        seeds=[SEED, "http://b.org/x"],
        max_depth=1,
        scope="hosts",
        hosts=["example.com", "b.org"],
        allow=["/x"],
        deny=["/y"],
        robots=False,
        per_host_delay_ms=250,
        user_agent="mybot/2.0",
        query="keep",
        sitemaps=True,
        processor="mypkg:run",
    )
    assert set(spec.as_dict()) == SPEC_FIELDS
    assert parse_crawl_spec(json.loads(json.dumps(spec.as_dict())), "again") == spec


def test_spec_digest_pins_the_spec() -> None:
    assert parse().digest() == parse().digest()
    assert parse().digest() != parse(max_depth=4).digest()
    assert parse().digest().startswith('"crawl-')
    assert len(parse().digest()) == len('"crawl-') + 24 + 1


def test_spec_file_is_parsed_as_json() -> None:
    spec = parse_spec_file(
        json.dumps({"seeds": SEED, "max_pages": 5}).encode(), "tasks/a.crawl.json"
    )
    assert spec.max_pages == 5


def test_spec_file_that_is_not_json_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"crawl spec tasks/a.crawl.json is not JSON"):
        parse_spec_file(b"{seeds: [", "tasks/a.crawl.json")


def test_spec_file_over_the_size_limit_is_refused_unread() -> None:
    with pytest.raises(ValueError, match=f"at most {MAX_SPEC_BYTES}"):
        parse_spec_file(b" " * (MAX_SPEC_BYTES + 1), "tasks/a.crawl.json")


def test_spec_file_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"crawl spec tasks/a.crawl.json: 'max_pages'"):
        parse_spec_file(b'{"seeds": "http://a.com", "max_pages": 0}', "tasks/a.crawl.json")
