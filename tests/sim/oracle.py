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
- [fan-out] the chains' ranges tile the list: every index in exactly one chain's
  `[start, range_end)`, whatever was split off (a range recorded in a victim's
  `splits` has its own checkpoint)                -> ranges
- exactly one manifest.json, listing every results object, its counts the summary's;
  at least one completion notice delivered, and no notice (nor a failed attempt)
  before every chain ended                         -> manifest, notices_early

From the sim's own record (which invocation wrote what, and when it was alive):
- never two live owners of one (run, chain): when a claim lands, the previous
  holder has given the run back, or is dead; a results or holes object is written
  only by the invocation holding the chain whose range (as last written) holds the
  object's first index, and the object ends inside that range; a task starts only
  in an invocation holding the chain whose range holds its index (so a victim's
  owner never works what was split off it)        -> forks
- a chain ends once: nothing but a resume writes over a terminal checkpoint,
  and nothing at all changes a chain's status from one ending to another
                                                  -> ended_twice
- summary.json and manifest.json land only when every chain's checkpoint is
  terminal and the chains' ranges tile the list (no split range still to be
  created); a manifest, once written, never changes -> completed_early, manifest
- a strike is counted only for an owner that died (was killed, or raised); an
  owner that returned normally was struck for nothing (as when a CAS whose answer
  was lost is read as lost). Excused when the owner's own read-back of that
  checkpoint failed: it could not know           -> strikes
- a task that kills its process costs at most `max_task_attempts + 1` deaths (the
  careful range covers the dead leg's whole plan) -> killer_deaths (strike_reset when
  a write that moved nothing had reset the strikes: a finding in the runtime)
- no invocation spins (yields again and again without virtual time moving: a busy
  loop, which Lambda ends at the deadline)       -> livelock

A run reads its checkpoints through `chain_checkpoints`, which returns one per chain
by chain id: `runs/{id}/chains/{chain}/checkpoint.json` (layout 2; a split's chain is
`0003.1`), or the one `runs/{id}/checkpoint.json` of a layout-1 run as chain `0000`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.sim import crawl, prefix
from tests.sim.scheduler import SPINNING
from worker.checkpoint import Checkpoint
from worker.events import FIRST_CHAIN
from worker.exceptions import RunNotFoundError
from worker.listing import total_listed
from worker.store import (
    ACTIVE_DIR,
    CHAINS_DIR,
    CHECKPOINT_FILE,
    HOLES_DIR,
    LAYOUT_VERSION,
    RESULTS_DIR,
    RUN_FILE,
    RunRecord,
    RunStore,
)

if TYPE_CHECKING:
    from tests.sim.lam import Invocation
    from tests.sim.s3 import MemoryS3
    from tests.sim.world import World

CATEGORIES = (
    "lost",
    "duplicated",
    "forks",
    "unfinished",
    "notices_early",
    "overlap",
    "ranges",
    "counts",
    "summary",
    "manifest",
    "completed_early",
    "ended_twice",
    "strikes",
    "killer_deaths",
    "strike_reset",
    "livelock",
    "resume_race",
)


@dataclass(frozen=True)
class Violation:
    category: str
    message: str

    def __str__(self) -> str:
        return f"{self.category}: {self.message}"


# --------------------------------------------------------------------------------------
# chains: the one place that knows where a run's checkpoints live
# --------------------------------------------------------------------------------------

Chain = tuple[str, str]
"""(run id, chain id): `0000`, `0003`, `0003.1` (split off 0003), ..."""


def chain_of(key: str, prefix: str) -> Chain | None:
    """The (run, chain) whose checkpoint `key` is, or None."""
    if not key.startswith(prefix):
        return None
    run_id, _, tail = key[len(prefix) :].partition("/")
    if tail == CHECKPOINT_FILE:
        return run_id, FIRST_CHAIN  # layout 1: the run's one checkpoint
    if tail.startswith(CHAINS_DIR) and tail.endswith("/" + CHECKPOINT_FILE):
        return run_id, tail[len(CHAINS_DIR) :].split("/", 1)[0]
    return None


