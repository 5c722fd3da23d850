"""The oracle: what must hold after every simulated world, judged from S3 and the sim's own record.

From S3 alone (`RunStore`, as a user would read the bucket), for every run:
- every task index is in the results exactly once (`RunStore.rows`: range objects
  under results/, holes under holes/); a finished run holds exactly its list, a run
  that stopped early (cancelled, superseded, failed) exactly what is below its
  checkpoint and not a hole; range objects' key ranges never overlap, and each
  holds only indices of its own range             -> lost, duplicated, overlap
- every run ends in a terminal status, with exactly one summary.json, and nothing
  left in `_active/`                               -> unfinished; a summary, once
  written, is never rewritten with other content  -> summary
- the counts add up: the checkpoint's and the summary's ok and failed are the rows'
  (ok + failed = tasks for a finished run)         -> counts
- [fan-out] exactly one manifest.json, at least one completion notice and none before
  every chain finished: `check_manifest` and `check_notices` are the places (empty
  while runs have one chain and no notice)         -> manifest, notices_early

From the sim's own record (which invocation wrote what, and when it was alive):
- never two live owners of one (run, chain): when a claim lands, the previous
  holder has given the run back, or is dead; results and holes objects are written
  only by the invocation holding their chain      -> forks
- a strike is counted only for an owner that died (was killed, or raised); an
  owner that returned normally was struck for nothing (as when a CAS whose answer
  was lost is read as lost). Excused when the owner's own read-back of that
  checkpoint failed: it could not know           -> strikes
- a task that kills its process costs at most `max_task_attempts + 1` deaths (the
  careful range covers the dead leg's whole plan) -> killer_deaths (strike_reset when
  a write that moved nothing had reset the strikes: a finding in the runtime)
- no invocation spins (yields again and again without virtual time moving: a busy
  loop, which Lambda ends at the deadline)       -> livelock

A run reads its checkpoints through `chain_checkpoints`, which returns one per
chain: chain 0 today; fan-out adds `runs/{id}/chains/{c:04d}/checkpoint.json`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.sim.scheduler import SPINNING
from worker.checkpoint import Checkpoint
from worker.exceptions import RunNotFoundError
from worker.store import (
    ACTIVE_DIR,
    CHECKPOINT_FILE,
    HOLES_DIR,
    RESULTS_DIR,
    RunRecord,
    RunStore,
)

if TYPE_CHECKING:
    from tests.sim.lam import Invocation
    from tests.sim.world import World

CATEGORIES = (
    "lost",
    "duplicated",
    "forks",
    "unfinished",
    "notices_early",
    "overlap",
    "counts",
    "summary",
    "manifest",
    "strikes",
    "killer_deaths",
    "strike_reset",
    "livelock",
)
CHAINS_DIR = "chains/"


@dataclass(frozen=True)
class Violation:
    category: str
    message: str

    def __str__(self) -> str:
        return f"{self.category}: {self.message}"


# --------------------------------------------------------------------------------------
# chains: the one place that knows where a run's checkpoints live
# --------------------------------------------------------------------------------------


def chain_of(key: str, prefix: str) -> tuple[str, int] | None:
    """The (run, chain) whose checkpoint `key` is, or None."""
    if not key.startswith(prefix):
        return None
    run_id, _, tail = key[len(prefix) :].partition("/")
    if tail == CHECKPOINT_FILE:
        return run_id, 0
    if tail.startswith(CHAINS_DIR) and tail.endswith("/" + CHECKPOINT_FILE):
        return run_id, int(tail[len(CHAINS_DIR) :].split("/", 1)[0])
    return None


def chain_of_rows(key: str, prefix: str) -> tuple[str, int] | None:
    """The (run, chain) that may write the results or holes object `key`, or None.

    Chain 0 today; fan-out: the chain whose range holds the object's first index.
    """
    if not key.startswith(prefix):
        return None
    run_id, _, tail = key[len(prefix) :].partition("/")
    if tail.startswith((RESULTS_DIR, HOLES_DIR)):
        return run_id, 0
    return None


def chain_checkpoints(store: RunStore, run_id: str) -> dict[int, Checkpoint]:
    """Every chain's checkpoint of a run, by chain number (empty: none written yet).

    One chain per run today, at `runs/{id}/checkpoint.json`. Fan-out: also list
    `runs/{id}/chains/` and read each `{c:04d}/checkpoint.json` here.
    """
    try:
        return {0: store.load_checkpoint(run_id).checkpoint}
    except RunNotFoundError:
        return {}


# --------------------------------------------------------------------------------------
# the ledger of owners, kept as writes land
# --------------------------------------------------------------------------------------


@dataclass
class Strike:
    chain: tuple[str, int]
    at_ms: int
    owner: str
    previous: Invocation | None
    by: Invocation | None


@dataclass
class OwnerLedger:
    """Who holds each (run, chain), from the checkpoint writes that landed."""

    holders: dict[tuple[str, int], Invocation] = field(default_factory=dict)
    owners: dict[str, Invocation] = field(default_factory=dict)
    strikes: list[Strike] = field(default_factory=list)
    resets: list[str] = field(default_factory=list)
    """Strikes forgotten by a write that moved nothing (an empty commit)."""
    violations: list[Violation] = field(default_factory=list)
    summaries: dict[str, bytes | None] = field(default_factory=dict)
    claims: int = 0

    def landed(
        self,
        chain: tuple[str, int],
        before: bytes | None,
        after: bytes | None,
        writer: Invocation | None,
        at_ms: int,
    ) -> str | None:
        """Account for one checkpoint write; a note for the trace, if it was a claim."""
        old: dict[str, Any] = json.loads(before) if before else {}
        new: dict[str, Any] = json.loads(after) if after else {}
        old_owner, new_owner = old.get("owner"), new.get("owner")
        holder = self.holders.get(chain)
        if new_owner is not None and new_owner != old_owner:
            self.claims += 1
            if writer is not None:
                self.owners.setdefault(new_owner, writer)
            if holder is not None and holder is not writer and holder.alive:
                self.violations.append(
                    Violation(
                        "forks",
                        f"{chain[0]} chain {chain[1]}: {writer.name if writer else '?'} claimed "
                        f"at +{at_ms} while {holder.name} still held it and was alive",
                    )
                )
            if writer is not None:
                self.holders[chain] = writer
            note = f"CLAIM chain {chain[1]} of {chain[0]} as {new_owner}"
            if new.get("strikes", 0) > old.get("strikes", 0) and old_owner is not None:
                previous = self.owners.get(old_owner)
                self.strikes.append(Strike(chain, at_ms, old_owner, previous, writer))
                note += f", strike {new['strikes']} for {previous.name if previous else old_owner}"
            return note
        if (
            old.get("strikes", 0) > new.get("strikes", 0)
            and new.get("status") == "running"
            and (old.get("position"), old.get("holes")) == (new.get("position"), new.get("holes"))
        ):
            self.resets.append(
                f"{chain[0]} chain {chain[1]}: {writer.name if writer else '?'} reset "
                f"{old['strikes']} strikes at +{at_ms} without moving past position "
                f"{new.get('position')}"
            )
        if new_owner is None and holder is not None and holder is writer:
            del self.holders[chain]
            return f"gave back chain {chain[1]} of {chain[0]}"
        return None

    def wrote_rows(self, chain: tuple[str, int], key: str, writer: Invocation, at_ms: int) -> None:
        """Results are written only by the holder of their chain (before its CAS past them)."""
        holder = self.holders.get(chain)
        if holder is not writer:
            held = f"{holder.name} held it" if holder else "nobody held it"
            self.violations.append(
                Violation("forks", f"{writer.name} wrote {key} at +{at_ms} while {held}")
            )

    def wrote_summary(self, key: str, body: bytes | None) -> None:
        """A run's summary, once written, never changes (a second writer writes the same)."""
        first = self.summaries.setdefault(key, body)
        if body is not None and first != body:
            self.violations.append(Violation("summary", f"{key} rewritten with other content"))


