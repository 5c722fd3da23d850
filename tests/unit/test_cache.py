"""The container cache: a hit costs one revalidation, a change is refused, not mixed in."""

from __future__ import annotations

import pytest

from cache import ObjectCache


class Changed(Exception):
    pass


def built(value: str, size: int = 3) -> tuple[str, int]:
    return value, size


def test_cache_first_read_is_a_miss_that_builds() -> None:
    cache = ObjectCache()
    assert cache.load("k", '"1"', revalidate=lambda: None, build=lambda: built("abc")) == (
        "abc",
        False,
    )
    assert (cache.stats.misses, cache.stats.bytes_downloaded) == (1, 3)


def test_cache_warm_read_revalidates_and_does_not_build() -> None:
    cache = ObjectCache()
    cache.load("k", '"1"', revalidate=lambda: None, build=lambda: built("abc"))
    checks: list[str] = []

    def never() -> tuple[str, int]:
        raise AssertionError("a hit must not build")

    assert cache.load("k", '"1"', revalidate=lambda: checks.append("304"), build=never) == (
        "abc",
        True,
    )
    assert checks == ["304"]
    assert (cache.stats.hits, cache.stats.bytes_downloaded) == (1, 3)


def test_cache_a_changed_object_raises_from_the_revalidation() -> None:
    cache = ObjectCache()
    cache.load("k", '"1"', revalidate=lambda: None, build=lambda: built("abc"))

    def changed() -> None:
        raise Changed("not that version any more")

    with pytest.raises(Changed):
        cache.load("k", '"1"', revalidate=changed, build=lambda: built("new"))


def test_cache_another_etag_of_the_slot_builds_again() -> None:
    cache = ObjectCache()
    cache.load("k", '"1"', revalidate=lambda: None, build=lambda: built("old"))
    assert cache.load("k", '"2"', revalidate=lambda: None, build=lambda: built("new")) == (
        "new",
        False,
    )


def test_cache_evicts_the_least_recently_used_entry() -> None:
    cache = ObjectCache(max_entries=1)
    cache.load("a", '"1"', revalidate=lambda: None, build=lambda: built("a"))
    cache.load("b", '"1"', revalidate=lambda: None, build=lambda: built("b"))
    assert cache.load("a", '"1"', revalidate=lambda: None, build=lambda: built("a"))[1] is False
