"""Crawl runs against moto: the log grows from each commit, every page once, across legs,
deaths and cold containers. Pages come from an in-memory link graph (robots off); the
loopback site with robots.txt and politeness is tests/integration/test_crawl_on_stack.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest

from tests.fakes import Killed
from tests.unit.harness import Harness, settings
from worker.checkpoint import RunStatus
from worker.completion import finished_chains
from worker.crawl.chainlog import OthersCount
from worker.crawl.frontier import Entry, decode_segment, encode_segment
from worker.crawl.steps import COUNT_EVERY_S, COUNT_MOST_S, STRIDE, count_wait
from worker.events import parse_event
from worker.exceptions import BadEventError, OutOfTimeError
from worker.leg import Leg
from worker.processor import TaskContext
from worker.progress import chain_lines, view
from worker.store import RunStore
from worker.tasks import Task

A = "http://a.test"
GRAPH: dict[str, list[str]] = {
    f"{A}/": [f"{A}/1", "HTTP://A.test:80/2#top", "http://b.test/", "mailto:x@a.test"],
    f"{A}/1": [f"{A}/", f"{A}/2", f"{A}/3?b=2&a=1", f"{A}/3?a=1&b=2"],
    f"{A}/2": [f"{A}/1", f"{A}/x/../4"],
    f"{A}/3?a=1&b=2": [f"{A}/5"],
    f"{A}/4": [],
    f"{A}/5": [f"{A}/6"],
    f"{A}/6": [],
}
DEPTHS = {f"{A}/": 0, f"{A}/1": 1, f"{A}/2": 1, f"{A}/3?a=1&b=2": 2, f"{A}/4": 2, f"{A}/5": 3}
"""What a crawl from A/ to depth 3 must find (A/6 is at depth 4, b.test out of scope)."""


def graph_processor(h: Harness, ms: float = 100) -> Callable[[Task, TaskContext], dict[str, Any]]:
    def process(task: Task, ctx: TaskContext) -> dict[str, Any]:
        h.clock.advance(ms)
        assert task.url is not None
        assert task.options["headers"]["User-Agent"] == "baton-test"
        return {"status": 200, "links": GRAPH.get(task.url, [])}

    return process


@pytest.fixture
def h(s3: Any, bucket: str) -> Harness:
    harness = Harness(s3, bucket, settings(bucket=bucket, stall_after_ms=10_000), timeout_ms=60_000)
    harness.container.processor = graph_processor(harness)
    return harness


def spec(**overrides: Any) -> dict[str, Any]:
    return {"seeds": [f"{A}/"], "robots": False, "user_agent": "baton-test", **overrides}


def crawl(h: Harness, **overrides: Any) -> str:
    answer = h.invoke({"bucket": h.bucket, "crawl": spec(**overrides)})
    assert answer["ok"], answer
    run_id = str(answer["results"][0]["run_id"])
    h.drive(h.invoker.pop())
    return run_id


def pages(h: Harness, run_id: str) -> dict[str, int]:
    rows = list(h.store.rows(run_id))
    urls = [row["url"] for row in rows]
    assert len(urls) == len(set(urls)), f"a page twice: {sorted(urls)}"
    return {row["url"]: row["depth"] for row in rows}


def test_crawl_finds_every_page_in_scope_once_to_the_depth_limit(h: Harness) -> None:
    run_id = crawl(h)
    assert pages(h, run_id) == DEPTHS
    summary = h.summary(run_id)
    assert (summary["status"], summary["total"], summary["ok"]) == ("done", 6, 6)
    assert summary["crawl"]["by_depth"] == {"0": 1, "1": 2, "2": 2, "3": 1}
    assert summary["crawl"]["depth_reached"] == 3


def test_crawl_rows_say_where_each_page_was_found(h: Harness) -> None:
    run_id = crawl(h)
    found_on = {row["url"]: row["found_on"] for row in h.store.rows(run_id)}
    assert found_on[f"{A}/"] is None
    assert found_on[f"{A}/1"] == f"{A}/"
    assert found_on[f"{A}/5"] == f"{A}/3?a=1&b=2"


def test_crawl_max_depth_zero_fetches_only_the_seeds(h: Harness) -> None:
    assert pages(h, crawl(h, max_depth=0)) == {f"{A}/": 0}


def test_crawl_max_pages_caps_the_log(h: Harness) -> None:
    run_id = crawl(h, max_pages=4)
    assert len(pages(h, run_id)) == 4
    assert h.summary(run_id)["total"] == 4


def test_crawl_over_many_legs_finds_what_one_leg_finds(h: Harness) -> None:
    h.timeout_ms = 1_500  # a task or two a leg, with the 1 s margin
    h.container.processor = graph_processor(h, ms=400)
    run_id = crawl(h)
    assert pages(h, run_id) == DEPTHS
    assert h.checkpoint(run_id)["leg"] >= 2


def test_crawl_started_again_after_its_run_was_deleted_is_crawled_afresh_in_a_warm_container(
    h: Harness, s3: Any, bucket: str
) -> None:
    """A lifecycle rule (or a user) deleting a finished run's objects frees its id: the
    same crawl started again is a new run there, not the warm container's cached log."""
    first = crawl(h)
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=f"runs/{first}/")["Contents"]:
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    h.clock.advance(1_000)
    again = crawl(h)
    assert again == first
    assert pages(h, again) == DEPTHS
    assert h.summary(again)["status"] == "done"


