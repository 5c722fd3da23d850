"""A run's checkpoint: its status, and every rule for moving it on, in one place.

The checkpoint is the one object a leg must win a compare-and-swap on before it
acts. This module says what each move writes (claim, advance, hand off, finish,
release, resume, sweep) and what the predicates mean (lease live, stalled,
live), so the leg, the start, the sweep and the CLI all read one state machine:

    running --claim--> running(owned) --advance--> ... --hand off--> running(unowned)
       ^                   |  release (unexpected error)                 |
       |                   +--> finish: done | failed | cancelled | superseded
       +---- resume (cancelled, failed, superseded, or stalled) ---------+
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"

    @property
    def terminal(self) -> bool:
        return self is not RunStatus.RUNNING


TERMINAL = frozenset(s for s in RunStatus if s.terminal)


class ClaimRefused(Exception):
    """This leg may not act on the run; `exit` names the quiet way out."""

    def __init__(self, exit: str, reason: str) -> None:
        super().__init__(reason)
        self.exit = exit
        self.reason = reason


Plan = Callable[[int, int], int]
"""`plan(position, careful_until)`: where the next batch ends, written before it starts."""


@dataclass(frozen=True)
class Checkpoint:
    """Where a run is. Only the leg that wins a CAS on it may act on the run."""

    run_id: str
    total: int
    """Tasks in the run (all chains)."""
    position: int
    leg: int = 0
    chain: str = "0000"
    start: int = 0
    """Where this chain's range began (informative: its position started there)."""
    end: int = -1
    """End (exclusive) of this chain's range; -1 for a run of one chain: its total."""
    splits: list[dict[str, Any]] = field(default_factory=list)
    """Ranges stolen from this chain: {"chain", "start", "end"}, so a thief that died before
    creating its range's checkpoint cannot lose it (whoever sees the split creates it)."""
    status: RunStatus = RunStatus.RUNNING
    ok: int = 0
    failed: int = 0
    owner: str | None = None
    lease_until_ms: int = 0
    """The owner's deadline plus slack: past it, the owner is certainly dead."""
    handed_off_ms: int = 0
    heartbeat_ms: int = 0
    strikes: int = 0
    """Owners that died at this position; past a threshold the task is skipped."""
    careful_until: int = 0
    """Below this position batches run one task at a time, to find a killer task."""
    batch_end: int = 0
    """The plan: the owner starts no task at or past it before its next CAS. It bounds a
    dead owner's suspect range, and a steal never splits below it."""
    holes: list[int] = field(default_factory=list)
    """Indices below `position` whose tasks did not finish in their leg: worked first next."""
    level: int = 0
    """The concurrency the last leg ended at, so a cold container starts there."""
    sweeps: int = 0
    crashes: int = 0
    """Legs in a row that raised an unexpected (non-transient) error at this position."""
    failure_kinds: dict[str, int] = field(default_factory=dict)
    failure_samples: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    started_ms: int = 0
    finished_ms: int = 0
    leg_ms_total: int = 0
    task_ms_total: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    """What the legs that wrote this checkpoint used (`worker.usage.Usage`, and `at_ms`, the
    last owner's write): each write adds its own, once. A 0.1 checkpoint has none: zero."""
    listing: dict[str, Any] | None = None
    """The lister of a prefix run (chain 0000) only: `after` (the last key listed), `listed`,
    `done`, `pending` (segments whose work chain may not exist yet), `segments`, `pages`."""
    segment: dict[str, Any] | None = None
    """A prefix run's work chain: the segment its tasks are read from (`key`, `etag`,
    `first`, `count`); ranges stolen from it keep it."""
    frontier: dict[str, Any] | None = None
    """A crawl chain (its log is `[start, end)`, growing): `seeded`, `pauses` (seconds each
    host must still wait, carried to the next leg), `depth` (the deepest page in the log),
    `held` (`[key, first, last]` of results objects whose rows' links wait for a hole),
    and counts of the rows by `depths`, `statuses` and `hosts` (the top ones)."""

    # predicates
    @property
    def finished(self) -> bool:
        return self.status.terminal

    @property
    def range_end(self) -> int:
        return self.total if self.end < 0 else self.end

    @property
    def exhausted(self) -> bool:
        """Every task of the range has a row: nothing left at or past the position, no holes."""
        return self.position >= self.range_end and not self.holes

    @property
    def steal_line(self) -> int:
        """No steal splits below this: the plan (the owner may be working anything under it)
        and a dead leg's careful range (its suspect tasks stay with the chain that counts
        their strikes, or a killer among them would kill again in a fresh chain)."""
        return max(self.position, self.batch_end, self.careful_until)

    @property
    def stealable(self) -> int:
        """Tasks past the steal line that a thief could take half of."""
        return max(0, self.range_end - self.steal_line)

    def split(self, thief_chain: str, at: int) -> Checkpoint:
        """Give [at, end) to `thief_chain`; `at` is never below the steal line."""
        assert self.steal_line <= at < self.range_end, (at, self)
        record = {"chain": thief_chain, "start": at, "end": self.range_end}
        return replace(self, end=at, splits=[*self.splits, record])

    @property
    def careful(self) -> bool:
        """An owner died here: work one task at a time until past its suspect range."""
        return self.position < self.careful_until or (self.strikes > 0 and bool(self.holes))

    @property
    def next_careful(self) -> int:
        """The task careful work does next (holes first), and a killer skip skips."""
        return self.holes[0] if self.holes else self.position

    def lease_live(self, at_ms: int) -> bool:
        return self.owner is not None and at_ms < self.lease_until_ms

    def handoff_pending(self, at_ms: int, stall_after_ms: int) -> bool:
        """A leg was handed off recently and may still be on its way."""
        return self.owner is None and at_ms - max(self.handed_off_ms, self.heartbeat_ms) < (
            stall_after_ms
        )

    def stalled(self, at_ms: int, stall_after_ms: int) -> bool:
        """Running, yet nothing will move it on unless the sweep does: a hand-off nobody
        claimed for `stall_after_ms`, or an owner whose lease ran out (it is dead)."""
        if self.finished:
            return False
        if self.owner is None:
            return not self.handoff_pending(at_ms, stall_after_ms)
        return at_ms > self.lease_until_ms

    def live(self, at_ms: int, stall_after_ms: int) -> bool:
        """Someone is working the run, or is about to: a resume now would fork it."""
        return not self.finished and not self.stalled(at_ms, stall_after_ms)

    # moves
    def claim(
        self, *, leg: int, owner: str, at_ms: int, lease_until_ms: int, plan: Plan
    ) -> Checkpoint:
        """Take the run for leg `leg`; ClaimRefused unless this leg is the one to go on.

        A previous owner whose lease ran out died holding the run, working the
        batch it planned: count a strike and go one task at a time over all of it.
        One that gave the run back may have written results anywhere in its plan (an
        orphan this leg adopts): the new plan never ends below it, or a steal could
        split inside that orphan and the index would be worked twice.
        """
        if self.finished:
            raise ClaimRefused("already_finished", f"run is {self.status}")
        if self.leg != leg:
            raise ClaimRefused("stale", f"payload is leg {leg}, checkpoint is at leg {self.leg}")
        if self.lease_live(at_ms) and self.owner != owner:
            raise ClaimRefused("duplicate", f"leg {self.leg} is owned by {self.owner}")
        strikes, careful_until = self.strikes, self.careful_until
        if self.owner is not None:
            strikes += 1
            careful_until = max(careful_until, self.batch_end, self.position + 1)
        return replace(
            self,
            owner=owner,
            lease_until_ms=lease_until_ms,
            heartbeat_ms=at_ms,
            strikes=strikes,
            careful_until=careful_until,
            started_ms=self.started_ms or at_ms,
            batch_end=max(self.batch_end, plan(self.position, careful_until))
            if careful_until <= self.position
            else plan(self.position, careful_until),
        )

    def advance(
        self,
        end: int,
        *,
        holes: list[int],
        level: int,
        ok: int,
        failed: int,
        failure_kinds: dict[str, int],
        failure_samples: list[dict[str, Any]],
        task_ms: int,
        at_ms: int,
        plan_end: int,
    ) -> Checkpoint:
        """Move past rows whose results are written; `plan_end` is the new plan.

        Strikes and crashes are forgiven only by progress: a commit that wrote no row
        (a careful leg out of time before its task) must not forget a dead leg's strike.
        """
        progressed = ok + failed > 0 or end > self.position
        return replace(
            self,
            position=end,
            holes=holes,
            level=level,
            ok=self.ok + ok,
            failed=self.failed + failed,
            strikes=0 if progressed else self.strikes,
            crashes=0 if progressed else self.crashes,
            heartbeat_ms=at_ms,
            batch_end=plan_end,
            task_ms_total=self.task_ms_total + task_ms,
            failure_kinds=failure_kinds,
            failure_samples=failure_samples,
        )

    def hand_off(self, *, at_ms: int, leg_ms: int) -> Checkpoint:
        """Give the run to the next leg; its invoke follows this write."""
        return replace(
            self,
            leg=self.leg + 1,
            owner=None,
            lease_until_ms=0,
            handed_off_ms=at_ms,
            heartbeat_ms=at_ms,
            leg_ms_total=self.leg_ms_total + leg_ms,
        )

    def finish(
        self, status: RunStatus, *, at_ms: int, reason: str | None, leg_ms: int
    ) -> Checkpoint:
        assert status.terminal, status
        return replace(
            self,
            status=status,
            owner=None,
            lease_until_ms=0,
            finished_ms=at_ms,
            heartbeat_ms=at_ms,
            reason=reason,
            leg_ms_total=self.leg_ms_total + leg_ms,
        )

    def release(self, *, crashed: bool) -> Checkpoint:
        """Give the run back after an unexpected error, so a retry can claim it at once."""
        return replace(
            self, owner=None, lease_until_ms=0, crashes=self.crashes + 1 if crashed else 0
        )

    def resume(self, *, at_ms: int) -> Checkpoint:
        """Running again, as the next leg, unowned and just handed off."""
        return replace(
            self,
            status=RunStatus.RUNNING,
            leg=self.leg + 1,
            owner=None,
            lease_until_ms=0,
            reason=None,
            finished_ms=0,
            strikes=0,
            crashes=0,
            handed_off_ms=at_ms,
        )

    def swept(self, *, at_ms: int) -> Checkpoint:
        """The sweep re-sends this leg: counted, and handed off anew so no second sweep does."""
        return replace(self, sweeps=self.sweeps + 1, handed_off_ms=at_ms)

    def evolve(self, **changes: Any) -> Checkpoint:
        return replace(self, **changes)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["status"] = RunStatus(values.get("status", RunStatus.RUNNING))
        return cls(**values)


def written_under_steals(written: Checkpoint, current: Checkpoint) -> bool:
    """Whether `current` is `written` with only steals landed on it since: a write whose
    answer was lost did land. Only thieves change just `end` and `splits`, and every write
    of ours is unique (its owner, usage counts and millisecond times)."""
    return redo_after_split(written, current, written) is not None


def redo_after_split(
    held: Checkpoint, current: Checkpoint, intended: Checkpoint
) -> Checkpoint | None:
    """The owner's `intended` write, redone on top of steals that landed since `held`.

    A thief's CAS changes only `end` and `splits` (and never cuts below the plan),
    so if that is all that changed, the owner carries on with its shorter range;
    anything else means it lost the checkpoint (None).
    """
    if replace(current, end=held.end, splits=held.splits) != held:
        return None
    return replace(
        intended,
        end=current.end,
        splits=current.splits,
        batch_end=min(intended.batch_end, current.range_end),
    )
