"""The seen-set: exact membership at 8 bytes a hash, and its S3 form."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.crawl.seen import SeenSet, url_hash

hashes64 = st.integers(min_value=0, max_value=2**64 - 1)


def test_url_hash_is_the_first_8_bytes_of_blake2b_big_endian() -> None:
    digest = hashlib.blake2b(b"http://example.com/", digest_size=8).digest()
    assert url_hash("http://example.com/") == int.from_bytes(digest, "big")


def test_seen_add_says_whether_the_hash_was_new() -> None:
    seen = SeenSet()
    assert seen.add(42)
    assert not seen.add(42)
    assert 42 in seen
    assert len(seen) == 1


def test_seen_holds_zero_and_the_largest_hash() -> None:
    seen = SeenSet()
    assert seen.add(0)
    assert not seen.add(0)
    assert seen.add(2**64 - 1)
    assert 0 in seen
    assert 2**64 - 1 in seen
    assert len(seen) == 2


def test_seen_refuses_a_hash_that_is_not_64_bit_unsigned() -> None:
    with pytest.raises(ValueError, match="64-bit"):
        SeenSet().add(2**64)
    with pytest.raises(ValueError, match="64-bit"):
        SeenSet().add(-1)


def test_seen_never_contains_what_cannot_be_a_hash() -> None:
    seen = SeenSet([1])
    assert "1" not in seen
    assert -1 not in seen
    assert 2**64 not in seen


def test_seen_keeps_every_hash_while_it_grows() -> None:
    rng = random.Random(7)
    added = {rng.getrandbits(64) for _ in range(50_000)}
    seen = SeenSet(added)
    assert len(seen) == len(added)
    assert all(h in seen for h in added)
    assert sum(rng.getrandbits(64) in seen for _ in range(10_000)) == 0


def test_seen_copes_with_hashes_that_share_their_top_bits() -> None:
    crowded = [(5 << 54) | i for i in range(1, 3000)]  # one home slot for all of them
    seen = SeenSet(crowded)
    assert all(h in seen for h in crowded)
    assert (5 << 54) | 3000 not in seen


@given(st.lists(hashes64, max_size=300))
def test_seen_behaves_like_a_set(values: list[int]) -> None:
    seen = SeenSet()
    model: set[int] = set()
    for h in values:
        assert seen.add(h) == (h not in model)
        model.add(h)
    assert len(seen) == len(model)
    assert set(seen) == model


@given(st.lists(hashes64, max_size=300))
def test_seen_encode_round_trips_through_extend_from(values: list[int]) -> None:
    seen = SeenSet()
    assert seen.extend_from(SeenSet.encode(values)) == len(set(values))
    assert set(seen) == set(values)


def test_seen_encode_is_8_bytes_big_endian_per_hash() -> None:
    assert SeenSet.encode([1, 2**64 - 2]) == (1).to_bytes(8, "big") + (2**64 - 2).to_bytes(8, "big")


def test_seen_extend_from_counts_only_new_hashes() -> None:
    seen = SeenSet([1, 2])
    assert seen.extend_from(SeenSet.encode([2, 3, 3, 4])) == 2
    assert len(seen) == 4


def test_seen_extend_from_refuses_a_torn_object() -> None:
    with pytest.raises(ValueError, match="8 bytes per hash"):
        SeenSet().extend_from(b"\x00" * 12)


def test_seen_extend_from_an_empty_object_adds_nothing() -> None:
    assert SeenSet().extend_from(b"") == 0


def test_seen_costs_8_bytes_a_slot_at_most_70_percent_full() -> None:
    rng = random.Random(3)
    seen = SeenSet(rng.getrandbits(64) | 1 for _ in range(100_000))
    assert 100_000 / 0.7 * 8 <= seen.table_bytes <= 2 * 100_000 / 0.7 * 8