def test_crawl_in_a_cold_container_rebuilds_its_seen_set_from_s3(
    h: Harness, s3: Any, bucket: str
) -> None:
    h.timeout_ms = 1_500
    answer = h.invoke({"bucket": h.bucket, "crawl": spec()})
    h.invoke(h.invoker.pop())  # leg 0 in this container, then every later leg in a new one
    cold = Harness(s3, bucket, h.settings, clock=h.clock, invoker=h.invoker, timeout_ms=1_500)
    cold.container.processor = graph_processor(cold)
    cold.drive(cold.invoker.pop())
    assert pages(h, answer["results"][0]["run_id"]) == DEPTHS


def test_crawl_leg_dying_after_its_segment_put_repeats_no_page(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = RunStore.put_frontier
    fired = False

    def dying(self: RunStore, run_id: str, chain: str, first: int, *rest: Any) -> None:
        nonlocal fired
        real(self, run_id, chain, first, *rest)
        if first > 0 and not fired:
            fired = True
            raise Killed("died after writing a segment, before its CAS")

    monkeypatch.setattr(RunStore, "put_frontier", dying)
    answer = h.invoke({"bucket": h.bucket, "crawl": spec()})
    with pytest.raises(Killed):
        h.drive(h.invoker.pop())
    h.clock.advance(h.timeout_ms + h.settings.stall_after_ms + 1)
    h.invoker.calls.clear()
    h.drive({"action": "sweep"})
    run_id = answer["results"][0]["run_id"]
    assert fired
    assert pages(h, run_id) == DEPTHS
    assert len(h.notifier.sent) == 1


def test_crawl_status_shows_the_frontier_and_the_depth(h: Harness) -> None:
    h.timeout_ms = 1_500
    answer = h.invoke({"bucket": h.bucket, "crawl": spec()})
    h.invoke(h.invoker.pop())
    run_id = answer["results"][0]["run_id"]
    v = view(h.store.load_run(run_id), h.store.load_chains(run_id), at_ms=h.clock.now_ms())
    [line] = chain_lines(v)
    assert "in the frontier" in line
    assert "depth" in line
    assert v.as_dict()["crawl"]["max_depth"] == 3


def test_crawl_spec_upload_starts_a_crawl(h: Harness) -> None:
    body = json.dumps(spec(max_depth=1)).encode()
    etag = h.s3.put_object(Bucket=h.bucket, Key="tasks/site.crawl.json", Body=body)["ETag"]
    h.drive(h.upload_event("tasks/site.crawl.json", etag))
    [run_id] = h.store.runs_for_source("tasks/site.crawl.json", etag)
    assert pages(h, run_id) == {f"{A}/": 0, f"{A}/1": 1, f"{A}/2": 1}


def test_crawl_bad_spec_upload_gets_a_failed_run_with_its_reason(h: Harness) -> None:
    body = json.dumps({"seeds": ["ftp://a.test/"]}).encode()
    etag = h.s3.put_object(Bucket=h.bucket, Key="tasks/bad.crawl.json", Body=body)["ETag"]
    answer = h.invoke(h.upload_event("tasks/bad.crawl.json", etag))
    assert not answer["ok"]
    [run_id] = h.store.runs_for_source("tasks/bad.crawl.json", etag)
    summary = h.summary(run_id)
    assert summary["status"] == "failed"
    assert "ftp://a.test/" in summary["reason"]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"bucket": "b", "crawl": {"seeds": []}}, "seeds"),
        ({"bucket": "b", "crawl": {"seeds": ["http://a/"], "max_deep": 2}}, "unknown"),
        ({"bucket": "b", "crawl": {"seeds": ["http://a/"]}, "position": 3}, "task list only"),
        ({"bucket": "b", "crawl": {"seeds": ["http://a/"]}, "key": "tasks/x.json"}, "exactly one"),
        ({"bucket": "b", "crawl": "http://a/"}, "crawl"),
    ],
)
def test_crawl_bad_payloads_get_a_clear_error(event: dict[str, Any], message: str) -> None:
    with pytest.raises(BadEventError, match=message):
        parse_event(event, "tasks/", "runs/")


