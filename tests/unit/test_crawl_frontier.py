"""Frontier segments: the JSONL codec, strict decoding, host interleaving, names."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.crawl.frontier import (
    Entry,
    decode_segment,
    encode_segment,
    first_of,
    interleave_by_host,
    segment_name,
)
from worker.exceptions import TaskListError

SEED = Entry("http://a.com/", 0, None)
PAGE = Entry("http://a.com/x", 1, "http://a.com/")
SITEMAP = Entry("http://a.com/sitemap.xml", 0, None, kind="sitemap")


def test_segment_is_compact_jsonl_with_kind_only_when_not_a_page() -> None:
    assert encode_segment([SEED, SITEMAP]) == (
        b'{"u":"http://a.com/","d":0,"f":null}\n'
        b'{"u":"http://a.com/sitemap.xml","d":0,"f":null,"k":"sitemap"}\n'
    )


entries = st.builds(
    Entry,
    url=st.text(min_size=1, max_size=40),
    depth=st.integers(0, 50),
    found_on=st.none() | st.text(max_size=40),
    kind=st.sampled_from(["page", "sitemap"]),
)


@given(st.lists(entries, max_size=20))
def test_segment_round_trips(values: list[Entry]) -> None:
    assert decode_segment(encode_segment(values)) == values


def test_empty_segment_has_no_entries() -> None:
    assert decode_segment(b"") == []


def test_entry_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        Entry("http://a.com/", 0, None, kind="image")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"{not json", "is not JSON"),
        (b"[1, 2]", "is not an entry"),
        (b'{"u": "http://a.com/", "d": 0}', "is not an entry"),
        (b'{"u": "http://a.com/", "d": 0, "f": null, "x": 1}', "is not an entry"),
        (b'{"u": "", "d": 0, "f": null}', "has a field of the wrong kind"),
        (b'{"u": "http://a.com/", "d": -1, "f": null}', "has a field of the wrong kind"),
        (b'{"u": "http://a.com/", "d": true, "f": null}', "has a field of the wrong kind"),
        (b'{"u": "http://a.com/", "d": 0, "f": 3}', "has a field of the wrong kind"),
        (
            b'{"u": "http://a.com/", "d": 0, "f": null, "k": "video"}',
            "has a field of the wrong kind",
        ),
        (b"", "is not JSON"),
    ],
)
def test_decode_segment_names_the_line_it_cannot_read(line: bytes, why: str) -> None:
    body = encode_segment([SEED, PAGE]) + line + b"\n"
    with pytest.raises(TaskListError, match=f"frontier segment line 3 {why}"):
        decode_segment(body)


def test_decode_segment_names_what_it_reads() -> None:
    with pytest.raises(TaskListError, match=r"runs/r/frontier/0000000000\.jsonl line 1"):
        decode_segment(b"?\n", "runs/r/frontier/0000000000.jsonl")


def test_decode_segment_reads_a_last_line_without_its_newline() -> None:
    assert decode_segment(encode_segment([SEED, PAGE])[:-1]) == [SEED, PAGE]


def urls(*spec: str) -> list[Entry]:
    return [Entry(f"http://{u}", 1, None) for u in spec]


def test_interleave_by_host_takes_hosts_in_turn() -> None:
    mixed = urls("a.com/1", "a.com/2", "a.com/3", "b.com/1", "c.com/1", "b.com/2")
    assert [e.url for e in interleave_by_host(mixed)] == [
        "http://a.com/1",
        "http://b.com/1",
        "http://c.com/1",
        "http://a.com/2",
        "http://b.com/2",
        "http://a.com/3",
    ]


def test_interleave_by_host_counts_ports_as_one_host() -> None:
    mixed = urls("a.com/1", "a.com:8080/2", "b.com/1")
    assert [e.url for e in interleave_by_host(mixed)][:2] == ["http://a.com/1", "http://b.com/1"]


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 9)), max_size=30))
def test_interleave_by_host_keeps_every_entry_and_each_hosts_order(
    pairs: list[tuple[str, int]],
) -> None:
    given_entries = [Entry(f"http://{h}.com/{i}", 1, None) for h, i in pairs]
    out = interleave_by_host(given_entries)
    assert Counter(out) == Counter(given_entries)
    for host in "abc":
        assert [e for e in out if e.url.startswith(f"http://{host}.")] == [
            e for e in given_entries if e.url.startswith(f"http://{host}.")
        ]


def test_interleave_by_host_of_nothing_is_nothing() -> None:
    assert interleave_by_host([]) == []


def test_segment_name_sorts_as_offsets_do() -> None:
    assert segment_name(0) == "0000000000.jsonl"
    assert segment_name(9_999_999) == "0009999999.jsonl"
    assert sorted([segment_name(100), segment_name(20)]) == [segment_name(20), segment_name(100)]


def test_segment_name_refuses_an_offset_it_cannot_spell_in_ten_digits() -> None:
    with pytest.raises(ValueError, match="first offset"):
        segment_name(-1)
    with pytest.raises(ValueError, match="first offset"):
        segment_name(10**10)


def test_first_of_inverts_segment_name() -> None:
    assert first_of(segment_name(1234)) == 1234


@pytest.mark.parametrize(
    "name", ["123.jsonl", "0000000000.json", "frontier/0000000000.jsonl", "00000000001.jsonl"]
)
def test_first_of_refuses_other_names(name: str) -> None:
    with pytest.raises(ValueError, match="not a frontier segment name"):
        first_of(name)
