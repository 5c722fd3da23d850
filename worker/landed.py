"""Writes that must all have landed before the CAS that counts them."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, wait
from typing import Any


def landed(writes: Sequence[Future[Any]]) -> None:
    """Wait for every write, then raise the first one's error, if any: raising at the
    first failure would leave the others in flight, and one landing after the redone
    batch's write of the same key would put a stale object where the CAS counted a new one."""
    wait(writes)
    for write in writes:
        write.result()
