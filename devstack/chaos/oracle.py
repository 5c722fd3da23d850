"""Judge a chaos run from S3 and the containers' log lines alone, never the worker's answers.

For the run of one upload: every task index in the results exactly once
(nothing lost, nothing duplicated or stray), no leg number carried on twice and
one end only (no fork), the planted killer tasks recorded failed after their
strikes and no other task skipped as one, and a summary that agrees with the
final checkpoint. Skips are read from the legs' structured `task_skipped`
events, not parsed out of a row's error text.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.lambda_runtime import log_record
from worker.checkpoint import TERMINAL, Checkpoint
from worker.exceptions import RunNotFoundError, TransientError
from worker.listing import total_listed
from worker.store import RunStore
from worker.summary import run_status

__all__ = ["CHAIN_EXITS", "EventLog", "Oracle", "RunCheck", "Source"]

CHAIN_EXITS = frozenset(
    {"handed_off", "handoff_failed", "done", "failed", "cancelled", "superseded"}
)
"""Leg exits that carry the chain on (or end it): at most one per leg number of a run."""
LEG = "leg"
TASK_SKIPPED = "task_skipped"
"""A leg skipped a task that killed it `strikes` times (`Leg.skip_killer_task`)."""


@dataclass(frozen=True)
class Source:
    """One uploaded task list (or prefix spec), and what the harness planted in it."""

    tag: str
    key: str
    etag: str
    total: int
    """Its tasks (of a prefix spec: the objects the run must list)."""
    killers: frozenset[int] = frozenset()
    healthy: bool = True
    """Every task but the killers must succeed (False for lists with bad entries)."""


@dataclass
class RunCheck:
    """What S3 and the logs say about one run, checked against the invariants."""

    source: Source
    run_id: str | None
    status: str
    position: int = 0
    legs: int = 0
    lost: int = 0
    duplicated: int = 0
    forks: int = 0
    killers_skipped: int = 0
    false_kills: int = 0
    summary_ok: bool = False
    """summary.json exists and agrees with the final checkpoint."""
    problems: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status == "done" and self.summary_ok

    def line(self) -> str:
        state = "ok" if not self.problems else "; ".join(self.problems)
        return (
            f"run {self.source.tag} {self.run_id}: {self.status} at {self.position}/"
            f"{self.source.total} in {self.legs} legs, killers skipped "
            f"{self.killers_skipped}/{len(self.source.killers)}: {state}"
        )


@dataclass
class EventLog:
    """Follows the containers' log file and keeps the structured lines of some events.

    A line is `[container] {json}`, as `devstack.demo.LegLog` reads it.
    """

    path: Path
    names: frozenset[str]
    offset: int = 0
    lines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every `name` line so far, oldest first."""
        self.poll()
        return list(self.lines.get(name, ()))

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data.rfind(b"\n") + 1
        self.offset += complete
        for raw in data[:complete].decode("utf-8", "replace").splitlines():
            _, line = log_record(raw)
            if line is not None and line.get("event") in self.names:
                self.lines.setdefault(line["event"], []).append(line)


