"""Writes before a CAS: every one has finished before an error is raised."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from worker.landed import landed


def test_landed_waits_for_every_write_before_raising_the_first_error() -> None:
    release = threading.Event()
    slow_done = threading.Event()

    def fails() -> None:
        raise OSError("the first write failed")

    def slow() -> None:
        release.wait(5)
        slow_done.set()

    with ThreadPoolExecutor(2) as pool:
        writes = [pool.submit(fails), pool.submit(slow)]
        threading.Timer(0.05, release.set).start()
        with pytest.raises(OSError, match="first write failed"):
            landed(writes)
        assert slow_done.is_set()


def test_landed_of_writes_that_all_landed_returns() -> None:
    with ThreadPoolExecutor(2) as pool:
        landed([pool.submit(lambda: None) for _ in range(3)])
