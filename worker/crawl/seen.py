"""The run's seen-set: 64-bit URL hashes in one flat open-addressing table.

Why not `set[int]`: at 1M URLs a set of ints holds about 60-70 MB (a 32-byte int
object per hash plus the set's slots), and a crawl also holds its frontier,
pages and threads in the same 1,024 MB function. Here each hash is 8 bytes in
an `array('Q')` kept at most 70 % full, so 1M hashes take 16 MB and 10M take
128 MB (bench/crawl_memory.py measures it). The hashes are uniform (blake2b), so
the slot is just the hash's top bits and linear probing stays short (about 2
probes to find a hash, 6 to miss at the fullest). 0 marks an empty slot; the
one URL in 2^64 that hashes to 0 is tracked by a flag.

Collisions: two different URLs with one hash make the second look seen, and it
is never crawled. By the birthday bound the chance that any pair of n URLs
collides is about n^2 / 2^65: 2.7e-10 at 100k, 2.7e-8 at 1M, 2.7e-6 at 10M (the
most a run may hold).

In S3 the set is the concatenation of `encode`d objects, 8 bytes big-endian per
hash: small, order-free, and merged by `extend_from` in any order.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Iterable, Iterator

_MIN_BITS = 10
_MAX_LOAD = 0.7
_LIMIT = 1 << 64


def url_hash(url: str) -> int:
    """A normalised URL's 64-bit identity in the seen-set."""
    return int.from_bytes(hashlib.blake2b(url.encode(), digest_size=8).digest(), "big")


class SeenSet:
    """A set of 64-bit hashes at 8 bytes each (plus the table's free slots)."""

    __slots__ = ("_count", "_grow_at", "_mask", "_shift", "_table", "_zero")

    def __init__(self, hashes: Iterable[int] = ()) -> None:
        self._zero = False
        self._count = 0
        self._table = array("Q")
        self._resize(_MIN_BITS)
        for h in hashes:
            self.add(h)

    def add(self, h: int) -> bool:
        """Add a hash; True when it was new."""
        if not 0 < h < _LIMIT:
            if h != 0:
                raise ValueError(f"a seen-set hash is 64-bit unsigned, got {h}")
            new, self._zero = not self._zero, True
            self._count += new
            return new
        table, mask = self._table, self._mask
        i = h >> self._shift
        while (slot := table[i]) != 0:
            if slot == h:
                return False
            i = (i + 1) & mask
        table[i] = h
        self._count += 1
        if self._count > self._grow_at:
            self._resize(self._mask.bit_length() + 1)
        return True

    def __contains__(self, h: object) -> bool:
        if not isinstance(h, int) or not 0 <= h < _LIMIT:
            return False
        if h == 0:
            return self._zero
        table, mask = self._table, self._mask
        i = h >> self._shift
        while (slot := table[i]) != 0:
            if slot == h:
                return True
            i = (i + 1) & mask
        return False

    def __len__(self) -> int:
        return self._count

    @property
    def table_bytes(self) -> int:
        """Memory the table holds (free slots included): what the set costs a container."""
        return len(self._table) * self._table.itemsize

    def __iter__(self) -> Iterator[int]:
        if self._zero:
            yield 0
        yield from (h for h in self._table if h)

    def extend_from(self, body: bytes) -> int:
        """Merge an `encode`d object; how many of its hashes were new."""
        if len(body) % 8:
            raise ValueError(f"a seen-set object is 8 bytes per hash; this one is {len(body)}")
        hashes = array("Q", body)
        if sys.byteorder == "little":
            hashes.byteswap()
        self._reserve(self._count + len(hashes))
        before = self._count
        for h in hashes:
            self.add(h)
        return self._count - before

    @staticmethod
    def encode(hashes: Iterable[int]) -> bytes:
        """8 bytes big-endian per hash, the form `extend_from` reads."""
        out = array("Q", hashes)
        if sys.byteorder == "little":
            out.byteswap()
        return out.tobytes()

    def _reserve(self, count: int) -> None:
        """Grow once for `count` hashes rather than doubling step by step on the way."""
        bits = self._mask.bit_length()
        while count > int((1 << bits) * _MAX_LOAD):
            bits += 1
        if bits > self._mask.bit_length():
            self._resize(bits)

    def _resize(self, bits: int) -> None:
        old = self._table
        self._table = table = array("Q", bytes(8 << bits))
        self._mask = mask = (1 << bits) - 1
        self._shift = shift = 64 - bits
        self._grow_at = int((1 << bits) * _MAX_LOAD)
        for h in old:
            if h:
                i = h >> shift
                while table[i]:
                    i = (i + 1) & mask
                table[i] = h
