"""`baton status --watch`: it follows a run, and gives up on one that never starts."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import pytest

from baton.follow import follow
from baton.target import CliError
from tests.unit.test_progress import RECORD
from worker.store import RunStore


def test_follow_gives_up_on_a_run_that_has_a_record_but_never_starts(s3: Any, bucket: str) -> None:
    # A start that died after run.json and before any checkpoint: nothing will move it
    # until the sweep, so --watch must say so instead of waiting forever.
    store = RunStore.over(s3, bucket)
    store.create_run(replace(RECORD, bucket=bucket))
    with pytest.raises(CliError, match="run r has not started within 0s"):
        follow(store, "r", io.StringIO(), interval=0.01, wait_s=0.05)
