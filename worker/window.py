"""The rolling window: what a leg has finished, and what it may commit, index by index.

Tasks flow without a batch barrier: a slow task holds back only the commit of
the rows after it, never the start of the next tasks. A commit writes the
contiguous prefix of finished rows `[position, k)` as one results object; at the
end of a leg, every finished row goes in, and the indices in between that did
not finish (deferred, or never started) become holes, a short list in the
checkpoint that the next leg works first. Each index lands in exactly one
results object either way: a hole's row goes in an object of holes, never in
the object whose range spans it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_HOLES = 1_000
"""Holes a checkpoint may carry; a final commit stops short rather than make more."""

Row = dict[str, Any]


@dataclass(frozen=True)
class Commit:
    """One commit's writes: the range object, the holes object, and the new checkpoint facts."""

    start: int
    """First index of the range object (the old position)."""
    end: int
    """The new position: the range object covers [start, end)."""
    rows: list[Row]
    hole_rows: list[Row]
    """Rows of holes of earlier legs, written as their own object."""
    holes: list[int]
    """Every hole after this commit, ascending."""

    @property
    def empty(self) -> bool:
        return self.end == self.start and not self.hole_rows


@dataclass
class Window:
    position: int
    holes: list[int] = field(default_factory=list)
    _rows: dict[int, Row] = field(default_factory=dict)

    def finished(self, index: int, row: Row) -> None:
        self._rows[index] = row

    @property
    def buffered(self) -> int:
        return len(self._rows)

    def commit(self) -> Commit:
        """The contiguous prefix of finished rows, and any finished holes."""
        end = self.position
        while end in self._rows:
            end += 1
        return self._take(end, self.holes)

    def commit_all(self, upto: int) -> Commit:
        """Everything finished below `upto`: unfinished indices in between become holes.

        Used when the leg stops. If that would leave more than MAX_HOLES holes,
        the range ends at the last finished row before the hole that would overflow.
        """
        finished = [i for i in self._rows if self.position <= i < upto]
        end = max(finished) + 1 if finished else self.position
        old = [h for h in self.holes if h not in self._rows]
        room = MAX_HOLES - len(old)
        missing = [i for i in range(self.position, end) if i not in self._rows]
        if len(missing) > room:
            end = missing[max(room, 0)]
            missing = missing[: max(room, 0)]
        return self._take(end, [*old, *missing])

    def _take(self, end: int, holes: list[int]) -> Commit:
        rows = [self._rows.pop(i) for i in range(self.position, end) if i in self._rows]
        hole_rows = [self._rows.pop(h) for h in self.holes if h in self._rows]
        done_holes = {row["index"] for row in hole_rows}
        commit = Commit(
            start=self.position,
            end=end,
            rows=rows,
            hole_rows=hole_rows,
            holes=sorted(h for h in holes if h not in done_holes),
        )
        self.position = end
        self.holes = commit.holes
        return commit

    def adopt_range(self, start: int, end: int, rows: list[Row]) -> None:
        """Take a range object at the position, written by a leg that died before its CAS:
        move past its range; the indices it lacks become holes."""
        assert start == self.position, (start, self.position)
        present = {row["index"] for row in rows}
        missing = (i for i in range(start, end + 1) if i not in present)
        self.holes = sorted([*self.holes, *missing])
        self.position = end + 1

    def adopt_holes(self, rows: list[Row]) -> None:
        """Take an object of holes written by a leg that died before its CAS."""
        present = {row["index"] for row in rows}
        self.holes = [h for h in self.holes if h not in present]
