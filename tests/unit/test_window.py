"""The rolling window: contiguous commits while the leg runs, holes only when it stops."""

from __future__ import annotations

from typing import Any

from worker.window import MAX_HOLES, Window


def row(index: int) -> dict[str, Any]:
    return {"index": index, "error": None}


def test_window_commits_only_the_contiguous_prefix_while_running() -> None:
    window = Window(10)
    for index in (10, 11, 13, 14):
        window.finished(index, row(index))
    commit = window.commit()
    assert (commit.start, commit.end, [r["index"] for r in commit.rows]) == (10, 12, [10, 11])
    assert commit.holes == []
    assert window.buffered == 2  # 13 and 14 wait for 12


def test_window_final_commit_keeps_finished_rows_and_makes_holes_of_the_rest() -> None:
    window = Window(10)
    for index in (10, 11, 13, 14):
        window.finished(index, row(index))
    commit = window.commit_all(upto=20)
    assert (commit.start, commit.end) == (10, 15)
    assert [r["index"] for r in commit.rows] == [10, 11, 13, 14]
    assert commit.holes == [12]
    assert window.position == 15


def test_window_holes_are_committed_in_their_own_rows_not_in_the_range() -> None:
    window = Window(20, holes=[12, 17])
    window.finished(17, row(17))
    window.finished(20, row(20))
    commit = window.commit()
    assert [r["index"] for r in commit.rows] == [20]
    assert [r["index"] for r in commit.hole_rows] == [17]
    assert commit.holes == [12]


def test_window_final_commit_stops_short_rather_than_exceed_the_hole_cap() -> None:
    window = Window(0, holes=list(range(-MAX_HOLES + 2, 0)))  # room for two more holes
    for index in (0, 2, 4, 6):
        window.finished(index, row(index))
    commit = window.commit_all(upto=10)
    assert (commit.end, commit.holes[-2:]) == (5, [1, 3])
    assert len(commit.holes) == MAX_HOLES
    assert [r["index"] for r in commit.rows] == [0, 2, 4]


def test_window_adopting_an_orphan_at_the_position_moves_past_it_with_its_gaps_as_holes() -> None:
    window = Window(10, holes=[3])
    window.adopt_range(10, 14, [row(10), row(11), row(14)])
    assert (window.position, window.holes) == (15, [3, 12, 13])


def test_window_adopting_an_orphan_of_holes_closes_those_holes() -> None:
    window = Window(10, holes=[3, 5, 8])
    window.adopt_holes([row(3), row(5)])
    assert (window.position, window.holes) == (10, [8])
