"""What a person watching a run sees: one line of progress, and the closing summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from worker.checkpoint import Checkpoint
from worker.clock import SYSTEM_CLOCK
from worker.store import RunRecord

EXIT_OK = 0
EXIT_CODES = {"failed_tasks": 3, "failed": 4, "cancelled": 5, "superseded": 6, "unfinished": 7}
"""What a followed run means for the shell; 1 and 2 are the CLI's own (AWS, usage)."""
BAR_WIDTH = 30
DEFAULT_STALL_AFTER_MS = 120_000
"""The function's default `BATON_STALL_AFTER_MS`, for runs whose record predates it."""


@dataclass(frozen=True)
class RunView:
    record: RunRecord
    checkpoint: Checkpoint
    at_ms: int

    @property
    def done(self) -> int:
        return self.checkpoint.position - self.record.start_position

    @property
    def todo(self) -> int:
        return self.checkpoint.total - self.record.start_position

    @property
    def elapsed_s(self) -> float:
        cp = self.checkpoint
        end = cp.finished_ms if cp.finished and cp.finished_ms else self.at_ms
        return max(0.0, (end - (cp.started_ms or self.record.created_ms)) / 1000)

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def stalled(self) -> bool:
        """Nothing will move the run on until the sweep (or a resume) does."""
        stall_after = int(self.record.config.get("stall_after_ms", DEFAULT_STALL_AFTER_MS))
        return self.checkpoint.stalled(self.at_ms, stall_after)

    @property
    def idle_s(self) -> float:
        cp = self.checkpoint
        return max(0.0, (self.at_ms - max(cp.heartbeat_ms, cp.handed_off_ms)) / 1000)

    @property
    def state(self) -> str:
        return "stalled" if self.stalled else self.checkpoint.status

    @property
    def eta_s(self) -> float | None:
        if self.checkpoint.finished or self.stalled or self.rate <= 0:
            return None
        return (self.checkpoint.total - self.checkpoint.position) / self.rate

    def as_dict(self) -> dict[str, Any]:
        cp = self.checkpoint
        return {
            "run_id": cp.run_id,
            "status": cp.status,
            "stalled": self.stalled,
            "reason": cp.reason,
            "source": f"s3://{self.record.bucket}/{self.record.key}",
            "leg": cp.leg,
            "position": cp.position,
            "total": cp.total,
            "ok": cp.ok,
            "failed": cp.failed,
            "rate_per_s": round(self.rate, 2),
            "concurrency": cp.level or None,
            "holes": len(cp.holes),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "elapsed_s": round(self.elapsed_s, 1),
            "sweeps": cp.sweeps,
        }


def view(record: RunRecord, checkpoint: Checkpoint, at_ms: int | None = None) -> RunView:
    return RunView(record, checkpoint, SYSTEM_CLOCK.now_ms() if at_ms is None else at_ms)


def progress_line(v: RunView) -> str:
    cp = v.checkpoint
    share = v.done / v.todo if v.todo else 1.0
    filled = round(share * BAR_WIDTH)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    if v.stalled:
        tail = f"  no progress for {duration(v.idle_s)}: the sweep resumes it"
    else:
        tail = "" if v.eta_s is None else f"  ETA {duration(v.eta_s)}"
    level = f"  x{cp.level}" if cp.level and not cp.finished else ""
    return (
        f"{cp.run_id}  {v.state:<10} leg {cp.leg:<3} [{bar}] "
        f"{cp.position}/{cp.total} {share:4.0%}  {v.rate:6.1f} tasks/s{level}  "
        f"failed {cp.failed}{tail}"
    )


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """A finished run for a person: outcome, failures by kind, legs and time, where results are."""
    kinds = Counter(summary.get("failure_kinds") or {})
    failures = ", ".join(f"{kind} x{count}" for kind, count in kinds.most_common(5))
    reason = f" ({summary['reason']})" if summary.get("reason") else ""
    lines = [
        f"{summary.get('status', '?')}{reason}: {summary.get('processed', 0)} tasks, "
        f"{summary.get('ok', 0)} ok, {summary.get('failed', 0)} failed"
        f"{' (' + failures + ')' if failures else ''}",
        f"legs {summary.get('legs')}, {summary.get('duration_s')} s, "
        f"time on tasks {100 * (summary.get('task_time_share') or 0):.0f}% of leg time",
    ]
    if "blocked" in kinds:
        lines.append(
            f"{kinds['blocked']} tasks were refused by the address guard: allow private "
            "targets with BATON_ALLOW_NETS on the function (or --allow-loopback for baton local)"
        )
    lines.append(f"results: {summary.get('results')}")
    return lines


def exit_code(status: str, failed_tasks: int) -> int:
    """The one rule: 0 only for a run that is done with no failed task."""
    if status == "done":
        return EXIT_CODES["failed_tasks"] if failed_tasks else EXIT_OK
    return EXIT_CODES.get(status, EXIT_CODES["unfinished"])


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
