"""Crawl mode end to end on the embedded stack: a loopback site of several hosts over real
HTTP, legs of two seconds handed off through the local Lambda runtime, S3 over HTTP, and
every run judged by the site's own oracle (`CrawlSite.expected`) and by what it served.

The site (`devstack.crawlsite`): host 0 disallows /private/ and names a sitemap, host 1
asks a Crawl-delay, host 2's robots.txt is a 404 (allow all), host 3's a 500 (disallow
all), host 4 is out of scope and reached only through redirects (the site redirects to
hosts 0, 2 and 4). Redirects as README "Crawl mode" documents them: one row for the
linked URL, links from the final page filtered by scope, so the oracle's
`redirects_leave_scope=True` (its default).

The containers run this checkout's code: `code_dir` is set to it, and a container is a
`python -c` whose cwd is `code_dir`, so `sys.path[0]` (the cwd) wins over the
interpreter's editable install of another worktree (asserted below).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from baton.cli import main
from devstack.crawlsite import (
    CrawlSite,
    CrawlSiteConfig,
    Request,
    RobotsStyle,
    UniformLatency,
    normalise,
    resolve,
)
from devstack.demo import LocalRun
from devstack.stack import EmbeddedStack
from tests.integration.test_fanout_on_stack import wait_for
from worker.crawl.steps import STRIDE as CHAIN_STRIDE
from worker.store import RunStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
IN_SCOPE = (0, 1, 2, 3)
OUTSIDE = 4
DELAY_HOST = 1
DELAY_S = 0.3
PER_HOST = 2
MAX_DEPTH = 3
RETRY_AFTER_S = 1
"""Within a leg's working time (about 1.4 s): a 429 early in a leg is waited out in it,
one late in a leg is deferred to the next leg."""
CLOCK_SLACK_S = 0.06
"""The site stamps a request when its handler thread reads it, the crawler paces when it
sends: on this machine's 2 shared cores (load average near 10) the two differ by up to
about 50 ms. A fifth of the delay; a lost delay shows as gaps near 0."""
SITE = CrawlSiteConfig(
    hosts=5,
    pages_per_host=12,
    links_per_page=3,
    seed=11,
    latency=UniformLatency(0.02, 0.06),
    robots=(
        RobotsStyle.DISALLOW_PRIVATE,
        RobotsStyle.CRAWL_DELAY,
        RobotsStyle.MISSING,
        RobotsStyle.ERROR,
        RobotsStyle.PLAIN,
    ),
    crawl_delay_s=DELAY_S,
    rate_limited_pages=(3,),
    retry_after_s=RETRY_AFTER_S,
)


@pytest.fixture(scope="module")
def site() -> Iterator[CrawlSite]:
    with CrawlSite(SITE) as running:
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    bucket = f"baton-crawl-{time.time_ns() % 10**12}"
    function = LocalRun(timeout_s=2.0, margin_ms=600).function(bucket)
    function = replace(
        function,
        code_dir=REPO,
        environment={**function.environment, "BATON_BATCH_SIZE": "10"},
    )
    assert (function.code_dir / "worker" / "crawl" / "steps.py").is_file()
    log = tmp_path_factory.mktemp("crawl-stack") / "containers.log"
    running = EmbeddedStack(function, bucket=bucket, log_file=log, sweep_interval_s=1.0).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def store(stack: EmbeddedStack) -> Iterator[RunStore]:
    s3 = stack.s3_client()
    yield RunStore.over(s3, stack.bucket, "runs/")
    s3.close()


def start_crawl(stack: EmbeddedStack, spec: dict[str, Any]) -> str:
    """A manual crawl (the payload `baton crawl` sends); its run id."""
    client = stack.lambda_client()
    try:
        response = client.invoke(
            FunctionName=stack.function.name,
            Payload=json.dumps({"bucket": stack.bucket, "crawl": spec}).encode(),
        )
        answer = json.loads(response["Payload"].read())
    finally:
        client.close()
    assert answer.get("ok"), answer
    return str(answer["results"][0]["run_id"])


def finished(store: RunStore, run_id: str, timeout_s: float = 60) -> dict[str, Any]:
    summary: dict[str, Any] = wait_for(
        f"the summary of {run_id}", lambda: store.load_summary(run_id), timeout_s
    )
    assert summary["status"] == "done", summary
    return summary


def rows_by_url(store: RunStore, run_id: str) -> dict[str, dict[str, Any]]:
    """Every row, keyed by its URL; fails if any URL has two rows."""
    rows = list(store.rows(run_id))
    twice = {url: n for url, n in Counter(row["url"] for row in rows).items() if n > 1}
    assert not twice, f"URLs with more than one row: {twice}"
    return {row["url"]: row for row in rows}


def index(row: dict[str, Any]) -> int:
    return int(row["index"])


def depths(rows: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {url: row["depth"] for url, row in rows.items()}


@dataclass(frozen=True)
class Crawled:
    """One crawl and everything the site saw of it, taken when it ended."""

    run_id: str
    summary: dict[str, Any]
    rows: dict[str, dict[str, Any]]
    served: Counter[str]
    max_concurrent: dict[int, int]
    requests: list[Request]
    elapsed_s: float


def crawl_site(
    site: CrawlSite, stack: EmbeddedStack, store: RunStore, spec: dict[str, Any]
) -> Crawled:
    site.reset()
    started = time.monotonic()
    run_id = start_crawl(stack, spec)
    summary = finished(store, run_id)
    elapsed = time.monotonic() - started
    return Crawled(
        run_id,
        summary,
        rows_by_url(store, run_id),
        site.served(),
        site.max_concurrent,
        site.requests(),
        elapsed,
    )


@pytest.fixture(scope="module")
def main_crawl(site: CrawlSite, stack: EmbeddedStack, store: RunStore) -> Crawled:
    """Hosts 0-3 from their home pages to MAX_DEPTH, robots obeyed, two requests per host."""
    spec = {
        "seeds": site.seed_urls(IN_SCOPE),
        "max_depth": MAX_DEPTH,
        "per_host_concurrency": PER_HOST,
    }
    return crawl_site(site, stack, store, spec)


def expected_main(site: CrawlSite) -> dict[str, int]:
    return site.expected(site.seed_urls(IN_SCOPE), MAX_DEPTH)


def redirect_hops(site: CrawlSite, rows: dict[str, dict[str, Any]]) -> Counter[str]:
    """The redirect targets the crawl fetched on its way: one per redirect row."""
    hops: Counter[str] = Counter()
    for url in rows:
        location = site.page(url).location
        if location is not None:
            hops[normalise(location) or location] += 1
    return hops


# --- what the crawl found --------------------------------------------------------------


def test_crawl_on_stack_finds_exactly_the_oracles_pages_each_once(
    site: CrawlSite, main_crawl: Crawled
) -> None:
    expected = expected_main(site)
    rows = main_crawl.rows  # one row per URL, or rows_by_url failed
    assert sorted(rows) == sorted(expected)
    assert main_crawl.summary["total"] == len(expected)
    assert main_crawl.summary["crawl"]["depth_reached"] == MAX_DEPTH
    # robots.txt: host 0's /private/ absent (linked from its home), the 5xx host absent,
    # the 4xx host present.
    assert site.url(0, "/private/0") not in rows
    assert not [url for url in rows if url.startswith(site.host_url(3))]
    assert site.url(2, "/") in rows
    assert site.url(2, "/p/0") in rows
    assert rows[site.url(0, "/missing")]["status"] == 404


def test_crawl_on_stack_depth_is_each_pages_shortest_distance_breadth_first(
    site: CrawlSite, main_crawl: Crawled
) -> None:
    in_log_order = [row["depth"] for row in sorted(main_crawl.rows.values(), key=index)]
    assert in_log_order == sorted(in_log_order), in_log_order
    assert depths(main_crawl.rows) == expected_main(site)


def test_crawl_on_stack_rows_carry_depth_and_the_page_that_first_linked_them(
    site: CrawlSite, main_crawl: Crawled
) -> None:
    rows = main_crawl.rows
    for url, row in rows.items():
        if row["depth"] == 0:
            assert row["found_on"] is None, row
            continue
        parent = rows[row["found_on"]]
        assert parent["depth"] == row["depth"] - 1, (url, parent)
        final = normalise(parent["final_url"])
        assert final is not None
        linked = {resolve(final, link.href) for link in site.page(final).links}
        assert url in linked, f"{row['found_on']} (ended at {final}) does not link to {url}"


def test_crawl_on_stack_redirect_is_one_row_for_the_linked_url_ending_at_its_target(
    site: CrawlSite, main_crawl: Crawled
) -> None:
    rows = main_crawl.rows
    redirects = {url: site.page(url).location for url in rows if site.page(url).location}
    assert redirects, "the crawl met no redirect: the site or the depth changed"
    assert any(f"127.0.0.{2 + OUTSIDE}:" in str(target) for target in redirects.values())
    for url, target in redirects.items():
        assert (rows[url]["status"], rows[url]["final_url"]) == (200, target), rows[url]


def test_crawl_on_stack_fetched_each_page_once_and_nothing_out_of_scope_but_redirect_hops(
    site: CrawlSite, main_crawl: Crawled
) -> None:
    rows = main_crawl.rows
    expected = Counter(rows.keys()) + redirect_hops(site, rows)
    assert expected - main_crawl.served == Counter()  # every page and hop fetched
    extra = main_crawl.served - expected
    # A redirect to another host goes on in that host's turn (worker/leg.py); a leg that
    # ends first leaves the next leg to start the task again from the linked URL.
    assert {url: n for url, n in extra.items() if n > 1 or not site.page(url).location} == {}
    outside = [r for r in main_crawl.requests if r.host == OUTSIDE]
    outside_urls = {normalise(site.url(OUTSIDE, r.target)) for r in outside}
    assert outside_urls == {u for u in redirect_hops(site, rows) if f"127.0.0.{2 + OUTSIDE}:" in u}
    assert "/robots.txt" not in {r.target for r in outside}  # its rules never asked for
    robots = Counter(r.host for r in main_crawl.requests if r.target == "/robots.txt")
    assert robots == Counter(IN_SCOPE)  # once per origin per run, across every leg


# --- politeness ------------------------------------------------------------------------


def test_crawl_on_stack_never_exceeds_the_per_host_concurrency(main_crawl: Crawled) -> None:
    assert all(n <= PER_HOST for n in main_crawl.max_concurrent.values()), main_crawl.max_concurrent
    assert max(main_crawl.max_concurrent.values()) == PER_HOST  # the cap was reached


def test_crawl_on_stack_keeps_the_crawl_delay_across_hand_offs(
    site: CrawlSite, main_crawl: Crawled
) -> None:
    delayed = sorted(r.started for r in main_crawl.requests if r.host == DELAY_HOST)
    assert len(delayed) >= 8
    gaps = [b - a for a, b in itertools.pairwise(delayed)]
    assert min(gaps) >= DELAY_S - CLOCK_SLACK_S, sorted(gaps)[:5]
    # The host's pages took several legs: the pause rode in the checkpoint to the next.
    assert delayed[-1] - delayed[0] > 2 * 2.0
    assert main_crawl.summary["legs"] >= 3, main_crawl.summary


def requests_of(site: CrawlSite, crawled: Crawled, url: str) -> list[Request]:
    return sorted(
        (r for r in crawled.requests if normalise(site.url(r.host, r.target)) == url),
        key=lambda r: r.started,
    )


def test_crawl_on_stack_page_answering_429_once_is_retried_into_a_200_row(
    site: CrawlSite, main_crawl: Crawled
) -> None:
    limited = [u for u in site.rate_limited_urls() if u in main_crawl.rows]
    assert len(limited) >= 2
    for url in limited:
        row = main_crawl.rows[url]
        assert (row["status"], row.get("error")) == (200, None), row
        assert [r.status for r in requests_of(site, main_crawl, url)] == [429, 200]


def test_crawl_on_stack_waits_out_a_429s_retry_after_across_the_hand_off(
    site: CrawlSite, main_crawl: Crawled
) -> None:
    for url in [u for u in site.rate_limited_urls() if u in main_crawl.rows]:
        throttled, retried = requests_of(site, main_crawl, url)
        assert retried.started - throttled.ended >= RETRY_AFTER_S - CLOCK_SLACK_S, url


# --- traps and bounds ------------------------------------------------------------------


def test_crawl_on_stack_calendar_trap_stops_at_max_depth(main_crawl: Crawled) -> None:
    calendar = {u: row["depth"] for u, row in main_crawl.rows.items() if "/cal/" in u}
    assert sorted(calendar.values()) == [1, 2, 2, 3, 3]  # 2026-11, then a month each way
    asked = [r for r in main_crawl.requests if r.target.startswith("/cal/")]
    assert len(asked) == len(calendar)


def test_crawl_on_stack_max_pages_bounds_a_deep_crawl(
    site: CrawlSite, stack: EmbeddedStack, store: RunStore
) -> None:
    deep = 40
    spec = {"seeds": site.seed_urls([0]), "max_depth": deep, "max_pages": 15}
    crawled = crawl_site(site, stack, store, spec)
    expected = site.expected(site.seed_urls([0]), deep)
    assert len(crawled.rows) == 15
    assert crawled.summary["total"] == 15
    found = depths(crawled.rows)
    assert {u: expected.get(u) for u in found} == found  # breadth first: oracle depths
    assert sum(crawled.served.values()) <= 15 + len(redirect_hops(site, crawled.rows))


# --- the ways in ------------------------------------------------------------------------


def baton(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cli_env(stack: EmbeddedStack, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in stack.client_environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BATON_RESULTS_PREFIX", raising=False)


@pytest.mark.usefixtures("cli_env")
def test_cli_crawl_watch_follows_the_crawl_to_done_printing_its_pages_frontier_and_depth(
    site: CrawlSite, store: RunStore, capsys: pytest.CaptureFixture[str]
) -> None:
    site.reset()
    seed = site.url(2, "/")
    code, out, err = baton(capsys, "crawl", seed, "--max-depth", "1", "--watch")
    assert code == 0, out + err
    run_id = next(line.split()[1] for line in out.splitlines() if line.startswith("run "))
    expected = site.expected([seed], 1)
    pages = len(expected)
    assert f"{run_id}  done" in out, out
    assert f"done: {pages} tasks, {pages} ok, 0 failed" in out, out
    assert f"crawl: {pages} pages crawled, 0 in the frontier, depth 1/1" in out, out
    assert depths(rows_by_url(store, run_id)) == expected
    code, status, _ = baton(capsys, "status", run_id)
    assert code == 0
    assert f"crawl: {pages} pages crawled, 0 in the frontier, depth 1/1, 1 hosts" in status


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--max-depth", "-1"], "'max_depth' must be a whole number from 0 to 1000, got -1"),
        (["--per-host-concurrency", "0"], "'per_host_concurrency' must be a whole number"),
    ],
)
def test_cli_crawl_bad_option_exits_2_with_the_functions_reason_and_starts_nothing(
    site: CrawlSite,
    store: RunStore,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    reason: str,
) -> None:
    site.reset()
    before = set(store.run_ids())
    code, out, err = baton(capsys, "crawl", site.url(0, "/"), *args)
    assert code == 2, out + err
    assert "the function refused" in err, err
    assert reason in err, err
    assert site.requests() == []
    assert set(store.run_ids()) == before


@pytest.mark.usefixtures("cli_env")
def test_cli_crawl_of_an_ftp_seed_exits_2_naming_the_seed(
    site: CrawlSite, store: RunStore, capsys: pytest.CaptureFixture[str]
) -> None:
    site.reset()
    before = set(store.run_ids())
    code, out, err = baton(capsys, "crawl", "ftp://127.0.0.2/pub/")
    assert code == 2, out + err
    assert "seed 'ftp://127.0.0.2/pub/' is not an http(s) URL" in err, err
    assert site.requests() == []
    assert set(store.run_ids()) == before


def test_uploaded_crawl_spec_starts_a_crawl(
    site: CrawlSite, stack: EmbeddedStack, store: RunStore
) -> None:
    site.reset()
    key = "tasks/site.crawl.json"
    spec = {"seeds": [site.url(0, "/")], "max_depth": 1}
    s3 = stack.s3_client()
    try:
        etag = s3.put_object(Bucket=stack.bucket, Key=key, Body=json.dumps(spec).encode())["ETag"]
    finally:
        s3.close()
    [run_id] = wait_for("a run of the spec", lambda: store.runs_for_source(key, etag), 30)
    finished(store, run_id)
    assert depths(rows_by_url(store, run_id)) == site.expected(site.seed_urls([0]), 1)


def test_crawl_on_stack_with_sitemaps_crawls_the_page_only_the_sitemap_lists(
    site: CrawlSite, stack: EmbeddedStack, store: RunStore
) -> None:
    spec = {"seeds": site.seed_urls([0]), "max_depth": 1, "sitemaps": True}
    crawled = crawl_site(site, stack, store, spec)
    expected = site.expected(site.seed_urls([0]), 1, sitemaps=True)
    orphan = site.url(0, "/orphan")
    assert orphan in expected
    assert orphan not in site.expected(site.seed_urls([0]), 1)
    assert depths(crawled.rows) == expected
    assert crawled.rows[orphan]["found_on"] == site.url(0, "/sitemap.xml")
    assert site.url(0, "/private/1") not in crawled.rows  # listed, but robots.txt says no


def test_crawl_on_stack_over_three_chains_finds_every_page_once(
    site: CrawlSite, stack: EmbeddedStack, store: RunStore
) -> None:
    """Hosts partitioned over chains, links sent through inboxes: the same pages, each
    once. Unbounded by depth (with chains a depth may exceed the shortest distance, README),
    the calendar denied."""
    seeds = site.seed_urls(IN_SCOPE)
    spec = {"seeds": seeds, "max_depth": 20, "deny": ["/cal/"], "per_host_concurrency": PER_HOST}
    site.reset()
    client = stack.lambda_client()
    try:
        payload = {"bucket": stack.bucket, "crawl": spec, "chains": 3}
        answer = json.loads(
            client.invoke(FunctionName=stack.function.name, Payload=json.dumps(payload).encode())[
                "Payload"
            ].read()
        )
    finally:
        client.close()
    assert answer.get("ok"), answer
    run_id = str(answer["results"][0]["run_id"])
    summary = finished(store, run_id, 90)
    rows = rows_by_url(store, run_id)
    expected = {u for u in site.expected(seeds, 20) if "/cal/" not in u}
    assert sorted(rows) == sorted(expected)
    assert summary["chains"] == 3
    assert len(store.load_chains(run_id)) == 3
    chains = Counter(index(row) // CHAIN_STRIDE for row in rows.values())
    assert len(chains) >= 2, chains  # the hosts spread over chains, links crossed inboxes
    # one chain owns each host, redirects into another chain's hosts included
    assert all(n <= PER_HOST for n in site.max_concurrent.values()), site.max_concurrent
