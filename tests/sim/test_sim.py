"""The simulator in CI: ten thousand seeded worlds, replay, its teeth, and its fakes' semantics."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.fakes import Killed
from tests.sim import prefix as sim_prefix
from tests.sim.conftest import report_line
from tests.sim.crawl import CATEGORIES as CRAWL_CATEGORIES
from tests.sim.crawl import CRAWL_FAULTS, CrawlWorld, crawl_seeds
from tests.sim.executors import SimClock, SimFuture
from tests.sim.oracle import CATEGORIES
from tests.sim.s3 import MemoryS3, etag_of
from tests.sim.scheduler import Actor, Scheduler
from tests.sim.soak import soak
from tests.sim.world import Params, simulate
from worker import completion, leg, listing, steal, sweep
from worker.checkpoint import Checkpoint, Plan
from worker.clock import Clock
from worker.crawl.seen import SeenSet
from worker.crawl.steps import CrawlSteps
from worker.exceptions import ConflictError, InputChangedError
from worker.notice import Notifier
from worker.s3 import ObjectNotFoundError, ObjectStore
from worker.store import RunRecord, RunStore, Versioned

SIM_RUNS = int(os.environ.get("SIM_RUNS", "10000"))
"""Seeds the CI run simulates (1..SIM_RUNS); `make sim RUNS=n` soaks more."""
REPLAY_SEED = 67
"""A busy world: a replaced list (two runs), lost answers, kills, killer tasks, strikes."""
LIVELOCK_SEED = 48
"""The world that found leaked host slots (a leg that raised mid-window)."""
ADOPTION_SEED = 6
"""A fanned-out world where a leg claims a chain at its range's end: orphan adoption used to
take the next chain's results objects and count their rows twice."""
CAREFUL_STEAL_SEED = 1195
"""A fanned-out world with a killer task: a thief used to split a dead leg's careful range off
into a chain with no strikes, and the killer killed more than max_task_attempts + 1 times
(seed 1094 found it; 1195 meets it since `container.io` runs side-by-side calls in other
orders)."""
RESUME_RACE_SEED = 5672
"""A run of 29 chains cancelled, then started again by a redriven upload: the start resumed
its chains while the last cancelled chain's leg completed the run."""
CRAWL_DEPTH_SEED = 97651
CLAIM_UNDER_STEAL_SEED = 11245
"""A claim landed with its answer lost, and a steal landed on it before the read-back."""
LOST_RANGE_SEED = 19482
"""A prefix run failed by its lister's strikes with a listed segment not yet placed."""
DUPLICATE_SEED = 21151
"""A claim after a give-back planned below the orphan it was to adopt; a steal split it."""
"""A crawl of one chain with per-host delays (so holes): a page's depth past its distance."""


@pytest.mark.timeout(900)
def test_sim_ten_thousand_seeded_runs_hold_every_invariant() -> None:
    tally = soak(1, SIM_RUNS, procs=2, chunk=250)
    report_line(tally.line())
    assert tally.runs == SIM_RUNS
    failing = f"failing seeds {tally.failed_seeds[:50]}"
    assert not tally.failed_seeds, f"{tally.line()}\n{failing}\n\n{tally.report(limit=2)}"


def test_sim_replays_a_seed_exactly() -> None:
    first, second = simulate(REPLAY_SEED), simulate(REPLAY_SEED)
    assert len(first.trace.entries) > 100
    assert first.trace.entries == second.trace.entries
    assert first.trace.digest() == second.trace.digest()
    assert [str(v) for v in first.violations] == [str(v) for v in second.violations]