class Oracle:
    """Checks runs through a fault-free S3 client and the containers' log file."""

    def __init__(self, store: RunStore, log_path: Path, max_task_attempts: int) -> None:
        self.store = store
        self.log = EventLog(log_path, frozenset({LEG, TASK_SKIPPED}))
        self.max_task_attempts = max_task_attempts
        """Strikes a killer takes before its leg skips it."""

    def check(self, source: Source) -> RunCheck:
        """Every invariant, from S3 and the legs' log lines, for the run of one upload."""
        runs = self.store.runs_for_source(source.key, source.etag)
        if not runs:
            return RunCheck(source, None, "never started", problems=["no run started"])
        run_id = runs[0]
        try:
            chains = self.store.load_chains(run_id)
        except (RunNotFoundError, TransientError):
            chains = []
        if not chains:
            return RunCheck(source, run_id, "no checkpoint", problems=["run has no checkpoint"])
        summary = self.store.load_summary(run_id)
        status = str(summary["status"]) if summary else str(run_status(chains)[0])
        done = sum(cp.ok + cp.failed for cp in chains)
        check = RunCheck(source, run_id, status, done, sum(cp.leg + 1 for cp in chains))
        if len(runs) > 1:
            check.forks += len(runs) - 1
            check.problems.append(f"one upload started {len(runs)} runs: {runs}")
        self._check_results(check, run_id, chains)
        wakeable = self.store.load_run(run_id).crawl is not None and len(chains) > 1
        self._check_legs(check, run_id, wakeable=wakeable)
        self._check_summary(check, chains, summary)
        return check

    def rows(self, run_id: str) -> list[dict[str, Any]]:
        """Every row, range objects and objects of holes alike."""
        return list(self.store.rows(run_id))

    def leg_lines(self) -> list[dict[str, Any]]:
        return self.log.events(LEG)

    def skipped(self, run_id: str) -> dict[int, int]:
        """Task index -> the most strikes any leg of the run skipped it after."""
        strikes: dict[int, int] = {}
        for event in self.log.events(TASK_SKIPPED):
            if event.get("run_id") == run_id:
                index = int(event["index"])
                strikes[index] = max(strikes.get(index, 0), int(event["strikes"]))
        return strikes

    def checkpoint_or_none(self, run_id: str) -> Checkpoint | None:
        try:
            return self.store.load_checkpoint(run_id).checkpoint
        except (RunNotFoundError, TransientError):  # not created yet
            return None

    def _check_results(self, check: RunCheck, run_id: str, chains: list[Checkpoint]) -> None:
        ranges = [(s, e) for s, e, _ in self.store.result_keys(run_id)]
        ranges.sort()
        for (_, end), (nxt, nxt_end) in itertools.pairwise(ranges):
            if nxt <= end:
                check.forks += 1
                check.problems.append(f"results overlap: ..{end} and {nxt}..{nxt_end}")
        skipped = self.skipped(run_id)
        counts: Counter[int] = Counter()
        for row in self.rows(run_id):
            index = int(row["index"])
            counts[index] += 1
            error = row.get("error")
            strikes = skipped.get(index)
            if index in check.source.killers:
                if strikes is not None and strikes >= self.max_task_attempts and error is not None:
                    check.killers_skipped += 1
                else:
                    check.problems.append(
                        f"killer task {index} ended {error!r} (skipped after {strikes} strikes)"
                    )
            elif strikes is not None:
                check.false_kills += 1
                check.problems.append(f"task {index} was skipped as a killer")
            elif error is not None and check.source.healthy:
                check.problems.append(f"task {index} failed: {error}")
        expected = {i for cp in chains for i in range(cp.start, cp.position) if i not in cp.holes}
        check.lost = sum(1 for i in expected if counts[i] == 0)
        listed = total_listed(chains)  # a prefix run: run.json's total is 0
        if listed is not None and listed != check.source.total:
            check.lost += max(0, check.source.total - listed)
            check.problems.append(f"listed {listed} of {check.source.total} objects")
        check.duplicated = sum(n - 1 for n in counts.values() if n > 1)
        stray = sum(n for i, n in counts.items() if i not in expected)
        check.duplicated += stray
        if check.lost:
            check.problems.append(f"{check.lost} tasks lost")
        if check.duplicated:
            check.problems.append(f"{check.duplicated} duplicate or stray results")

    def _check_legs(self, check: RunCheck, run_id: str, *, wakeable: bool = False) -> None:
        """Each (chain, leg) carries its chain on at most once, and each chain ends once:
        a crawl's chain over several may end again after links woke it, so there each
        (chain, leg) ends at most once (a woken chain goes on at the next leg)."""
        carried: Counter[tuple[str, int]] = Counter()
        ends: Counter[str | tuple[str, int]] = Counter()
        for leg in self.leg_lines():
            if leg.get("run_id") != run_id or leg.get("exit") not in CHAIN_EXITS:
                continue
            chain = str(leg.get("chain", "0000"))
            carried[chain, int(leg["leg"])] += 1
            ended = leg["exit"] not in ("handed_off", "handoff_failed")
            ends[(chain, int(leg["leg"])) if wakeable else chain] += ended
        forked = {key: n for key, n in carried.items() if n > 1}
        if forked:
            check.forks += sum(n - 1 for n in forked.values())
            check.problems.append(f"legs carried on more than once: {forked}")
        ended_twice = {chain: n for chain, n in ends.items() if n > 1}
        if ended_twice:
            check.forks += sum(n - 1 for n in ended_twice.values())
            check.problems.append(f"chains ended more than once: {ended_twice}")

    def _check_summary(
        self, check: RunCheck, chains: list[Checkpoint], summary: dict[str, Any] | None
    ) -> None:
        unfinished = [cp for cp in chains if cp.status not in TERMINAL]
        if unfinished:
            cp = unfinished[0]
            check.problems.append(
                f"chain {cp.chain} still {cp.status} at {cp.position}/{cp.range_end}"
            )
            return
        if summary is None:
            check.problems.append(f"summary.json missing for a {check.status} run")
            return
        processed = sum(cp.ok + cp.failed for cp in chains)
        if summary["status"] != run_status(chains)[0] or (
            summary["ok"] + summary["failed"] != processed
        ):
            check.problems.append(
                f"summary disagrees with the checkpoints: {summary['status']} "
                f"{summary['ok']}+{summary['failed']} vs {run_status(chains)[0]} {processed}"
            )
            return
        check.summary_ok = True
