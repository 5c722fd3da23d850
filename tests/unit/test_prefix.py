"""Prefix runs against moto: listing in legs, segments and their chains, pinning, repairs."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.fakes import Killed
from tests.unit.harness import Harness, settings
from worker.events import parse_event
from worker.exceptions import BadEventError, ConfigError
from worker.leg import Leg
from worker.listing import LISTER, PrefixSource, segment_chain
from worker.progress import chain_lines, progress_line, view
from worker.store import RunStore

KEYS = [f"data/{i:03d}.bin" for i in range(23)]


def body(key: str) -> bytes:
    return key.encode() * 3


@pytest.fixture
def h(s3: Any, bucket: str) -> Harness:
    for key in KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=body(key))
    s3.put_object(Bucket=bucket, Key="other/x.bin", Body=b"not listed")
    harness = Harness(
        s3,
        bucket,
        settings(bucket=bucket, list_page_size=5, segment_pages=1, stall_after_ms=10_000),
        timeout_ms=60_000,
    )
    harness.clock.at_ms = time.time() * 1000 + 1  # objects above were modified before the start
    return harness


def start(h: Harness, chains: int = 1, **source: Any) -> str:
    answer = h.invoke(
        {"bucket": h.bucket, "prefix": {"prefix": "data/", **source}, "chains": chains}
    )
    assert answer["ok"], answer
    return str(answer["results"][0]["run_id"])


def slow_listing(h: Harness, ms_per_page: float) -> None:
    """Each LIST page costs the leg `ms_per_page` of its time."""
    real = h.container.s3.list_page

    def listing(*args: Any, **kwargs: Any) -> Any:
        h.clock.advance(ms_per_page)
        return real(*args, **kwargs)

    h.container.s3.list_page = listing  # type: ignore[method-assign]


def die_once(
    monkeypatch: pytest.MonkeyPatch,
    target: Any,
    name: str,
    when: Callable[..., bool],
    *,
    after: bool,
) -> None:
    """Make `target.name` kill the leg once, before or after doing its work."""
    real = getattr(target, name)
    fired = False

    def dying(*args: Any, **kwargs: Any) -> Any:
        nonlocal fired
        if fired or not when(*args, **kwargs):
            return real(*args, **kwargs)
        fired = True
        if after:
            real(*args, **kwargs)
        raise Killed(f"{name} killed the leg")

    monkeypatch.setattr(target, name, dying)


def recover(h: Harness) -> None:
    """What follows a killed leg: its lease runs out, and the sweep resends what stalled."""
    h.clock.advance(h.timeout_ms + h.settings.stall_after_ms + 1)
    h.invoker.calls.clear()
    h.drive({"action": "sweep"})
    h.clock.advance(h.settings.stall_after_ms + 1)  # chains made but never invoked
    h.drive({"action": "sweep"})


def parse(event: dict[str, Any]) -> Any:
    return parse_event(event, "tasks/", "runs/")


# payloads and specs
@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"bucket": "b", "key": "tasks/a.json", "prefix": {"prefix": "x/"}}, "exactly one source"),
        ({"bucket": "b", "prefix": {"prefix": "x/"}, "position": 3}, "applies to a task list"),
        ({"bucket": "b", "prefix": "x/"}, "must be a JSON object"),
        ({"bucket": "b", "prefix": {"prefix": ""}}, "non-empty string"),
        ({"bucket": "b", "prefix": {"prefix": "x/", "sufix": ".pdf"}}, "unknown fields"),
        ({"bucket": "b", "prefix": {"prefix": "x/", "processor": "zip"}}, "must be one of"),
        ({"bucket": "b", "prefix": {"prefix": "x/", "presign_s": 604801}}, "at most 7 days"),
        ({"bucket": "b", "prefix": {"prefix": "runs/abc/"}}, "own run state"),
        ({"bucket": "b", "prefix": {"prefix": "tasks/"}}, "task uploads"),
        ({"bucket": "b", "prefix": {"prefix": "r"}}, "overlaps 'runs/'"),
    ],
)
def test_prefix_bad_payloads_get_a_clear_error(event: dict[str, Any], message: str) -> None:
    with pytest.raises(BadEventError, match=message):
        parse(event)


def test_prefix_payload_names_its_source() -> None:
    (request,) = parse({"bucket": "b", "prefix": {"prefix": "x/", "suffix": ".pdf"}, "chains": 3})
    assert (request.key, request.prefix.suffix, request.chains) == ("x/", ".pdf", 3)


def test_prefix_spec_upload_starts_a_prefix_run(h: Harness) -> None:
    spec = json.dumps({"prefix": "data/", "suffix": "7.bin", "processor": "sha256"}).encode()
    etag = h.s3.put_object(Bucket=h.bucket, Key="tasks/x.prefix.json", Body=spec)["ETag"]
    h.drive(h.upload_event("tasks/x.prefix.json", etag))
    [run_id] = h.store.runs_for_source("tasks/x.prefix.json", etag)
    rows = list(h.store.rows(run_id))
    assert [r["id"] for r in rows] == ["data/007.bin", "data/017.bin"]
    assert rows[0]["sha256"] == hashlib.sha256(body("data/007.bin")).hexdigest()
    assert h.summary(run_id)["listing"]["listed"] == 2


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (b"{not json", "is not JSON"),
        (b'{"prefix": "data/", "chains": 4}', "unknown fields ['chains']"),
        (b'{"prefix": "runs/"}', "own run state"),
        (b'["data/"]', "must be a JSON object"),
    ],
)
def test_prefix_bad_spec_gets_a_failed_run_with_its_reason(
    h: Harness, spec: bytes, reason: str
) -> None:
    etag = h.s3.put_object(Bucket=h.bucket, Key="tasks/bad.prefix.json", Body=spec)["ETag"]
    answer = h.invoke(h.upload_event("tasks/bad.prefix.json", etag))
    assert not answer["ok"]
    assert reason in answer["error"]
    [run_id] = h.store.runs_for_source("tasks/bad.prefix.json", etag)
    summary = h.summary(run_id)
    assert summary["status"] == "failed"
    assert reason in summary["reason"]
    assert [n["status"] for n in h.notifier.sent] == ["failed"]


# listing in legs
def test_prefix_listing_in_legs_writes_segments_and_a_chain_for_each(h: Harness) -> None:
    slow_listing(h, 1_500)
    h.timeout_ms = 5_000
    run_id = start(h, chains=8)
    h.drive(h.invoker.pop())
    lister = h.checkpoint(run_id, LISTER)
    assert lister["leg"] >= 1  # the listing went on across hand-offs
    assert lister["listing"]["done"]
    assert (lister["listing"]["listed"], lister["listing"]["pending"]) == (23, [])
    segments = [s.key for s in h.store.objects.list(h.bucket, f"runs/{run_id}/listing/")]
    assert len(segments) == 5  # pages of 5 keys, one page per segment
    for first in range(0, 23, 5):
        segment = h.checkpoint(run_id, segment_chain(first))["segment"]
        assert (segment["first"], segment["count"]) == (first, min(5, 23 - first))
        assert segment["key"] in segments
    assert sorted(h.result_indices(run_id)) == list(range(23))
    assert [r["id"] for r in h.store.rows(run_id)] == KEYS
    summary = h.summary(run_id)
    assert (summary["status"], summary["total"], summary["ok"]) == ("done", 23, 23)
    assert len(h.notifier.sent) == 1


def test_prefix_suffix_keeps_only_matching_keys(h: Harness) -> None:
    run_id = start(h, suffix="3.bin")
    h.drive(h.invoker.pop())
    assert [r["id"] for r in h.store.rows(run_id)] == ["data/003.bin", "data/013.bin"]


def test_prefix_empty_listing_ends_done_with_no_tasks(h: Harness) -> None:
    answer = h.invoke({"bucket": h.bucket, "prefix": {"prefix": "nothing/"}})
    run_id = answer["results"][0]["run_id"]
    h.drive(h.invoker.pop())
    summary = h.summary(run_id)
    assert (summary["status"], summary["total"], summary["processed"]) == ("done", 0, 0)


def test_prefix_objects_added_after_the_start_are_not_in_the_run(h: Harness) -> None:
    h.clock.at_ms = int(time.time()) * 1000 + 999  # the run starts at the end of a second
    run_id = start(h)
    time.sleep(1.01 - time.time() % 1)  # LastModified keeps whole seconds (see the README)
    h.s3.put_object(Bucket=h.bucket, Key="data/new.bin", Body=b"late")
    h.s3.put_object(Bucket=h.bucket, Key="data/000.bin", Body=b"rewritten after the start")
    h.drive(h.invoker.pop())
    ids = [r["id"] for r in h.store.rows(run_id)]
    assert "data/new.bin" not in ids
    assert "data/000.bin" not in ids  # modified after the start: not the object pinned
    assert h.summary(run_id)["listing"]["left_out_newer"] == 2


def test_prefix_object_changed_after_listing_gives_an_error_row_not_new_bytes(
    h: Harness,
) -> None:
    run_id = start(h, processor="sha256")
    real = h.container.s3.list_page

    def list_then_change(*args: Any, **kwargs: Any) -> Any:
        page = real(*args, **kwargs)
        if page.objects and page.objects[0].key == "data/000.bin":
            h.s3.put_object(Bucket=h.bucket, Key="data/001.bin", Body=b"changed")
            h.s3.delete_object(Bucket=h.bucket, Key="data/002.bin")
        return page

    h.container.s3.list_page = list_then_change  # type: ignore[method-assign]
    h.drive(h.invoker.pop())
    rows = {r["id"]: r for r in h.store.rows(run_id)}
    assert rows["data/001.bin"]["error"].startswith("changed: s3://")
    assert rows["data/001.bin"].get("sha256") is None
    assert rows["data/002.bin"]["error"].startswith("gone: s3://")
    assert rows["data/003.bin"]["error"] is None
    assert rows["data/003.bin"]["sha256"] == hashlib.sha256(body("data/003.bin")).hexdigest()
    assert h.summary(run_id)["failure_kinds"] == {"changed": 1, "gone": 1}


# dying listers: exactly once per key
def _lister_dies_then_recovers(h: Harness, arrange: Callable[[Harness], None]) -> str:
    run_id = start(h, chains=2)
    arrange(h)
    with pytest.raises(Killed):
        h.drive(h.invoker.pop())
    recover(h)
    return run_id


def _dies_making_chain_10(monkeypatch: pytest.MonkeyPatch) -> Callable[[Harness], None]:
    """An arrangement: the lister dies once, as it makes the chain of the segment at 10."""

    def arrange(h: Harness) -> None:
        die_once(
            monkeypatch,
            RunStore,
            "create_checkpoint",
            lambda self, cp: cp.chain == segment_chain(10),
            after=False,
        )

    return arrange


def _exactly_once(h: Harness, run_id: str) -> None:
    assert sorted(h.result_indices(run_id)) == list(range(23))
    assert sorted(r["id"] for r in h.store.rows(run_id)) == KEYS
    summary = h.summary(run_id)
    assert (summary["status"], summary["total"], summary["ok"]) == ("done", 23, 23)
    assert len(h.notifier.sent) == 1


def test_prefix_lister_dying_after_the_segment_put_loses_and_repeats_nothing(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def arrange(h: Harness) -> None:
        die_once(monkeypatch, RunStore, "put_segment", lambda *a: "0000000010-" in a[1], after=True)

    run_id = _lister_dies_then_recovers(h, arrange)
    _exactly_once(h, run_id)
    orphans = [
        s.key
        for s in h.store.objects.list(h.bucket, f"runs/{run_id}/listing/0000000010-")
        if s.key != h.checkpoint(run_id, segment_chain(10))["segment"]["key"]
    ]
    assert len(orphans) == 1  # written by the dead leg, never read


def test_prefix_lister_dying_after_its_cas_leaves_the_chain_to_its_next_leg(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = _lister_dies_then_recovers(h, _dies_making_chain_10(monkeypatch))
    _exactly_once(h, run_id)


def test_prefix_lister_dying_before_invoking_a_chain_leaves_it_to_the_sweep(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def arrange(h: Harness) -> None:
        die_once(
            monkeypatch,
            h.invoker,
            "invoke_async",
            lambda fn, payload, **kw: payload["chain"] == segment_chain(5),
            after=False,
        )

    run_id = _lister_dies_then_recovers(h, arrange)
    _exactly_once(h, run_id)


# chains
def test_prefix_segments_spread_over_chains_and_the_lister_never_invokes_more_than_c(
    h: Harness,
) -> None:
    run_id = start(h, chains=2)
    h.invoke(h.invoker.pop())  # the lister's leg alone; no work leg delivered yet
    invoked = [p["chain"] for _, p in h.invoker.calls]
    assert invoked == [segment_chain(0), segment_chain(5)]  # 5 segments, 2 chains at once
    # The rest wait, and the lister, done listing, takes none: both slots are busy.
    assert h.store.queued_chains(run_id) == [segment_chain(f) for f in (10, 15, 20)]
    assert h.checkpoint(run_id, LISTER)["status"] == "done"
    while h.invoker.calls:
        h.drive(h.invoker.pop())
    worked = {cp.chain.split(".")[0] for cp in h.store.load_chains(run_id) if cp.ok}
    assert worked == {segment_chain(f) for f in range(0, 23, 5)}
    assert h.store.queued_chains(run_id) == []  # the chains that finished took them
    _exactly_once(h, run_id)


def test_prefix_lister_done_listing_works_a_queued_chain_in_a_free_slot(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = start(h, chains=2)
    real = RunStore.queue_chain

    def s0_ends_meanwhile(store: RunStore, run: str, chain: str) -> None:
        real(store, run, chain)
        if chain == segment_chain(20):  # s0 ran and ended while the lister listed
            h.store.mark_chain_done(run_id, segment_chain(0))

    monkeypatch.setattr(RunStore, "queue_chain", s0_ends_meanwhile)
    h.invoke(h.invoker.pop())  # the lister's leg only
    # A slot was free when the listing ended: the lister's leg took the queue's first.
    assert h.checkpoint(run_id, segment_chain(10))["status"] == "done"


def test_prefix_sweep_starts_a_queued_chain_when_no_work_chain_is_left(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = start(h, chains=1)
    monkeypatch.setattr(Leg, "take_another_range", lambda self: False)
    h.drive(h.invoker.pop())  # the lister and chain s0: each ends without going on
    assert h.store.queued_chains(run_id) == [segment_chain(f) for f in (5, 10, 15, 20)]
    assert h.store.load_summary(run_id) is None
    monkeypatch.undo()
    h.clock.advance(h.settings.stall_after_ms + 1)
    swept = h.invoke({"action": "sweep"})["results"][0]
    assert swept["resumed"] == [f"{run_id}/{segment_chain(5)}"]  # one chain: one at a time
    h.drive(h.invoker.pop())
    _exactly_once(h, run_id)


# presigned manifest
def test_prefix_presign_run_writes_presigned_jsonl_in_index_order(h: Harness) -> None:
    run_id = start(h, chains=2, presign_s=900)
    h.drive(h.invoker.pop())
    while h.invoker.calls:
        h.drive(h.invoker.pop())
    body_ = h.s3.get_object(Bucket=h.bucket, Key=f"runs/{run_id}/presigned.jsonl")["Body"].read()
    lines = [json.loads(line) for line in body_.splitlines()]
    assert [line["key"] for line in lines] == KEYS
    assert set(lines[0]) == {"key", "url", "size", "etag"}
    assert lines[0]["url"].startswith(f"https://{h.bucket}.s3.amazonaws.com/data/000.bin?")
    assert lines[0]["size"] == len(body("data/000.bin"))
    [notice] = h.notifier.sent
    assert notice["presigned_key"] == f"runs/{run_id}/presigned.jsonl"
    assert "https://" not in json.dumps(notice)  # no bearer URL unless BATON_PRESIGN_S opts in


def test_prefix_presign_runs_in_the_legs_own_thread_not_the_task_pool(h: Harness) -> None:
    class NoPool(ThreadPoolExecutor):
        def submit(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("presign went through the task pool")

    h.container.pool = NoPool(1)
    run_id = start(h)
    h.drive(h.invoker.pop())
    while h.invoker.calls:
        h.drive(h.invoker.pop())
    assert sorted(h.result_indices(run_id)) == list(range(23))
    assert h.summary(run_id)["ok"] == 23


def test_prefix_cancel_ends_queued_chains_too_and_notifies_once(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = start(h, chains=1)
    monkeypatch.setattr(Leg, "take_another_range", lambda self: False)
    h.invoke(h.invoker.pop())  # the lister: s0 invoked, the rest queued
    h.store.request_cancel(run_id)
    h.drive(h.invoker.pop())  # s0 sees the cancel
    assert h.store.queued_chains(run_id) == []
    summary = h.summary(run_id)
    assert summary["status"] == "cancelled"
    assert [n["status"] for n in h.notifier.sent] == ["cancelled"]


def test_prefix_status_counts_keys_listed_so_far_while_listing(h: Harness) -> None:
    slow_listing(h, 1_500)
    h.timeout_ms = 5_000
    run_id = start(h, chains=8)
    h.invoke(h.invoker.pop())  # the lister's first leg only
    v = view(h.store.load_run(run_id), h.store.load_chains(run_id), h.clock.now_ms())
    assert not v.listing_done
    assert 0 < v.total < 23
    assert v.eta_s is None  # no end known while listing
    assert f"/{v.total} listed so far" in progress_line(v)
    assert any("listing" in line for line in chain_lines(v))
    h.drive(h.invoker.pop())
    while h.invoker.calls:
        h.drive(h.invoker.pop())
    v = view(h.store.load_run(run_id), h.store.load_chains(run_id), h.clock.now_ms())
    assert (v.listing_done, v.total, v.done, v.as_dict()["total"]) == (True, 23, 23, 23)


def test_prefix_presign_signs_with_the_signing_users_keys_when_set(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="data/a.bin", Body=b"a")
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    keys = {"access_key_id": "AKIASIGNINGUSER00001", "secret_access_key": "s" * 40}
    secrets.create_secret(Name="baton-signer", SecretString=json.dumps(keys))
    h = Harness(s3, bucket, settings(bucket=bucket, signing_secret_id="baton-signer"))
    h.clock.at_ms = time.time() * 1000 + 1000
    run_id = start(h)
    h.drive(h.invoker.pop())
    [row] = h.store.rows(run_id)
    assert "AKIASIGNINGUSER00001" in row["presigned_url"]


def test_prefix_a_signing_secret_that_cannot_be_read_fails_the_cold_start(
    s3: Any, bucket: str
) -> None:
    with pytest.raises(ConfigError, match="BATON_SIGNING_SECRET_ID 'missing'"):
        Harness(s3, bucket, settings(bucket=bucket, signing_secret_id="missing"))


def test_prefix_manual_event_file_parses_to_a_prefix_start() -> None:
    event = json.loads((Path(__file__).parent.parent / "events" / "manual_prefix.json").read_text())
    (request,) = parse(event)
    assert (request.bucket, request.key, request.chains) == ("baton-example", "reports/2026/04/", 4)
    assert request.prefix == PrefixSource("reports/2026/04/", ".pdf")
    assert request.prefix.digest().startswith('"prefix-')


def test_prefix_sweep_makes_the_lister_of_a_start_that_died_before_it(h: Harness) -> None:
    h.invoker.fail = True  # the start's invoke of its lister is lost...
    run_id = start(h)
    h.invoker.fail = False
    h.store.delete(h.store.checkpoint_key(run_id, LISTER))  # ...and it died before the lister
    h.clock.advance(h.settings.stall_after_ms + 1)
    h.invoke({"action": "sweep"})  # makes the lister (unowned, long handed off)
    assert h.store.has_checkpoint(run_id, LISTER)
    h.drive({"action": "sweep"})  # resumes it
    _exactly_once(h, run_id)


STATE_WRITES = ("put_segment", "swap", "create_checkpoint", "queue_chain", "unqueue", "put_results")


@pytest.mark.parametrize("kill_at", range(1, 60, 4))
def test_prefix_a_leg_killed_at_any_state_write_loses_and_repeats_no_key(
    h: Harness, monkeypatch: pytest.MonkeyPatch, kill_at: int
) -> None:
    """Kill whichever leg makes the n-th write of run state (or invoke), then let leases
    run out and the sweep do its work: every key once, one summary, one notice."""
    calls = 0
    armed = True

    def counting(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if armed and calls == kill_at:
                raise Killed(f"killed at {name}, write {calls}")
            return real(*args, **kwargs)

        return call

    for name in STATE_WRITES:
        monkeypatch.setattr(RunStore, name, counting(name, getattr(RunStore, name)))
    monkeypatch.setattr(h.invoker, "invoke_async", counting("invoke", h.invoker.invoke_async))
    try:
        start(h, chains=2)
        while h.invoker.calls:
            h.drive(h.invoker.pop())
    except Killed:
        pass
    armed = False
    [run_id] = h.store.run_ids()
    for _ in range(6):
        while h.invoker.calls:
            h.drive(h.invoker.pop())
        if h.store.load_summary(run_id) is not None:
            break
        h.clock.advance(h.timeout_ms + h.settings.stall_after_ms + 1)
        h.drive({"action": "sweep"})
    for cp in h.store.load_chains(run_id):
        print(
            cp.chain,
            cp.start,
            cp.end,
            cp.position,
            cp.ok,
            cp.failed,
            cp.holes,
            cp.splits,
            cp.strikes,
            cp.status,
        )
    _exactly_once(h, run_id)


def one_strike(s3: Any, bucket: str) -> Harness:
    """The `h` fixture's bucket and settings, with a listing stopped by its first strike."""
    for key in KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=body(key))
    config = settings(bucket=bucket, list_page_size=5, segment_pages=1, stall_after_ms=10_000)
    h = Harness(s3, bucket, replace(config, max_task_attempts=1), timeout_ms=60_000)
    h.clock.at_ms = time.time() * 1000 + 1
    return h