def rows_of(key: str, prefix: str) -> tuple[str, int, int] | None:
    """(run, first index, last index) of the results or holes object `key`, or None."""
    if not key.startswith(prefix):
        return None
    run_id, _, tail = key[len(prefix) :].partition("/")
    for folder in (RESULTS_DIR, HOLES_DIR):
        if tail.startswith(folder):
            first, _, last = tail[len(folder) :].removesuffix(".jsonl").partition("-")
            return run_id, int(first), int(last)
    return None


def chain_checkpoints(store: RunStore, run_id: str) -> dict[str, Checkpoint]:
    """Every chain's checkpoint of a run, by chain id (empty: none written yet)."""
    out: dict[str, Checkpoint] = {}
    for chain in store.chain_ids(run_id):
        try:
            out[chain] = store.load_checkpoint(run_id, chain).checkpoint
        except RunNotFoundError:
            continue
    return out


def unended(s3: MemoryS3, bucket: str, prefix: str, run_id: str) -> str | None:
    """Why run `run_id` has not ended, read straight from the store (no network, no faults;
    callable while an invocation's write lands): a chain still running, or indices of the
    list that no chain's range holds (a split whose range is not created yet). None: ended."""
    body = s3.body(bucket, f"{prefix}{run_id}/{RUN_FILE}")
    if body is None:
        return "no run.json"
    record = json.loads(body)
    spans: list[tuple[int, int, str]] = []
    total = record["total"]
    statuses: list[str] = []
    for key in s3.keys(bucket, f"{prefix}{run_id}/"):
        chain = chain_of(key, prefix)
        raw = s3.body(bucket, key)
        if chain is None or raw is None:
            continue
        cp = Checkpoint.from_json(json.loads(raw))
        if not cp.finished:
            return f"chain {chain[1]} is {cp.status} at {cp.position}"
        if cp.listing is not None:
            total = int(cp.listing["listed"])  # a prefix run's total is what its lister listed
        layout2 = record.get("version", 1) >= LAYOUT_VERSION
        spans.append((cp.start if layout2 else record["start_position"], cp.range_end, chain[1]))
        statuses.append(str(cp.status))
    if record.get("crawl") is not None:  # a crawl's chains own growing logs, not a list's ranges
        return crawl.unended(s3, bucket, prefix, run_id, statuses)
    return _gap(spans, record["start_position"], total)


def _gap(spans: list[tuple[int, int, str]], first: int, total: int) -> str | None:
    """Whether ranges tile [first, total): None, or what is wrong."""
    at = first
    for start, end, chain in sorted(s for s in spans if s[0] < s[1]):
        if start > at:
            return f"indices {at}-{start - 1} are in no chain's range"
        if start < at:
            return f"chain {chain}'s range {start}-{end - 1} overlaps another's"
        at = end
    if at < total:
        return f"indices {at}-{total - 1} are in no chain's range"
    if at > total:
        return f"ranges end at {at}, past the list's {total} tasks"
    return None


# --------------------------------------------------------------------------------------
# the ledger of owners, kept as writes land
# --------------------------------------------------------------------------------------


@dataclass
class Strike:
    chain: Chain
    at_ms: int
    owner: str
    previous: Invocation | None
    by: Invocation | None


@dataclass(frozen=True)
class Span:
    """A chain's range as its checkpoint last said: [start, end)."""

    start: int
    end: int