# --------------------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------------------


def judge(world: World) -> list[Violation]:
    store = RunStore.over(world.s3, world.bucket, world.settings.results_prefix)
    violations = list(world.ledger.violations)
    violations += _strikes(world)
    violations += _killers(world)
    violations += _invocations(world)
    run_ids = [r for r in store.run_ids() if _has_record(store, r)]
    for run_id in run_ids:
        violations += check_run(store, run_id)
        violations += check_manifest(store, run_id)
        violations += check_notices(world, run_id)
    active = world.s3.keys(world.bucket, f"{world.settings.results_prefix}{ACTIVE_DIR}")
    for key in active:
        violations.append(Violation("unfinished", f"{key} still marks a run active"))
    started = set(run_ids)
    for upload in world.uploads:
        if upload.run_id not in started and upload is world.uploads[-1]:
            violations.append(
                Violation("unfinished", f"the upload {upload.label} never started a run")
            )
    if not world.settled:
        violations.append(Violation("unfinished", f"the world did not settle: {world.stopped}"))
    return violations


def check_run(store: RunStore, run_id: str) -> list[Violation]:
    out: list[Violation] = []
    record = store.load_run(run_id)
    chains = chain_checkpoints(store, run_id)
    if not chains:
        return [Violation("unfinished", f"{run_id} has run.json but no checkpoint")]
    unfinished = [c for c, cp in chains.items() if not cp.finished]
    if unfinished:
        cp = chains[unfinished[0]]
        out.append(
            Violation(
                "unfinished", f"{run_id} chain {unfinished[0]} is {cp.status} at {cp.position}"
            )
        )
    rows = list(store.rows(run_id))
    seen = Counter(row["index"] for row in rows)
    twice = sorted(i for i, n in seen.items() if n > 1)
    if twice:
        out.append(Violation("duplicated", f"{run_id}: indices in the results twice: {twice[:20]}"))
    expected = _expected(record, chains)
    missing = sorted(expected - seen.keys())
    if missing:
        out.append(Violation("lost", f"{run_id}: indices missing from the results: {missing[:20]}"))
    if all(cp.status == "done" for cp in chains.values()):
        stray = sorted(seen.keys() - expected)
        if stray:
            out.append(Violation("lost", f"{run_id}: indices outside the list: {stray[:20]}"))
    out += _ranges(store, run_id)
    out += _counts(store, run_id, rows, expected, chains)
    return out


