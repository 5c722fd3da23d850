"""What a person watching a run sees: one line of progress, and the closing summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.state import TERMINAL, Checkpoint, RunRecord, now_ms

BAR_WIDTH = 30


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
        end = cp.finished_ms if cp.status in TERMINAL and cp.finished_ms else self.at_ms
        return max(0.0, (end - (cp.started_ms or self.record.created_ms)) / 1000)

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if self.checkpoint.status in TERMINAL or self.rate <= 0:
            return None
        return (self.checkpoint.total - self.checkpoint.position) / self.rate

    def as_dict(self) -> dict[str, Any]:
        cp = self.checkpoint
        return {
            "run_id": cp.run_id,
            "status": cp.status,
            "reason": cp.reason,
            "source": f"s3://{self.record.bucket}/{self.record.key}",
            "leg": cp.leg,
            "position": cp.position,
            "total": cp.total,
            "ok": cp.ok,
            "failed": cp.failed,
            "rate_per_s": round(self.rate, 2),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "elapsed_s": round(self.elapsed_s, 1),
            "sweeps": cp.sweeps,
        }


def view(record: RunRecord, checkpoint: Checkpoint, at_ms: int | None = None) -> RunView:
    return RunView(record, checkpoint, now_ms() if at_ms is None else at_ms)


def progress_line(v: RunView) -> str:
    cp = v.checkpoint
    share = v.done / v.todo if v.todo else 1.0
    filled = round(share * BAR_WIDTH)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    eta = "" if v.eta_s is None else f"  ETA {_duration(v.eta_s)}"
    return (
        f"{cp.run_id}  {cp.status:<10} leg {cp.leg:<3} [{bar}] "
        f"{cp.position}/{cp.total} {share:4.0%}  {v.rate:6.1f} tasks/s  "
        f"failed {cp.failed}{eta}"
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
