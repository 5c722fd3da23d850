"""Every result row has one schema, whatever happened to its task."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from devstack.site import Hostile, PageKind, Site, SiteConfig
from worker.fetch import Fetcher, FetchPolicy
from worker.netguard import NetPolicy
from worker.processor import Processor, TaskContext, process, run_tasks
from worker.tasks import RESULT_FIELDS, Task


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with Site(SiteConfig(pages=4, broken_share=0.0, page_bytes=(2_000, 4_000))) as running:
        yield running


@pytest.fixture
def ctx() -> Iterator[TaskContext]:
    fetcher = Fetcher(
        FetchPolicy(attempts=2, backoff_initial_s=0.01),
        NetPolicy.from_cidrs(("127.0.0.0/8",)),
        sleep=lambda _: None,
    )
    yield TaskContext(fetcher, time.monotonic() + 10)
    fetcher.close()


def row_of(task: Task, ctx: TaskContext, processor: Processor = process) -> dict[str, Any]:
    with ThreadPoolExecutor(1) as pool:
        (outcome,) = run_tasks([task], processor, ctx, pool)
    assert outcome.row is not None
    return outcome.row


def test_result_row_of_a_page_has_every_field(site: Site, ctx: TaskContext) -> None:
    index = site.pages_of(PageKind.OK)[0]
    row = row_of(Task(3, site.url(f"/page/{index}"), id="a"), ctx)
    assert tuple(row) == RESULT_FIELDS
    assert (row["index"], row["id"], row["error"]) == (3, "a", None)
    assert row["title"] == site.page(index).title


def test_result_row_of_a_fetch_error_has_every_field(ctx: TaskContext) -> None:
    row = row_of(Task(0, "http://127.0.0.1:9/nothing-listens"), ctx)
    assert tuple(row) == RESULT_FIELDS
    assert row["error"].startswith("ConnectionError")
    assert (row["attempts"], row["status"], row["title"]) == (2, None, None)


def test_result_row_of_a_page_that_is_not_html_has_every_field(
    site: Site, ctx: TaskContext
) -> None:
    row = row_of(Task(0, site.url(Hostile.PNG)), ctx)
    assert tuple(row) == RESULT_FIELDS
    assert (row["status"], row["error"], row["links"]) == (200, "not HTML: image/png", None)


def test_result_row_of_a_bad_task_entry_has_every_field(ctx: TaskContext) -> None:
    row = row_of(Task(5, None, error="task URL is empty"), ctx)
    assert tuple(row) == RESULT_FIELDS
    assert (row["index"], row["url"], row["error"]) == (5, None, "task URL is empty")


def test_result_row_recorded_failed_by_the_leg_has_every_field() -> None:
    # The leg records a task that ran out of time this way (worker.leg).
    row = {**Task(7, "http://example.com/").result_base(), "error": "no time left"}
    assert tuple(row) == RESULT_FIELDS


def test_result_row_keeps_a_custom_processors_extra_fields(ctx: TaskContext) -> None:
    def custom(task: Task, context: TaskContext) -> dict[str, Any]:
        return {"title": "mine", "score": 0.5}

    row = row_of(Task(0, "http://example.com/"), ctx, custom)
    assert tuple(row) == (*RESULT_FIELDS, "score")
    assert (row["title"], row["score"], row["error"]) == ("mine", 0.5, None)