def test_crawl_manual_start_again_resumes_the_unfinished_run(h: Harness) -> None:
    first = h.invoke({"bucket": h.bucket, "crawl": spec()})
    h.invoker.calls.clear()  # leg 0 lost: the run is unfinished
    h.clock.advance(h.settings.stall_after_ms + 1)
    again = h.invoke({"bucket": h.bucket, "crawl": spec()})
    assert again["results"][0]["run_id"] == first["results"][0]["run_id"]


def test_crawl_per_host_delay_holds_across_hand_offs(h: Harness) -> None:
    starts: list[float] = []
    fetch = graph_processor(h, ms=10)

    def timed(task: Task, ctx: TaskContext) -> dict[str, Any]:
        starts.append(h.clock.now_ms())
        return fetch(task, ctx)

    h.container.processor = timed
    h.timeout_ms = 1_500  # legs much shorter than the delay: each gap spans a hand-off
    run_id = crawl(h, per_host_delay_ms=2_000)
    assert pages(h, run_id) == DEPTHS
    assert h.checkpoint(run_id)["leg"] >= 3
    gaps = [later - earlier for earlier, later in pairwise(starts)]
    assert min(gaps) >= 2_000


# many chains: the frontier partitioned by host
HOSTS = [f"h{n}.test" for n in range(6)]
WIDE: dict[str, list[str]] = {
    f"http://{host}/{page}": [
        f"http://{HOSTS[(n + step) % len(HOSTS)]}/{(page + step) % 5}" for step in (0, 1, 2, 3)
    ]
    for n, host in enumerate(HOSTS)
    for page in range(5)
}
"""Six hosts of five pages, each page linking to pages on its own host and the next three:
every page is reachable from h0.test/0 within a few hops, across every partition."""


def wide_processor(h: Harness, ms: float = 100) -> Callable[[Task, TaskContext], dict[str, Any]]:
    def process(task: Task, ctx: TaskContext) -> dict[str, Any]:
        h.clock.advance(ms)
        assert task.url is not None
        return {"status": 200, "links": WIDE.get(task.url, [])}

    return process