def test_prefix_a_listing_that_keeps_killing_its_leg_still_works_what_it_listed(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 19482: the lister died with a listed segment pending (its chain not yet made),
    the next claim counted the strike that stops the listing, and the run completed
    failed with that segment's keys in no chain: listed, never worked, never reported."""
    h = one_strike(s3, bucket)
    run_id = _lister_dies_then_recovers(h, _dies_making_chain_10(monkeypatch))
    summary = h.summary(run_id)
    assert summary["status"] == "failed"
    assert "listing killed its leg" in str(h.checkpoint(run_id, LISTER)["reason"])
    worked = sorted(h.result_indices(run_id))
    assert worked == list(range(len(worked)))
    assert {10, 11, 12, 13, 14} <= set(worked)  # the segment pending when the lister died


def test_prefix_a_lister_killed_by_placing_a_segment_still_fails_its_run(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its last strike the lister fails the run without placing again: the placing is
    what kills it, and placing first every time would never let the run end."""
    h = one_strike(s3, bucket)
    run_id = start(h, chains=2)
    real = RunStore.create_checkpoint

    def killing(self: RunStore, cp: Any) -> Any:
        if cp.chain == segment_chain(10):
            raise Killed("placing this segment kills the leg")
        return real(self, cp)

    monkeypatch.setattr(RunStore, "create_checkpoint", killing)
    with pytest.raises(Killed):
        h.drive(h.invoker.pop())
    h.clock.advance(h.timeout_ms + h.settings.stall_after_ms + 1)
    h.invoker.calls.clear()
    with pytest.raises(Killed):  # strike 1 of 1: it places what it listed, and dies again
        h.drive({"action": "sweep"})
    h.clock.advance(h.timeout_ms + h.settings.stall_after_ms + 1)
    h.invoker.calls.clear()
    h.drive({"action": "sweep"})
    lister = h.checkpoint(run_id, LISTER)
    assert lister["status"] == "failed"
    assert "listing killed its leg 2 times" in str(lister["reason"])