def test_sim_replays_the_same_traces_in_another_process() -> None:
    """A fresh interpreter (another hash seed, other thread ids) gives the same traces."""
    seeds = [REPLAY_SEED, *range(1, 30)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        there = pool.submit(_digests, seeds).result()
    assert there == _digests(seeds)


def _digests(seeds: list[int]) -> list[str]:
    return [simulate(seed).trace.digest() for seed in seeds]


def test_sim_a_leg_that_raised_mid_window_leaves_no_host_slots_taken() -> None:
    """Seed 48: leg 0 raises (a results PUT failed) with tasks in flight on container c0;
    leg 1, later on c0, used to find their hosts full and spin until its deadline."""
    world = simulate(LIVELOCK_SEED)
    assert [str(v) for v in world.violations if v.category == "livelock"] == []


def test_sim_a_commit_that_moved_nothing_keeps_the_strikes() -> None:
    """The soak's case (about one world in 20,000): a leg claims after a death (strike 1),
    runs out of time before its careful task, and its empty commit used to write strikes
    0; the killer task then killed once more than max_task_attempts + 1 allows."""
    struck = Checkpoint("r", total=10, position=4, owner="o", strikes=1, careful_until=6)
    after = struck.advance(
        4,
        holes=[],
        level=1,
        ok=0,
        failed=0,
        failure_kinds={},
        failure_samples=[],
        task_ms=0,
        at_ms=1,
        plan_end=5,
    )
    assert after.strikes == 1


# --------------------------------------------------------------------------------------
# teeth: past bugs planted back (in this process only) are caught within a few seeds
# --------------------------------------------------------------------------------------


def _first_caught(category: str, seeds: range) -> int | None:
    for seed in seeds:
        if any(v.category == category for v in simulate(seed).violations):
            return seed
    return None


def test_sim_catches_a_lost_cas_answer_read_as_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both read-backs off: the store's (its bytes in place) and the leg's (its write under a
    steal, which also covers the bytes in place)."""
    monkeypatch.setattr(RunStore, "_holds", lambda self, key, body: None)
    monkeypatch.setattr("worker.leg.written_under_steals", lambda written, current: False)
    assert _first_caught("strikes", range(1, 101)) is not None


def test_sim_catches_the_short_careful_range_after_a_death(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    claim = Checkpoint.claim

    def short(
        self: Checkpoint, *, leg: int, owner: str, at_ms: int, lease_until_ms: int, plan: Plan
    ) -> Checkpoint:
        claimed = claim(
            self, leg=leg, owner=owner, at_ms=at_ms, lease_until_ms=lease_until_ms, plan=plan
        )
        if self.owner is None:
            return claimed
        careful_until = max(self.careful_until, self.position + 1)  # without self.batch_end
        return replace(
            claimed, careful_until=careful_until, batch_end=plan(self.position, careful_until)
        )

    monkeypatch.setattr(Checkpoint, "claim", short)
    assert _first_caught("killer_deaths", range(1, 101)) is not None


def test_sim_catches_orphan_adoption_that_stops_at_the_object_below(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listed = RunStore.result_keys

    def stops_early(self: RunStore, run_id: str, start_after: int = -1) -> Iterator[Any]:
        for start, end, key in listed(self, run_id, start_after):
            if start_after >= 0 and start != start_after + 1:
                return  # adopt_orphans then breaks on the object just below the position
            yield start, end, key

    monkeypatch.setattr(RunStore, "result_keys", stops_early)
    assert _first_caught("duplicated", range(1, 1501)) is not None  # about 1 world in 150


# --------------------------------------------------------------------------------------
# teeth for fan-out: bugs in the fan-out protocol planted (in this process only) are caught
# within the first few hundred seeds, far inside the CI's ten thousand
# --------------------------------------------------------------------------------------


def test_sim_catches_a_steal_that_splits_below_the_victims_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The victim's owner works everything under its plan: a split there hands its tasks to a
    second owner (a task started outside its holder's range, rows past the range's end)."""
    monkeypatch.setattr(Checkpoint, "steal_line", property(lambda self: self.position))
    assert _first_caught("forks", range(1, 201)) is not None  # seed 13 today


def test_sim_catches_a_summary_written_before_the_last_chain_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Completion that does not wait for every chain (done markers, terminal checkpoints)."""

    def any_time(store: RunStore, record: RunRecord, io: Any = None) -> list[Checkpoint] | None:
        return store.load_chains(record.run_id) or None

    monkeypatch.setattr(completion, "finished_chains", any_time)
    assert _first_caught("completed_early", range(1, 51)) is not None  # seed 1 today


def test_sim_catches_a_split_that_ignores_the_victims_lost_race(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thief whose CAS on the victim failed (its owner moved its plan on, or another thief
    split it first) creates the stolen range anyway: two chains own the same indices."""

    def blind(store: RunStore, victim: Versioned, clock: Clock) -> Checkpoint | None:
        cp = victim.checkpoint
        if cp.finished or cp.stealable < steal.MIN_STEAL:
            return None
        at = cp.steal_line + cp.stealable // 2
        chain = f"{cp.chain}.{len(cp.splits) + 1}"
        with contextlib.suppress(ConflictError):  # the planted bug: a lost race, taken anyway
            store.swap(victim, cp.split(chain, at))
        child = steal._range(cp, chain, at, cp.range_end, clock.now_ms())
        store.create_checkpoint(child)
        return child

    monkeypatch.setattr(steal, "_split", blind)
    assert _first_caught("forks", range(1, 401)) is not None  # seed 58 today


def test_sim_catches_a_sweep_that_never_sends_a_refused_notice_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refused notice must still go out once, by the sweep: one that only tidies misses it."""
    repair = sweep.repair

    def tidy_only(
        store: RunStore, record: RunRecord, notifier: Notifier, at_ms: int, **kw: Any
    ) -> str | None:
        if store.load_summary(record.run_id) is not None:
            store.mark_inactive(record.run_id, store.active_since(record.run_id))
            return "tidied"
        return repair(store, record, notifier, at_ms, **kw)

    monkeypatch.setattr(sweep, "repair", tidy_only)
    assert _first_caught("unfinished", range(1, 201)) is not None  # seed 13 today


def test_sim_orphan_adoption_stays_inside_the_chains_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seed 6: a leg claims a chain at its range's end; adopting orphans past it (the runtime
    before the fix) counted the next chain's rows twice."""
    assert [str(v) for v in simulate(ADOPTION_SEED).violations] == []
    adopt = leg.Leg.adopt_orphans

    def unbounded(self: leg.Leg) -> None:  # adoption as if the range never ended
        end = self._checkpoint.range_end
        with monkeypatch.context() as patched:
            patched.setattr(Checkpoint, "range_end", property(lambda _: end + 10**9))
            adopt(self)

    monkeypatch.setattr(leg.Leg, "adopt_orphans", unbounded)
    assert any(v.category == "counts" for v in simulate(ADOPTION_SEED).violations)


def test_sim_a_steal_leaves_a_dead_legs_careful_range_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seed 1195: the steal line without careful_until (the runtime before the fix) let a
    killer task kill again in the chain split off with its suspect range."""
    assert [str(v) for v in simulate(CAREFUL_STEAL_SEED).violations] == []
    monkeypatch.setattr(
        Checkpoint, "steal_line", property(lambda self: max(self.position, self.batch_end))
    )
    assert any(v.category == "killer_deaths" for v in simulate(CAREFUL_STEAL_SEED).violations)


# --------------------------------------------------------------------------------------
# teeth for crawl worlds: the crawl's protocol broken (in this process only) is caught
# within the first hundred crawl worlds (about 700 seeds); its safety nets hold alone
# --------------------------------------------------------------------------------------


def _first_crawl_caught(categories: set[str], seeds: list[int]) -> int | None:
    for seed in seeds:
        if any(v.category in categories for v in simulate(seed).violations):
            return seed
    return None


def test_sim_crawl_worlds_strike_every_crawl_fault_point() -> None:
    struck: Counter[str] = Counter()
    for seed in crawl_seeds(60):
        struck.update(simulate(seed).faults.counts)
    assert all(struck[name] for name in CRAWL_FAULTS), struck


def test_sim_catches_a_crawl_completion_that_ignores_inboxes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run completes while links wait in an inbox: the summary comes early, and the
    pages behind those links are never crawled."""
    monkeypatch.setattr(completion, "_crawl_quiet", lambda *args: True)
    caught = _first_crawl_caught({"completed_early", "lost"}, crawl_seeds(100, chains=2))
    assert caught is not None  # seed 386 today


def test_sim_crawl_senders_that_never_wake_are_covered_by_the_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sender that dies before waking the owner of its links is the sweep's to repair: with
    no sender ever waking, every crawl still finds every page (later); without the sweep's
    waking too, links are left in inboxes at once."""
    seeds = crawl_seeds(30, chains=2)
    monkeypatch.setattr(leg.Leg, "wake", lambda self, chain: None)
    assert _first_crawl_caught(set(CATEGORIES) | set(CRAWL_CATEGORIES), seeds) is None
    monkeypatch.setattr(sweep, "_wake_crawl_chains", lambda *args, **kw: 0)
    assert _first_crawl_caught({"lost", "unfinished"}, seeds) is not None  # the first today


def test_sim_catches_a_crawl_that_forgets_its_seen_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SeenSet, "__contains__", lambda self, hashed: False)
    assert _first_crawl_caught({"duplicated"}, crawl_seeds(10)) is not None  # the first today


def test_sim_catches_inbox_objects_deleted_before_the_cas_that_counts_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The owner deletes the mail it takes in as it reads it: a leg that dies before its CAS
    (or loses it) loses those links."""
    read = CrawlSteps._read_mail

    def eager(self: CrawlSteps, keys: Sequence[str]) -> list[Any]:
        found = read(self, keys)
        self.store.delete_many(keys)
        return found

    monkeypatch.setattr(CrawlSteps, "_read_mail", eager)
    caught = _first_crawl_caught({"lost"}, crawl_seeds(100, chains=2))
    assert caught is not None  # seed 196 today


def test_sim_a_crawl_page_found_past_a_hole_keeps_its_distance() -> None:
    """Seed 97651, one chain, max_depth 3: a page deferred by its leg (a hole) links to pages
    that rows found after it, one level deeper, also link to. Those rows were committed
    first and their links taken at once, so the pages got the deeper depth, were not
    followed at the limit, and a page at distance 3 was never crawled. Links past a hole
    now wait for it."""
    assert [str(v) for v in simulate(CRAWL_DEPTH_SEED).violations] == []


def test_sim_a_run_resumed_while_it_completes_ends_once() -> None:
    """Seed 5672: the completing leg read chain 0000's cancelled checkpoint; the start then
    swapped it back to running. The leg used to write the summary (cancelled) and delete the
    active marker the start had just written: chain 0000 ran on under a summary of an
    ending, and a chain split off it stalled with no marker for the sweep. Found once
    `container.io` ran side-by-side reads in other orders (`ShuffledIo`); each side of the
    fix is pinned by tests/unit/test_resume_race.py."""
    assert [str(v) for v in simulate(RESUME_RACE_SEED).violations] == []


# --------------------------------------------------------------------------------------
# the in-memory S3, through the runtime's own boundary
# --------------------------------------------------------------------------------------


@pytest.fixture
def objects() -> ObjectStore:
    s3 = MemoryS3()
    s3.create_bucket(Bucket="b")
    return ObjectStore(s3)


def test_sim_s3_conditional_puts_answer_412_and_404(objects: ObjectStore) -> None:
    etag = objects.put("b", "k", b"one", if_none_match=True)
    assert etag == etag_of(b"one")
    with pytest.raises(ConflictError):
        objects.put("b", "k", b"two", if_none_match=True)
    with pytest.raises(ConflictError):
        objects.put("b", "k", b"two", if_match='"stale"')
    with pytest.raises(ObjectNotFoundError):
        objects.put("b", "missing", b"two", if_match=etag)
    assert objects.put("b", "k", b"two", if_match=etag) == etag_of(b"two")


def test_sim_s3_conditional_gets_answer_304_and_412(objects: ObjectStore) -> None:
    etag = objects.put("b", "k", b"body")
    objects.unchanged("b", "k", etag)  # a 304: still that version
    with pytest.raises(InputChangedError):
        objects.unchanged("b", "k", '"other"')
    with pytest.raises(InputChangedError):
        objects.get("b", "k", if_match='"other"')
    with pytest.raises(ObjectNotFoundError):
        objects.get("b", "missing")


def test_sim_s3_ranged_reads_carry_the_whole_objects_etag(objects: ObjectStore) -> None:
    etag = objects.put("b", "k", b"0123456789")
    body, size = objects.open("b", "k", if_match=etag, byte_range="bytes=2-4")
    assert (body.read(), size) == (b"234", 3)
    client = objects.client
    assert client.get_object(Bucket="b", Key="k", Range="bytes=-3")["Body"].read() == b"789"
    assert client.get_object(Bucket="b", Key="k", Range="bytes=2-4")["ETag"] == etag
    with pytest.raises(ClientError, match="InvalidRange"):
        client.get_object(Bucket="b", Key="k", Range="bytes=10-12")


def test_sim_s3_lists_in_key_order_a_page_at_a_time(objects: ObjectStore) -> None:
    keys = [f"p/{i:03d}" for i in range(7)] + ["p/d/x", "p/d/y", "p/e/z", "q/1"]
    for key in reversed(keys):
        objects.put("b", key, b"")
    client = objects.client
    seen: list[str] = []
    params: dict[str, Any] = {"Bucket": "b", "Prefix": "p/", "MaxKeys": 3, "StartAfter": "p/001"}
    while True:
        page = client.list_objects_v2(**params)
        seen += [c["Key"] for c in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        params = {**params, "ContinuationToken": page["NextContinuationToken"]}
    assert seen == [k for k in sorted(keys) if k.startswith("p/") and k > "p/001"]
    assert list(objects.folders("b", "p/")) == ["d", "e"]
    page = client.list_objects_v2(Bucket="b", Prefix="p/", Delimiter="/", MaxKeys=8)
    assert [c["Prefix"] for c in page["CommonPrefixes"]] == ["p/d/"]
    rest = client.list_objects_v2(
        Bucket="b", Prefix="p/", Delimiter="/", ContinuationToken=page["NextContinuationToken"]
    )
    assert [c["Prefix"] for c in rest["CommonPrefixes"]] == ["p/e/"]
    assert "Contents" not in rest


# --------------------------------------------------------------------------------------
# the scheduler
# --------------------------------------------------------------------------------------


def _interleaving(seed: int) -> list[str]:
    scheduler = Scheduler(random.Random(seed))
    order: list[str] = []

    def body(name: str) -> Callable[[], None]:
        def run() -> None:
            for step in range(5):
                order.append(f"{name}{step}")
                scheduler.sleep_ms(10)

        return run

    for name in "abc":
        scheduler.spawn(Actor(name, body(name), None))
    scheduler.run(until_ms=scheduler.now + 10_000, max_steps=1_000)
    scheduler.finish()
    return order


def test_sim_scheduler_interleaves_by_the_seed_alone() -> None:
    assert _interleaving(1) == _interleaving(1)
    assert len({tuple(_interleaving(seed)) for seed in range(8)}) > 1


def test_sim_scheduler_kills_an_invocation_at_its_deadline() -> None:
    scheduler = Scheduler(random.Random(1))
    clock = SimClock(scheduler)
    ended: list[str] = []

    def body() -> None:
        try:
            future: SimFuture[int] = SimFuture(scheduler, 1)
            scheduler.after(5_000, lambda: future.set_result(1))
            future.result()  # waits virtually: the deadline comes first
            ended.append("returned")
        except Killed as exc:
            ended.append(f"killed at {clock.now_ms() - scheduler.start_ms}: {exc}")

    scheduler.spawn(Actor("a", body, scheduler.now + 1_000))
    scheduler.run(until_ms=scheduler.now + 10_000, max_steps=100)
    scheduler.finish()
    assert ended == ["killed at 1000: deadline"]


def _prefix_seeds(seeds: range) -> list[int]:
    """The seeds in `seeds` whose world is a prefix run (drawn as `World` draws them)."""
    found = []
    for seed in seeds:
        params = Params.draw(random.Random(f"baton-sim:{seed}:params"))
        if CrawlWorld.draw(seed, params) is not None:
            continue  # a crawl world: its seed draws no prefix
        if sim_prefix.draw(random.Random(f"baton-sim:{seed}:prefix"), params.tasks) is not None:
            found.append(seed)
    return found


def _first_prefix_caught(category: str, seeds: range) -> int | None:
    for seed in _prefix_seeds(seeds):
        if any(v.category == category for v in simulate(seed).violations):
            return seed
    return None


def test_sim_prefix_worlds_are_a_fraction_of_the_mix_and_hold_every_invariant() -> None:
    seeds = _prefix_seeds(range(1, 301))
    assert 10 <= len(seeds) <= 60
    for seed in seeds[:12]:
        world = simulate(seed)
        assert world.prefix is not None
        assert any("a new object" in entry[2] for entry in world.trace.entries)
        assert world.violations == [], (seed, [str(v) for v in world.violations])


def test_sim_catches_a_lister_that_ignores_the_cutoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "modified_ms", lambda iso: 0)
    assert _first_prefix_caught("prefix", range(1, 301)) is not None  # seed 1 today


def test_sim_catches_a_lister_that_drops_a_dead_legs_pending_segments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lister killed after the CAS that records a segment as pending: its next leg must
    create that segment's work chain; one that drops the pending list loses its keys."""
    place = leg.Leg.place_pending

    def forgetful(self: leg.Leg, *, recount: bool = False) -> None:
        if not getattr(self, "_forgot", False):
            self._forgot = True  # type: ignore[attr-defined]
            pending = self._listing["pending"]
            if pending:
                self._swap(self._checkpoint.evolve(listing={**self._listing, "pending": []}))
                return
        place(self, recount=recount)

    monkeypatch.setattr(leg.Leg, "place_pending", forgetful)
    assert _first_prefix_caught("ranges", range(1, 301)) is not None  # seed 85 today


def test_sim_a_claim_whose_answer_was_lost_under_a_steal_counts_no_strike() -> None:
    """Seed 11245: a claim landed, its answer was lost, a thief's split landed on top; the
    leg read its claim as lost and returned, and the next owner counted a strike for it."""
    assert [str(v) for v in simulate(CLAIM_UNDER_STEAL_SEED).violations] == []


def test_sim_a_listing_stopped_by_its_strikes_still_places_what_it_listed() -> None:
    """Seed 19482 (also 24658, 25964): the lister died with a listed segment pending; the
    claim that counted its last strike failed the run before making that segment's chain,
    so its keys were in no chain's range when the run completed."""
    assert [str(v) for v in simulate(LOST_RANGE_SEED).violations] == []


def test_sim_a_claim_after_a_give_back_never_lets_a_steal_split_its_orphan() -> None:
    """Seed 21151: a leg gave the chain back after writing results 10-13; the next claim
    planned only to 13, a thief split there, and index 13 was written by both chains."""
    assert [str(v) for v in simulate(DUPLICATE_SEED).violations] == []
