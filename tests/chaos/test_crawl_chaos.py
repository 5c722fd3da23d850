"""A crawl under the chaos fault mix: the frontier log must come out as an uninterrupted
crawl's, whatever S3 errors, lost answers, throttled, dropped and duplicated hand-offs,
crashes and hangs it went through.

The pages come from a loopback `CrawlSite` (real HTTP); the containers run the chaos
processor's crawl variant (`devstack.chaos.processor.crawl_page`: the same seeded faults,
then the real page fetch). A crawl's tasks are the pages it finds, so a crash and a hang
are planted by URL. The chaos `Oracle` judges indices, legs and the summary (run.json's
`total` is 0 for a crawl, so nothing here leans on it); this test judges URLs against
the site's oracle, and the notices.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from devstack.chaos import ChaosConfig, ChaosStack, RunCheck
from devstack.chaos.processor import CRASH_ONCE, CRAWL_PROCESSOR, HANG_ONCE, PLANTED_URLS
from devstack.crawlsite import CrawlSite, CrawlSiteConfig, RobotsStyle, UniformLatency
from devstack.lambda_runtime.config import CODE_ROOT
from tests.chaos.conftest import report_line
from tests.chaos.test_chaos import CONFIG
from worker.checkpoint import Checkpoint

pytestmark = pytest.mark.chaos

MAX_DEPTH = 20
"""Past the site's diameter, and no calendar: the set of pages does not hang on depths
(the depth-bounded crawl is its own test, on the site with its calendar)."""
SITE = CrawlSiteConfig(
    hosts=3,
    pages_per_host=10,
    links_per_page=3,
    seed=29,
    latency=UniformLatency(0.005, 0.03),
    robots=(RobotsStyle.DISALLOW_PRIVATE, RobotsStyle.MISSING, RobotsStyle.PLAIN),
    rate_limited_pages=(3,),
    retry_after_s=1,
    calendar=False,
)
WAIT_S = 240.0


@pytest.fixture
def site() -> Iterator[CrawlSite]:
    with CrawlSite(SITE) as running:
        yield running


def crawl_config(site: CrawlSite) -> ChaosConfig:
    """test_chaos's fault mix (no killers: a crawl's pages are not a list to plant them in)
    with a hang planted on the first attempt of a page one link from a seed and a crash on
    one two links away: early in the log (a crawl stopped by max_pages meets them too), the
    hang first (a crash in the hanging leg's container would take it before its timeout)."""
    planted = f"{HANG_ONCE} {site.url(1, '/p/0')}\n{CRASH_ONCE} {site.url(0, '/p/2')}\n"
    return replace(
        CONFIG,
        seed=20261135,  # no first attempt of the first 70 pages draws a crash over a planting
        runs=1,
        parallel=1,
        killers=0,
        once=0,
        environment={
            "BATON_PROCESSOR": CRAWL_PROCESSOR,
            "BATON_ALLOW_NETS": "127.0.0.0/8",
            "BATON_REQUEST_TIMEOUT_S": "2",
            PLANTED_URLS: planted,
        },
    )


@dataclass
class Outcome:
    """A crawl run under chaos, as S3, the logs and the notice queue saw it at the end."""

    run_id: str
    check: RunCheck
    rows: list[dict[str, Any]]
    summary: dict[str, Any] | None
    checkpoints: list[Checkpoint]
    inboxes: list[str]
    """Inbox objects left, every chain's (links sent and never taken in)."""
    notices: list[dict[str, Any]]
    early: list[dict[str, Any]]
    """Notices received while the run had no summary yet."""
    notice_record: dict[str, Any] | None
    still_active: bool
    faults: dict[str, int]

    def urls(self) -> Counter[str]:
        return Counter(row["url"] for row in self.rows)


def crawl_under_chaos(
    tmp_path: Path, site: CrawlSite, spec: dict[str, Any], chains: int = 1
) -> Outcome:
    """Upload `spec` as tasks/site.crawl.json under the fault mix, wait for its summary
    (collecting notices all along), let late deliveries run out, and read everything."""
    assert Path(__file__).resolve().parents[2] == CODE_ROOT  # the containers run this checkout
    started = time.monotonic()
    notices: list[dict[str, Any]] = []
    early: list[dict[str, Any]] = []
    config = crawl_config(site)
    if chains > 1:
        config = replace(config, chains=chains, max_concurrency=8)
    with ChaosStack(config, tmp_path) as chaos:
        body = json.dumps(spec).encode()
        source = chaos.upload_body("crawl", body, 0, key="tasks/site.crawl.json")
        run_id = chaos.run_id(source)
        assert run_id is not None, "the upload started no run"
        deadline = time.monotonic() + WAIT_S
        while chaos.store.load_summary(run_id) is None:
            assert time.monotonic() < deadline, chaos.checkpoint(run_id)
            received = chaos.stack.notices()
            notices += received
            if chaos.store.load_summary(run_id) is None:
                early += received  # sent before the summary was written
            time.sleep(0.2)
        chaos.settle()
        notices += chaos.stack.notices(wait_s=2)
        checkpoints = chaos.store.load_chains(run_id)
        inboxes = [key for cp in checkpoints for key in chaos.store.inbox_keys(run_id, cp.chain)]
        outcome = Outcome(
            run_id,
            chaos.check(source),  # not `healthy`: /missing is a 404 row
            chaos.rows(run_id),
            chaos.store.load_summary(run_id),
            checkpoints,
            inboxes,
            notices,
            early,
            chaos.store.load_notice(run_id),
            run_id in set(chaos.store.active_runs()),
            chaos.faults(),
        )
    report_line(
        f"crawl chaos {spec.get('max_pages', '')}: {len(outcome.rows)} rows, "
        f"{outcome.check.legs} legs, {time.monotonic() - started:.0f} s, faults {outcome.faults}"
    )
    return outcome


def assert_only_expected_failures(site: CrawlSite, outcome: Outcome) -> None:
    failed = {row["url"]: row["error"] for row in outcome.rows if row.get("error")}
    assert failed.pop(site.url(0, "/missing")) == "HTTP 404"
    # a 429 with too little of a fair leg left to wait is recorded failed (Leg._had_fair_share)
    assert all(error.startswith("HTTP 429") for error in failed.values()), failed


def assert_ended_once_and_told(outcome: Outcome, pages: int) -> None:
    """The chaos oracle's invariants, one summary, nothing stranded, notices only at the end."""
    check = outcome.check
    problems = check.problems  # over chains, a woken chain ends once per leg (the oracle)
    assert check.forks == 0, problems
    assert (check.lost, check.duplicated) == (0, 0), problems
    assert problems == []
    assert check.status == "done"
    assert outcome.summary is not None
    assert (outcome.summary["status"], outcome.summary["processed"]) == ("done", pages)
    for cp in outcome.checkpoints:  # every log worked to its end, no holes, no mail left
        assert (cp.status, cp.position, list(cp.holes)) == ("done", cp.range_end, []), cp
    assert outcome.inboxes == []
    assert not outcome.still_active
    assert outcome.early == []
    assert outcome.notices, "no notice"
    assert {n["detail"]["run_id"] for n in outcome.notices} == {outcome.run_id}
    assert outcome.notice_record is not None
    # containers died, and every layer injected some of its faults
    faults = outcome.faults
    assert faults["crash"] + faults["timeout"] >= 1
    assert faults["duplicate"] + faults["drop"] + faults["throttle"] >= 1
    assert faults["s3_500"] + faults["s3_503"] + faults["s3_after_write"] >= 1


def test_chaos_crawl_finds_the_uninterrupted_crawls_pages_each_once_and_one_notice_at_the_end(
    tmp_path: Path, site: CrawlSite
) -> None:
    seeds = site.seed_urls()
    expected = site.expected(seeds, MAX_DEPTH)
    spec = {"seeds": seeds, "max_depth": MAX_DEPTH, "per_host_concurrency": 2}
    outcome = crawl_under_chaos(tmp_path, site, spec)

    urls = outcome.urls()
    assert {url: n for url, n in urls.items() if n > 1} == {}
    assert sorted(urls) == sorted(expected)
    assert_only_expected_failures(site, outcome)
    assert_ended_once_and_told(outcome, len(expected))
    assert outcome.faults["crash"] >= 1  # the planted ones
    assert outcome.faults["timeout"] >= 1


def test_chaos_crawl_stopped_by_max_pages_has_exactly_that_many_pages_each_once(
    tmp_path: Path, site: CrawlSite
) -> None:
    seeds = site.seed_urls()
    limit = 30
    spec = {"seeds": seeds, "max_depth": MAX_DEPTH, "max_pages": limit}
    outcome = crawl_under_chaos(tmp_path, site, spec)

    urls = outcome.urls()
    assert {url: n for url, n in urls.items() if n > 1} == {}
    assert len(urls) == limit  # a redone commit rewrote its segment, never added to it
    assert set(urls) <= set(site.expected(seeds, MAX_DEPTH))
    assert_ended_once_and_told(outcome, limit)


def test_chaos_crawl_over_three_chains_finds_every_page_once(
    tmp_path: Path, site: CrawlSite
) -> None:
    """Hosts partitioned over chains, links crossing through inboxes, woken chains: the
    same pages as one chain's crawl, each once, under the same faults."""
    seeds = site.seed_urls()
    expected = site.expected(seeds, MAX_DEPTH)
    spec = {"seeds": seeds, "max_depth": MAX_DEPTH}
    outcome = crawl_under_chaos(tmp_path, site, spec, chains=3)

    urls = outcome.urls()
    assert {url: n for url, n in urls.items() if n > 1} == {}
    assert sorted(urls) == sorted(expected)
    assert len(outcome.checkpoints) == 3
    assert_only_expected_failures(site, outcome)
    assert outcome.summary is not None
    assert outcome.summary["chains"] == 3
    assert_ended_once_and_told(outcome, len(expected))


@pytest.fixture
def calendar_site() -> Iterator[CrawlSite]:
    with CrawlSite(replace(SITE, calendar=True)) as running:
        yield running


def test_chaos_crawl_to_a_depth_finds_the_oracles_pages_at_their_depths(
    tmp_path: Path, calendar_site: CrawlSite
) -> None:
    """Bounded by depth, the infinite calendar on: redone commits, cold rebuilds and
    duplicate legs must keep the log breadth first, or a page comes in too deep and what
    lies under it is lost."""
    site = calendar_site
    seeds = site.seed_urls()
    expected = site.expected(seeds, 3)
    outcome = crawl_under_chaos(tmp_path, site, {"seeds": seeds, "max_depth": 3})

    assert {url: n for url, n in outcome.urls().items() if n > 1} == {}
    assert {row["url"]: row["depth"] for row in outcome.rows} == expected
    assert_only_expected_failures(site, outcome)
    assert_ended_once_and_told(outcome, len(expected))
