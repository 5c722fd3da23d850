"""The sweep tick: lost chains are resumed through the same CAS; live ones are left alone."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import put_tasks
from tests.unit.harness import Harness, settings

URLS = [f"https://example.com/{i}" for i in range(23)]


@pytest.fixture
def h(s3: Any, bucket: str) -> Harness:
    return Harness(s3, bucket, settings(bucket=bucket, stall_after_ms=0), timeout_ms=1_600)


def lose_handoff(h: Harness) -> dict[str, Any]:
    etag = put_tasks(h.s3, h.bucket, "tasks/list.json", URLS)
    h.begin(h.upload_event("tasks/list.json", etag))
    return h.invoker.pop()  # the hand-off never arrives


def test_sweep_resumes_a_chain_whose_handoff_was_lost(h: Harness) -> None:
    lost = lose_handoff(h)
    answer = h.invoke({"action": "sweep"})["results"][0]
    assert answer["resumed"] == [lost["run_id"]]
    resent = h.invoker.pop()
    assert resent == lost
    answers = h.drive(resent)
    assert answers[-1]["results"][0]["exit"] == "done"
    assert sorted(h.result_indices(lost["run_id"])) == list(range(23))
    assert h.summary(lost["run_id"])["sweeps"] == 1


def test_sweep_and_a_late_original_never_both_continue(h: Harness) -> None:
    lost = lose_handoff(h)
    h.invoke({"action": "sweep"})
    resent = h.invoker.pop()
    h.timeout_ms = 60_000
    winner = h.invoke(resent)["results"][0]
    late = h.invoke(lost)["results"][0]
    assert winner["exit"] == "done"
    assert late["exit"] in {"already_finished", "stale", "duplicate"}
    assert sorted(h.result_indices(lost["run_id"])) == list(range(23))


def test_sweep_leaves_a_live_leg_alone(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(bucket=bucket, stall_after_ms=60_000), timeout_ms=1_600)
    lose_handoff(h)  # handed off just now: still on its way
    answer = h.invoke({"action": "sweep"})["results"][0]
    assert (answer["checked"], answer["resumed"]) == (1, [])
    assert h.invoker.calls == []


def test_sweep_resumes_a_run_whose_owner_died_after_lambdas_retries(h: Harness) -> None:
    lost = lose_handoff(h)
    held = h.store.load_checkpoint(lost["run_id"])
    h.store.swap(held, held.checkpoint.evolve(owner="dead/1", lease_until_ms=h.clock.now_ms() - 1))
    assert h.invoke({"action": "sweep"})["results"][0]["resumed"] == [lost["run_id"]]
    answers = h.drive(h.invoker.pop())
    assert answers[-1]["results"][0]["exit"] == "done"
    assert h.summary(lost["run_id"])["failed"] == 0


def test_sweep_tidies_the_active_index_of_finished_runs(h: Harness) -> None:
    lost = lose_handoff(h)
    h.drive(lost)
    h.store.mark_active(lost["run_id"], h.clock.now_ms())  # the finishing leg died before tidying
    answer = h.invoke({"action": "sweep"})["results"][0]
    assert answer["tidied"] == [lost["run_id"]]
    assert list(h.store.active_runs()) == []


def test_sweep_without_a_configured_bucket_is_a_clear_error(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings())
    answer = h.invoke({"action": "sweep"})
    assert answer == {
        "ok": False,
        "error_type": "ConfigError",
        "error": "the sweep needs BATON_BUCKET to know which bucket to scan",
    }


def test_sweep_leaves_the_marker_of_a_start_still_writing_its_run(s3: Any, bucket: str) -> None:
    # A start marks the run active before it writes run.json; a sweep between the two
    # deleted the marker, and the run, once started, was never watched (simulator, seed 2676).
    h = Harness(s3, bucket, settings(bucket=bucket, stall_after_ms=10_000))
    h.store.mark_active("list-0123456789ab", h.clock.now_ms())
    assert h.invoke({"action": "sweep"})["results"][0]["tidied"] == []
    assert list(h.store.active_runs()) == ["list-0123456789ab"]
    h.clock.advance(h.settings.stall_after_ms)
    assert h.invoke({"action": "sweep"})["results"][0]["tidied"] == ["list-0123456789ab"]