def check_manifest(store: RunStore, run_id: str) -> list[Violation]:
    """A finished run has one manifest.json listing results objects that hold every row."""
    summary = store.load_summary(run_id)
    manifest = store.load_manifest(run_id)
    if summary is None:
        return []
    if manifest is None:
        return [Violation("manifest", f"{run_id} finished without a manifest")]
    listed = {entry["key"] for entry in manifest["results"] + manifest["holes"]}
    stored = {key for _, _, key in store.result_keys(run_id)}
    stored |= {key for _, _, key in store.hole_keys(run_id)}
    if listed != stored:
        return [Violation("manifest", f"{run_id}'s manifest lists {len(listed)} of {len(stored)}")]
    if manifest["rows"] != summary["processed"]:
        return [Violation("manifest", f"{run_id}'s manifest counts differ from its summary")]
    return []


def check_notices(world: World, run_id: str) -> list[Violation]:
    """At least one completion notice per finished run, none before every chain finished."""
    sent = [n for n in world.notices if n.run_id == run_id]
    problems = [
        Violation("notices_early", f"{run_id} notified at +{n.at_ms} before its chains ended")
        for n in sent
        if not n.chains_finished
    ]
    store = RunStore.over(world.s3, world.bucket, world.settings.results_prefix)
    if store.load_summary(run_id) is not None and not sent:
        problems.append(Violation("unfinished", f"{run_id} finished and never notified"))
    return problems


def runs_settled(store: RunStore) -> bool:
    """Every run terminal with its summary, and no run marked active: nothing left to do."""
    if any(True for _ in store.active_runs()):
        return False
    for run_id in store.run_ids():
        if not _has_record(store, run_id):
            continue
        chains = chain_checkpoints(store, run_id)
        if not chains or not all(cp.finished for cp in chains.values()):
            return False
        if store.load_summary(run_id) is None:
            return False
    return True


def _has_record(store: RunStore, run_id: str) -> bool:
    try:
        store.load_run(run_id)
    except RunNotFoundError:
        return False
    return True


def _expected(record: RunRecord, chains: dict[int, Checkpoint]) -> set[int]:
    """The indices the results must hold: the whole list when done, else what is below each
    chain's position and not a hole. (Fan-out: each chain from its own range's start.)"""
    expected: set[int] = set()
    for cp in chains.values():
        if cp.status == "done":
            expected |= set(range(record.start_position, cp.total))
        else:
            expected |= set(range(record.start_position, cp.position)) - set(cp.holes)
    return expected