@dataclass
class OwnerLedger:
    """Who holds each (run, chain), and each chain's range, from the checkpoint writes that
    landed."""

    holders: dict[Chain, Invocation] = field(default_factory=dict)
    owners: dict[str, Invocation] = field(default_factory=dict)
    spans: dict[str, dict[str, Span]] = field(default_factory=dict)
    """run -> chain -> its range, as last written."""
    strikes: list[Strike] = field(default_factory=list)
    resets: list[str] = field(default_factory=list)
    """Strikes forgotten by a write that moved nothing (an empty commit)."""
    resumes: Counter[str] = field(default_factory=Counter)
    """Chains resumed (a manual start of a stopped run), by run: each forgives strikes and
    buys a killer task another round of deaths."""
    violations: list[Violation] = field(default_factory=list)
    summaries: dict[str, bytes | None] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    claims: int = 0

    def landed(
        self,
        chain: Chain,
        before: bytes | None,
        after: bytes | None,
        writer: Invocation | None,
        at_ms: int,
    ) -> str | None:
        """Account for one checkpoint write; a note for the trace, if it was a claim."""
        old: dict[str, Any] = json.loads(before) if before else {}
        new: dict[str, Any] = json.loads(after) if after else {}
        self._span(chain, new)
        self._ended(chain, old, new, writer, at_ms)
        manual = writer is not None and writer.event.source == "manual"
        if manual and old and new.get("leg", 0) > old.get("leg", 0):
            # A resume (a manual start of a stopped run, or Lambda's retry of one): its new
            # leg forgives the chain's strikes and a dead owner not yet struck, by design.
            self.resumes[chain[0]] += 1
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
            if manual:
                return None  # a resume, counted above
            self.resets.append(
                f"{chain[0]} chain {chain[1]}: {writer.name if writer else '?'} reset "
                f"{old['strikes']} strikes at +{at_ms} without moving past position "
                f"{new.get('position')}"
            )
        if new_owner is None and holder is not None and holder is writer:
            del self.holders[chain]
            return f"gave back chain {chain[1]} of {chain[0]}"
        return None

    def _span(self, chain: Chain, new: dict[str, Any]) -> None:
        spans = self.spans.setdefault(chain[0], {})
        if not new:
            spans.pop(chain[1], None)
            return
        end = new.get("end", -1)
        spans[chain[1]] = Span(new.get("start", 0), new["total"] if end < 0 else end)

    def _ended(
        self,
        chain: Chain,
        old: dict[str, Any],
        new: dict[str, Any],
        writer: Invocation | None,
        at_ms: int,
    ) -> None:
        """A chain ends once: only a resume (a manual start) reopens it, and nothing turns one
        ending into another."""
        if not old or not new or old.get("status", "running") == "running":
            return
        status = new.get("status", "running")
        if crawl.reopened(old, new):
            return  # a crawl chain that ended done, woken for links sent to it
        resumed = status == "running" and writer is not None and writer.event.source == "manual"
        if resumed or (status, new.get("finished_ms")) == (old["status"], old.get("finished_ms")):
            return
        self.violations.append(
            Violation(
                "ended_twice",
                f"{chain[0]} chain {chain[1]}: {writer.name if writer else '?'} wrote it "
                f"{status} at +{at_ms} after it had ended {old['status']}",
            )
        )

    def chain_at(self, run_id: str, index: int) -> tuple[str, Span] | None:
        """The chain whose range (as last written) holds `index`."""
        for chain, span in self.spans.get(run_id, {}).items():
            if span.start <= index < span.end:
                return chain, span
        return None

    def wrote_rows(
        self, rows: tuple[str, int, int], key: str, writer: Invocation, at_ms: int
    ) -> None:
        """Rows are written only by the holder of the chain whose range holds them (before its
        CAS past them), and never past that range's end (a split may have cut it)."""
        run_id, first, last = rows
        found = self.chain_at(run_id, first)
        if found is None:
            self.violations.append(
                Violation("forks", f"{writer.name} wrote {key} at +{at_ms}: in no chain's range")
            )
            return
        chain, span = found
        holder = self.holders.get((run_id, chain))
        if holder is not writer:
            held = f"{holder.name} held chain {chain}" if holder else f"nobody held chain {chain}"
            self.violations.append(
                Violation("forks", f"{writer.name} wrote {key} at +{at_ms} while {held}")
            )
        elif last >= span.end:
            self.violations.append(
                Violation(
                    "forks",
                    f"{writer.name} wrote {key} at +{at_ms} past chain {chain}'s range "
                    f"{span.start}-{span.end - 1} (indices split off it)",
                )
            )

    def started_task(self, run_id: str, index: int, by: Invocation, at_ms: int) -> None:
        """A task starts only in the invocation holding the chain whose range holds it."""
        found = self.chain_at(run_id, index)
        holder = None if found is None else self.holders.get((run_id, found[0]))
        if holder is by:
            return
        where = "in no chain's range" if found is None else f"in chain {found[0]}'s range"
        held = f"held by {holder.name}" if holder else "held by nobody"
        self.violations.append(
            Violation(
                "forks", f"{by.name} started task {index} of {run_id} at +{at_ms}, {where}, {held}"
            )
        )

    def wrote_summary(self, key: str, body: bytes | None) -> None:
        """A run's summary, once written, never changes (a second writer writes the same)."""
        first = self.summaries.setdefault(key, body)
        if body is not None and first != body:
            self.violations.append(Violation("summary", f"{key} rewritten with other content"))

    def wrote_manifest(self, key: str, body: bytes | None) -> None:
        """A run's manifest may be written again (the sweep repairing), never differently."""
        if body is None:
            return
        first = self.manifests.setdefault(key, body)
        if first != body:
            self.violations.append(Violation("manifest", f"{key} rewritten with other content"))


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
        if world.crawl is not None:
            violations += crawl.check_run(world, store, run_id)
        else:
            violations += check_run(store, run_id)
        violations += check_manifest(store, run_id)
        violations += check_notices(world, run_id)
        if world.prefix is not None:
            found = prefix.check_run(world.s3, store, run_id, world.prefix)
            violations += [Violation(category, message) for category, message in found]
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
    return _raced(world, violations)


