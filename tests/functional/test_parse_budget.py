"""No page costs the parser more than about half a second, however it is built."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.site import Hostile, PageKind, Site, SiteConfig
from tests.functional.loopback import LoopbackServer, static
from worker.fetch import Fetcher, FetchPolicy
from worker.netguard import NetPolicy
from worker.processor import TaskContext, process
from worker.tasks import Task

CPU_LIMIT_S = 1.0
"""Generous: each page below took 2.4 to 14 s of CPU before the budget."""


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with Site(SiteConfig(pages=20, seed=3, page_bytes=(20_000, 80_000))) as running:
        yield running


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        running.routes["/attributes"] = static(
            b"<title>Attributes</title><div " + b" ".join(b"a%d" % i for i in range(40_000)) + b">"
        )
        running.routes["/options"] = static(
            b"<title>Options</title><select>" + b"<option>" * 19_000 + b"</select>"
        )
        yield running


@pytest.fixture(scope="module")
def fetcher() -> Iterator[Fetcher]:
    f = Fetcher(FetchPolicy(attempts=1), NetPolicy.from_cidrs(("127.0.0.0/8",)))
    yield f
    f.close()


def timed(fetcher: Fetcher, url: str) -> tuple[dict[str, Any], float]:
    started = time.thread_time()  # the parse runs on this thread, without the GIL
    row = process(Task(0, url), TaskContext(fetcher, time.monotonic() + 30))
    return row, time.thread_time() - started


def test_parse_budget_cuts_a_deeply_nested_page(site: Site, fetcher: Fetcher) -> None:
    row, cpu_s = timed(fetcher, site.url(Hostile.DEEP_NESTING))
    assert cpu_s < CPU_LIMIT_S
    assert row["error"].startswith("truncated: more than 20000 tags; fields are from the first")
    assert (row["title"], row["h1"]) == ("Deep", "Deep")


def test_parse_budget_cuts_a_page_of_rebuilt_formatting_tags(site: Site, fetcher: Fetcher) -> None:
    row, cpu_s = timed(fetcher, site.url(Hostile.REBUILT_FORMATTING))
    assert cpu_s < CPU_LIMIT_S
    assert row["error"].startswith("truncated: formatting tags the parser could rebuild")
    assert row["title"] == "Rebuilt"


def test_parse_budget_cuts_a_tag_with_too_many_attributes(
    server: LoopbackServer, fetcher: Fetcher
) -> None:
    row, cpu_s = timed(fetcher, server.url("/attributes"))
    assert cpu_s < CPU_LIMIT_S
    assert row["error"].startswith("truncated: a tag with more attributes")
    assert row["title"] == "Attributes"


def test_parse_budget_select_of_many_options_is_cheap_and_whole(
    server: LoopbackServer, fetcher: Fetcher
) -> None:
    row, cpu_s = timed(fetcher, server.url("/options"))
    assert cpu_s < CPU_LIMIT_S
    assert (row["title"], row.get("error")) == ("Options", None)


def test_parse_budget_leaves_ordinary_pages_whole(site: Site, fetcher: Fetcher) -> None:
    rows = [timed(fetcher, site.url(f"/page/{i}"))[0] for i in site.pages_of(PageKind.OK)]
    assert [row.get("error") for row in rows] == [None] * len(rows)