def _ranges(store: RunStore, run_id: str) -> list[Violation]:
    out: list[Violation] = []
    previous: tuple[int, int] | None = None
    for start, end, key in store.result_keys(run_id):
        if start > end:
            out.append(Violation("overlap", f"{key}: an empty range"))
        if previous is not None and start <= previous[1]:
            out.append(
                Violation("overlap", f"{run_id}: {previous[0]}-{previous[1]} and {start}-{end}")
            )
        outside = [r["index"] for r in store.read_rows(key) if not start <= r["index"] <= end]
        if outside:
            out.append(Violation("overlap", f"{key} holds indices outside it: {outside[:10]}"))
        previous = (start, end) if previous is None or end > previous[1] else previous
    return out


def _counts(
    store: RunStore,
    run_id: str,
    rows: list[dict[str, Any]],
    expected: set[int],
    chains: dict[int, Checkpoint],
) -> list[Violation]:
    out: list[Violation] = []
    counted = {row["index"]: row for row in rows if row["index"] in expected}
    failed = sum(1 for row in counted.values() if row.get("error"))
    ok = len(counted) - failed
    cp_ok = sum(cp.ok for cp in chains.values())
    cp_failed = sum(cp.failed for cp in chains.values())
    if (cp_ok, cp_failed) != (ok, failed):
        out.append(
            Violation(
                "counts",
                f"{run_id}: the checkpoint counts ok={cp_ok} failed={cp_failed}, "
                f"the results ok={ok} failed={failed}",
            )
        )
    done = all(cp.status == "done" for cp in chains.values())
    total = max(cp.total for cp in chains.values())
    if done and ok + failed != total - store.load_run(run_id).start_position:
        out.append(Violation("counts", f"{run_id}: ok + failed = {ok + failed} of {total} tasks"))
    summary = store.load_summary(run_id)
    if summary is None:
        if all(cp.finished for cp in chains.values()):
            out.append(Violation("unfinished", f"{run_id} finished without a summary.json"))
        return out
    statuses = {str(cp.status) for cp in chains.values()}
    if summary["status"] not in statuses or (summary["ok"], summary["failed"]) != (ok, failed):
        out.append(
            Violation(
                "counts",
                f"{run_id}: the summary says {summary['status']} ok={summary['ok']} "
                f"failed={summary['failed']}; the run is {sorted(statuses)} "
                f"ok={ok} failed={failed}",
            )
        )
    return out


def _strikes(world: World) -> list[Violation]:
    out: list[Violation] = []
    for strike in world.ledger.strikes:
        previous = strike.previous
        if previous is None:
            out.append(Violation("strikes", f"a strike for an unknown owner {strike.owner}"))
            continue
        if previous.died or previous.alive:
            continue  # died holding it (an alive one is a fork, reported as such)
        if _read_back_failed(previous, strike.chain, world.settings.results_prefix):
            world.excused_strikes += 1
            continue
        by = strike.by.name if strike.by else "?"
        out.append(
            Violation(
                "strikes",
                f"{strike.chain[0]} chain {strike.chain[1]}: {by} "
                f"counted a strike at +{strike.at_ms} for {previous.name}, which "
                f"never died ({previous.outcome}: {previous.detail})",
            )
        )
    return out


def _read_back_failed(invocation: Invocation, chain: tuple[str, int], prefix: str) -> bool:
    """The invocation lost an answer to a write of this checkpoint, then could not read it."""
    lost = False
    for fault, op, key in invocation.faults:
        if chain_of(key, prefix) != chain:
            continue
        if fault == "s3_lost_answer" and op == "PutObject":
            lost = True
        elif lost and fault == "s3_error_before" and op == "GetObject":
            return True
    return False


def _killers(world: World) -> list[Violation]:
    """Too many deaths by one killer task; when strikes were forgotten by an empty commit
    in this world, that explains it (`strike_reset`, a finding in the runtime)."""
    limit = world.settings.max_task_attempts + 1
    resets = world.ledger.resets
    category = "strike_reset" if resets else "killer_deaths"
    why = f"; {resets[0]}" if resets else ""
    return [
        Violation(category, f"{reason}: {deaths} times (at most {limit} expected){why}")
        for reason, deaths in sorted(world.killer_deaths.items())
        if deaths > limit
    ]


def _invocations(world: World) -> list[Violation]:
    return [
        Violation("livelock", f"{inv.name}: {inv.detail}")
        for inv in world.lam.invocations
        if SPINNING in inv.detail
    ]