RACE_EFFECTS = frozenset(
    {"unfinished", "counts", "manifest", "notices_early", "summary", "completed_early"}
)


def _raced(world: World, violations: list[Violation]) -> list[Violation]:
    """A run completed while a start was resuming it (the completion read a chain's
    ending before the resume's swap, and wrote the summary after it): what follows from
    that (a summary of the ending, a chain left running, the marker the sweep watches
    gone, so the world never settles) is that known finding, not a new one."""
    if not world.raced:
        return violations
    return [
        Violation("resume_race", v.message)
        if v.category in RACE_EFFECTS
        and (
            any(run_id in v.message for run_id in world.raced)
            or v.message.startswith("the world did not settle")
        )
        else v
        for v in violations
    ]


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
    out += _tiling(record, chains)
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


def _start(record: RunRecord, cp: Checkpoint) -> int:
    """Where a chain's range begins (a layout-1 checkpoint has no `start`: the run's)."""
    return cp.start if record.version >= LAYOUT_VERSION else record.start_position


def _tiling(record: RunRecord, chains: dict[str, Checkpoint]) -> list[Violation]:
    """The chains' ranges tile the list, and every range a chain recorded as split off it
    has a checkpoint of its own."""
    out = []
    spans = [(_start(record, cp), cp.range_end, chain) for chain, cp in chains.items()]
    gap = _gap(spans, record.start_position, run_total(record, chains))
    if gap is not None:
        out.append(Violation("ranges", f"{record.run_id}: {gap}"))
    for chain, cp in chains.items():
        for split in cp.splits:
            if split["chain"] not in chains:
                out.append(
                    Violation(
                        "ranges",
                        f"{record.run_id}: chain {chain} split {split['start']}-"
                        f"{split['end'] - 1} off to {split['chain']}, which has no checkpoint",
                    )
                )
    if len(chains) > 1 and record.version < LAYOUT_VERSION:
        out.append(Violation("ranges", f"{record.run_id}: a layout-1 run with several chains"))
    return out