def wide_crawl(h: Harness, chains: int) -> str:
    h.container.processor = wide_processor(h)
    payload = {
        "bucket": h.bucket,
        "crawl": spec(seeds=[f"http://{HOSTS[0]}/0"], scope="hosts", hosts=HOSTS, max_depth=10),
        "chains": chains,
    }
    answer = h.invoke(payload)
    assert answer["ok"], answer
    return str(answer["results"][0]["run_id"])


def test_crawl_over_chains_finds_every_page_once(h: Harness) -> None:
    run_id = wide_crawl(h, chains=4)
    h.drive(h.invoker.pop())
    found = pages(h, run_id)
    assert sorted(found) == sorted(WIDE)
    summary = h.summary(run_id)
    assert (summary["status"], summary["chains"], summary["total"]) == ("done", 4, len(WIDE))
    assert len(h.notifier.sent) == 1


def test_crawl_chain_logs_hold_only_their_own_hosts(h: Harness) -> None:
    run_id = wide_crawl(h, chains=3)
    h.drive(h.invoker.pop())
    hosts_by_chain: dict[int, set[str]] = {}
    for row in h.store.rows(run_id):
        hosts_by_chain.setdefault(row["index"] // STRIDE, set()).add(row["url"].split("/")[2])
    owners = [chain for host in HOSTS for chain, hs in hosts_by_chain.items() if host in hs]
    assert len(owners) == len(HOSTS)  # each host crawled by exactly one chain
    assert len(hosts_by_chain) > 1  # and the hosts spread over the chains


def test_crawl_chain_woken_by_the_sweep_when_its_sender_died_before_waking_it(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = wide_crawl(h, chains=4)
    monkeypatch.setattr(Leg, "wake", lambda self, chain: None)  # every sender dies there
    h.drive(h.invoker.pop())
    assert h.store.load_summary(run_id) is None  # links wait in an inbox: not complete
    monkeypatch.undo()
    for _ in range(10):
        h.clock.advance(h.settings.stall_after_ms + 1)
        h.drive({"action": "sweep"})
        if h.store.load_summary(run_id) is not None:
            break
    assert sorted(pages(h, run_id)) == sorted(WIDE)
    assert h.summary(run_id)["status"] == "done"
    assert len(h.notifier.sent) == 1


def test_crawl_over_chains_in_short_legs_finds_every_page_once(h: Harness) -> None:
    h.timeout_ms = 1_500
    run_id = wide_crawl(h, chains=2)
    h.drive(h.invoker.pop())
    assert sorted(pages(h, run_id)) == sorted(WIDE)
    assert len(h.notifier.sent) == 1


def _end_chains(h: Harness, run_id: str, *statuses: RunStatus) -> None:
    for number, status in enumerate(statuses):
        chain = f"{number:04d}"
        current = h.store.load_checkpoint(run_id, chain)
        ended = current.checkpoint.finish(status, at_ms=h.clock.now_ms(), reason=None, leg_ms=0)
        h.store.swap(current, ended)
        h.store.mark_chain_done(run_id, chain)


def _mail(h: Harness, run_id: str, to: str) -> None:
    body = encode_segment([Entry("http://h0.test/3", 1, None)])
    h.store.put_inbox(run_id, to, "0001", 1, body, attempt="a dead leg")


def test_crawl_over_chains_is_not_complete_while_links_wait_in_an_inbox(h: Harness) -> None:
    run_id = wide_crawl(h, chains=2)
    _end_chains(h, run_id, RunStatus.DONE, RunStatus.DONE)
    _mail(h, run_id, "0000")
    assert finished_chains(h.store, h.store.load_run(run_id)) is None


def test_crawl_over_chains_cancelled_completes_with_links_left_in_an_inbox(h: Harness) -> None:
    run_id = wide_crawl(h, chains=2)
    _end_chains(h, run_id, RunStatus.DONE, RunStatus.CANCELLED)
    _mail(h, run_id, "0000")
    assert finished_chains(h.store, h.store.load_run(run_id)) is not None


def test_crawl_container_forgets_the_urls_of_segments_already_crawled(h: Harness) -> None:
    h.timeout_ms = 1_500
    h.container.processor = graph_processor(h, ms=400)
    run_id = crawl(h)
    [log] = [found for found in h.container.crawl.logs.values() if found.run_id == run_id]
    assert log.segments[0].body is None  # the seeds': every task in it has its row
    assert len(log.seen) == len(DEPTHS)  # while the seen-set keeps every URL


HOLE_GRAPH_DEPTHS = {f"{A}/": 0, f"{A}/1": 1, f"{A}/2": 1, f"{A}/3": 2, f"{A}/4": 2, f"{A}/5": 3}
"""The distances in the graphs of the tests of a deferred page (A/1) below."""


def test_crawl_a_deferred_page_crawled_beside_a_deeper_one_gives_its_links_its_depth(
    h: Harness,
) -> None:
    """A page that ran out of its leg's time is a hole, worked by the next leg beside pages
    found after it, one level deeper; their rows land in one commit, the hole's last. A link
    both make must take the shallower page's depth: taken at the deeper one's, it was never
    followed at the depth limit, and the page behind it (within max_depth) never crawled."""
    graph = {
        f"{A}/": [f"{A}/1", f"{A}/2"],
        f"{A}/1": [f"{A}/4"],  # the page deferred: A/4 is at distance 2
        f"{A}/2": [f"{A}/3"],
        f"{A}/3": [f"{A}/4"],  # A/3 is at distance 2: through it, A/4 is at 3
        f"{A}/4": [f"{A}/5"],  # A/5 is at distance 3
        f"{A}/5": [],
    }
    deferred: list[str] = []

    def process(task: Task, ctx: TaskContext) -> dict[str, Any]:
        h.clock.advance(100)
        if task.url == f"{A}/1" and not deferred:
            deferred.append(task.url)
            raise OutOfTimeError("ran out of the leg's time", tried=False)
        return {"status": 200, "links": graph[str(task.url)]}

    h.container.processor = process
    run_id = crawl(h, max_depth=3)
    assert deferred
    assert pages(h, run_id) == HOLE_GRAPH_DEPTHS


def test_crawl_pages_found_past_a_hole_wait_for_it_so_every_page_keeps_its_distance(
    h: Harness,
) -> None:
    """A page deferred twice (a hole over two legs) while a page found after it, one level
    deeper, is committed: the later page's links wait until the hole's row is in. Taken at
    once, a link both make got the deeper depth, was not followed at the depth limit, and
    the page behind it (within max_depth) was never crawled."""
    graph = {
        f"{A}/": [f"{A}/1", f"{A}/2"],
        f"{A}/1": [f"{A}/4"],  # the page deferred: A/4 is at distance 2
        f"{A}/2": [f"{A}/3"],
        f"{A}/3": [f"{A}/4"],  # committed before A/1: through it, A/4 is at 3
        f"{A}/4": [f"{A}/5"],  # A/5 is at distance 3
        f"{A}/5": [],
    }
    deferred: list[str] = []

    def process(task: Task, ctx: TaskContext) -> dict[str, Any]:
        h.clock.advance(100)
        if task.url == f"{A}/1" and len(deferred) < 2:
            deferred.append(task.url)
            raise OutOfTimeError("ran out of the leg's time", tried=False)
        return {"status": 200, "links": graph[str(task.url)]}

    h.container.processor = process
    run_id = crawl(h, max_depth=3)
    assert len(deferred) == 2
    assert pages(h, run_id) == HOLE_GRAPH_DEPTHS


def _legs_deferring_a_1(h: Harness, graph: dict[str, list[str]], legs: int) -> str:
    """A crawl of `graph` run for `legs` legs, each of which defers A/1 (a hole) and commits
    what it finished after it."""

    def process(task: Task, ctx: TaskContext) -> dict[str, Any]:
        h.clock.advance(100)
        if task.url == f"{A}/1":
            raise OutOfTimeError("ran out of the leg's time", tried=False)
        return {"status": 200, "links": graph[str(task.url)]}

    h.container.processor = process
    answer = h.invoke({"bucket": h.bucket, "crawl": spec(max_depth=3)})
    for _ in range(legs):
        h.invoke(h.invoker.pop())
    return str(answer["results"][0]["run_id"])


def _logged(h: Harness, run_id: str) -> set[str]:
    """Every URL in the run's frontier segments."""
    found = set()
    for obj in h.store.objects.list(h.bucket, f"runs/{run_id}/frontier/"):
        found |= {e.url for e in decode_segment(h.store.read_bytes(obj.key))}
    return found


def test_crawl_rows_past_a_hole_as_shallow_as_it_take_their_links_at_once(h: Harness) -> None:
    graph = {f"{A}/": [f"{A}/1", f"{A}/2"], f"{A}/2": [f"{A}/3"], f"{A}/1": [], f"{A}/3": []}
    run_id = _legs_deferring_a_1(h, graph, legs=1)
    cp = h.checkpoint(run_id)
    assert cp["holes"] == [1]
    assert f"{A}/3" in _logged(h, run_id)  # A/2 is at A/1's depth: nothing to wait for
    assert cp["frontier"]["held"] == []


def test_crawl_rows_past_a_hole_and_deeper_wait_in_their_objects(h: Harness) -> None:
    graph = {
        f"{A}/": [f"{A}/1", f"{A}/2"],
        f"{A}/2": [f"{A}/3"],
        f"{A}/3": [f"{A}/4"],
        f"{A}/1": [],
        f"{A}/4": [],
    }
    run_id = _legs_deferring_a_1(h, graph, legs=2)
    cp = h.checkpoint(run_id)
    assert cp["holes"] == [1]
    assert cp["position"] == 4
    assert f"{A}/4" not in _logged(h, run_id)  # A/3 (depth 2) waits for A/1 (depth 1)
    [(key, first, last)] = cp["frontier"]["held"]
    assert first <= 3 <= last
    assert any(row["url"] == f"{A}/3" for row in h.store.read_rows(key))


def test_crawl_inbox_objects_of_two_attempts_at_one_batch_are_two_objects(h: Harness) -> None:
    """A redone batch never writes over the mail of its dead attempt: the owner may have
    taken that in, and deleting it after its CAS would take the redo's links with it."""
    run_id = wide_crawl(h, chains=2)
    body = encode_segment([Entry(f"http://{HOSTS[1]}/3", 1, None)])
    h.store.put_inbox(run_id, "0000", "0001", 7, body, attempt="req-1/a.1")
    h.store.put_inbox(run_id, "0000", "0001", 7, body, attempt="req-2/b.1")
    h.store.put_inbox(run_id, "0000", "0001", 7, body, attempt="req-2/b.1")
    assert len(h.store.inbox_keys(run_id, "0000")) == 2


@pytest.mark.parametrize(
    ("last", "now", "expected"),
    [
        (None, OthersCount(0.0, 10, 10, 0.0), COUNT_EVERY_S),  # first count
        (OthersCount(0.0, 10, 10, 0.0), OthersCount(10.0, 20, 20, 0.0), COUNT_MOST_S),  # far
        (OthersCount(0.0, 10, 10, 0.0), OthersCount(10.0, 10, 10, 0.0), COUNT_MOST_S),  # idle
        (OthersCount(0.0, 10, 10, 0.0), OthersCount(10.0, 260, 260, 0.0), COUNT_EVERY_S),
        (OthersCount(0.0, 10, 10, 0.0), OthersCount(10.0, 300, 300, 0.0), COUNT_EVERY_S),
        (OthersCount(0.0, 10, 10, 0.0), OthersCount(1.0, 20, 20, 0.0), 24.0),  # at the pace
    ],
)
def test_crawl_counts_the_other_chains_pages_often_only_near_max_pages(
    last: OthersCount | None, now: OthersCount, expected: float
) -> None:
    assert count_wait(last, now, cap=1_000) == pytest.approx(expected)
