"""What a chaos session found: a line per run, and the one summary line `make chaos` ends with.

    chaos: runs=R tasks=T faults=F (s3_500=.. ... defer=..) lost=0 duplicated=0 forks=0 unfinished=0

Its format is a contract (README, the chaos tests print it): the counts per kind
follow `faults.FAULTS`, and every other field keeps its name and place.
"""

from __future__ import annotations

from dataclasses import dataclass

from devstack.chaos.faults import FAULTS
from devstack.chaos.oracle import RunCheck

__all__ = ["ChaosReport"]


@dataclass
class ChaosReport:
    checks: list[RunCheck]
    faults: dict[str, int]
    """Faults that happened, by kind."""
    enabled: list[str]
    """Kinds switched on: each should have happened at least once."""
    elapsed_s: float = 0.0

    @property
    def tasks(self) -> int:
        return sum(check.source.total for check in self.checks)

    @property
    def lost(self) -> int:
        return sum(check.lost for check in self.checks)

    @property
    def duplicated(self) -> int:
        return sum(check.duplicated for check in self.checks)

    @property
    def forks(self) -> int:
        return sum(check.forks for check in self.checks)

    @property
    def unfinished(self) -> int:
        return sum(not check.finished for check in self.checks)

    @property
    def missing_faults(self) -> list[str]:
        """Enabled kinds of fault that never actually happened."""
        return [kind for kind in self.enabled if self.faults.get(kind, 0) == 0]

    @property
    def ok(self) -> bool:
        clean = (self.lost, self.duplicated, self.forks, self.unfinished) == (0, 0, 0, 0)
        return clean and not any(check.problems for check in self.checks)

    def lines(self) -> list[str]:
        """One line per run, a note on faults that never happened, and the summary line."""
        lines = [check.line() for check in self.checks]
        if self.missing_faults:
            lines.append(f"note: enabled faults that never happened: {self.missing_faults}")
        return [*lines, self.line()]

    def line(self) -> str:
        kinds = " ".join(f"{kind.name}={self.faults.get(kind.name, 0)}" for kind in FAULTS)
        return (
            f"chaos: runs={len(self.checks)} tasks={self.tasks} "
            f"faults={sum(self.faults.values())} ({kinds}) lost={self.lost} "
            f"duplicated={self.duplicated} forks={self.forks} unfinished={self.unfinished}"
        )