def check_manifest(store: RunStore, run_id: str) -> list[Violation]:
    """A finished run has one manifest.json listing results objects that hold every row."""
    summary = store.load_summary(run_id)
    manifest = store.load_manifest(run_id)
    if summary is None:
        if manifest is not None:
            return [Violation("manifest", f"{run_id} has a manifest and no summary")]
        return []
    if manifest is None:
        return [Violation("manifest", f"{run_id} finished without a manifest")]
    listed = {entry["key"] for entry in manifest["results"] + manifest["holes"]}
    stored = {key for _, _, key in store.result_keys(run_id)}
    stored |= {key for _, _, key in store.hole_keys(run_id)}
    if listed != stored:
        return [Violation("manifest", f"{run_id}'s manifest lists {len(listed)} of {len(stored)}")]
    counts = ("status", "total", "ok", "failed")
    if manifest["rows"] != summary["processed"] or any(manifest[k] != summary[k] for k in counts):
        return [Violation("manifest", f"{run_id}'s manifest counts differ from its summary")]
    return []


def check_notices(world: World, run_id: str) -> list[Violation]:
    """At least one completion notice delivered per finished run, and no notice (nor a failed
    attempt at one) before every chain ended."""
    sent = [n for n in world.notices if n.run_id == run_id]
    problems = [
        Violation("notices_early", f"{run_id} notified at +{n.at_ms} before it ended: {n.unended}")
        for n in sent
        if n.unended is not None
    ]
    store = RunStore.over(world.s3, world.bucket, world.settings.results_prefix)
    summary = store.load_summary(run_id)
    delivered = [n for n in sent if n.delivered]
    if summary is not None and not delivered:
        problems.append(Violation("unfinished", f"{run_id} finished and never notified"))
    if summary is not None:
        wrong = [n.status for n in delivered if n.status != summary["status"]]
        if wrong:
            problems.append(
                Violation(
                    "summary",
                    f"{run_id}: a notice said {wrong[0]}, the summary {summary['status']}",
                )
            )
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


def _expected(record: RunRecord, chains: dict[str, Checkpoint]) -> set[int]:
    """The indices the results must hold: the whole list when every chain is done, else each
    chain's whole range if it is done, or what is below its position and not a hole."""
    if all(cp.status == "done" for cp in chains.values()):
        return set(range(record.start_position, run_total(record, chains)))
    expected: set[int] = set()
    for cp in chains.values():
        start = _start(record, cp)
        if cp.status == "done":
            expected |= set(range(start, cp.range_end))
        else:
            expected |= set(range(start, cp.position)) - set(cp.holes)
    return expected


def run_total(record: RunRecord, chains: dict[str, Checkpoint]) -> int:
    """The run's task count: run.json's, or for a prefix run (whose run.json says 0) what its
    lister listed (`worker.listing.total_listed`)."""
    listed = total_listed(list(chains.values()))
    return record.total if listed is None else listed


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
    chains: dict[str, Checkpoint],
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
                f"{run_id}: the checkpoints count ok={cp_ok} failed={cp_failed}, "
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
    if summary.get("ranges", 1) != len(chains):
        out.append(
            Violation(
                "counts",
                f"{run_id}: the summary counts {summary.get('ranges')} ranges, "
                f"the run has {len(chains)} chains",
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


def _read_back_failed(invocation: Invocation, chain: Chain, prefix: str) -> bool:
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
    """Too many deaths by one killer task in one run (a round of `max_task_attempts + 1` per
    resume, which forgives strikes); when strikes were forgotten by an empty commit in this
    world, that explains it (`strike_reset`, a finding in the runtime)."""
    rounds = world.settings.max_task_attempts + 1
    resets = world.ledger.resets
    category = "strike_reset" if resets else "killer_deaths"
    why = f"; {resets[0]}" if resets else ""
    out = []
    for (run_id, reason), deaths in sorted(world.killer_deaths.items()):
        limit = rounds * (1 + world.ledger.resumes[run_id])
        if deaths > limit:
            out.append(
                Violation(
                    category,
                    f"{run_id}: {reason}: {deaths} times (at most {limit} expected){why}",
                )
            )
    return out


def _invocations(world: World) -> list[Violation]:
    return [
        Violation("livelock", f"{inv.name}: {inv.detail}")
        for inv in world.lam.invocations
        if SPINNING in inv.detail
    ]
