"""The contract's invariants, one behaviour per test, on the embedded stack with planted faults."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest

from devstack.chaos import AFTER_WRITE, CRASH_ONCE, HANG_ONCE, ChaosConfig, ChaosStack, Source
from devstack.lambda_runtime import LambdaFaults
from devstack.s3server import INTERNAL_ERROR, S3Call, S3Fault
from devstack.stack import object_created_event
from tests.chaos.conftest import StartChaos
from worker.events import LegEvent
from worker.exceptions import RunNotFoundError

pytestmark = pytest.mark.chaos

SLOW = ChaosConfig.quiet(task_ms=40, timeout_s=1.5, margin_ms=600, batch_size=4)
"""Legs of about half a second of work: a list of 100 tasks needs several."""
QUIET_EXITS = {"duplicate", "stale", "lost_cas", "already_finished"}


def start_run(chaos: ChaosStack, tag: str, tasks: list[Any]) -> tuple[Source, str]:
    source = chaos.upload(tag, tasks)
    run_id = chaos.run_id(source)
    assert run_id is not None, f"the upload of {tag} started no run"
    return source, run_id


def wait_position(chaos: ChaosStack, run_id: str, at_least: int, timeout_s: float = 30) -> int:
    """Poll the checkpoint, which the start may not have written yet."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            cp = chaos.checkpoint(run_id)
        except RunNotFoundError:
            cp = None
        if cp is not None and cp.position >= at_least:
            return cp.position
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached position {at_least}")


def legs_of(chaos: ChaosStack, run_id: str) -> list[dict[str, Any]]:
    return [leg for leg in chaos.leg_lines() if leg["run_id"] == run_id]


def test_invariant_cancel_stops_the_chain_at_its_next_batch(start_chaos: StartChaos) -> None:
    config = ChaosConfig.quiet(
        task_ms=50, batch_size=4, environment={"BATON_ADAPTIVE_MARGIN": "false"}
    )
    chaos = start_chaos(config)
    source, run_id = start_run(chaos, "cancel", chaos.tasks("cancel", 200))
    wait_position(chaos, run_id, 12)

    chaos.store.request_cancel(run_id)
    at_cancel = chaos.checkpoint(run_id).position
    final = chaos.wait_status(run_id)
    chaos.settle()

    assert final.status == "cancelled"
    assert at_cancel <= final.position <= at_cancel + config.batch_size < 200
    check = chaos.check(source)
    assert (check.lost, check.duplicated, check.forks, check.problems) == (0, 0, 0, [])
    assert max(row["index"] for row in chaos.rows(run_id)) == final.position - 1


def test_invariant_replaced_task_list_supersedes_the_old_run_and_starts_a_new_one(
    start_chaos: StartChaos,
) -> None:
    chaos = start_chaos(SLOW)
    old, old_id = start_run(chaos, "list", chaos.tasks("old", 100))
    wait_position(chaos, old_id, 4)

    new, new_id = start_run(chaos, "list", chaos.tasks("new", 10))
    stopped = chaos.wait_status(old_id)
    finished = chaos.wait_status(new_id)
    chaos.settle()

    assert new_id != old_id
    assert (stopped.status, finished.status) == ("superseded", "done")
    assert stopped.position < 100
    assert "changed" in str(stopped.reason) or "no longer" in str(stopped.reason)
    assert chaos.check(old).problems == []
    new_check = chaos.check(new)
    assert new_check.finished
    assert new_check.problems == []
    assert sorted(row["url"] for row in chaos.rows(new_id)) == sorted(
        task["url"] for task in chaos.tasks("new", 10)
    )


def test_invariant_max_legs_ends_a_runaway_chain_failed_with_a_clear_reason(
    start_chaos: StartChaos,
) -> None:
    config = ChaosConfig.quiet(
        task_ms=40, timeout_s=1.5, margin_ms=600, batch_size=4, environment={"BATON_MAX_LEGS": "2"}
    )
    chaos = start_chaos(config)
    source, run_id = start_run(chaos, "runaway", chaos.tasks("runaway", 300))

    final = chaos.wait_status(run_id)
    chaos.settle()

    assert final.status == "failed"
    assert final.reason == "reached the maximum of 2 legs (BATON_MAX_LEGS)"
    assert final.leg == 1
    assert final.position < 300
    summary = chaos.store.load_summary(run_id)
    assert summary is not None
    assert summary["reason"] == final.reason
    check = chaos.check(source)
    assert (check.lost, check.duplicated, check.forks, check.problems) == (0, 0, 0, [])


def test_invariant_killer_task_is_recorded_failed_and_the_run_still_finishes(
    start_chaos: StartChaos,
) -> None:
    chaos = start_chaos(ChaosConfig.quiet(timeout_s=1.5, margin_ms=600))
    source, run_id = start_run(chaos, "killer", chaos.tasks("killer", 30, killers=[7]))

    chaos.wait_status(run_id, timeout_s=90)
    chaos.settle()

    check = chaos.check(source)
    assert check.finished
    assert check.problems == []
    assert check.killers_skipped == 1
    rows = {row["index"]: row for row in chaos.rows(run_id)}
    assert rows[7]["error"] == "task killed its leg 3 times; skipped"
    assert all(rows[i]["error"] is None for i in rows if i != 7)
    summary = chaos.store.load_summary(run_id)
    assert summary is not None
    assert (summary["ok"], summary["failed"]) == (29, 1)
    assert chaos.processor_faults()["crash"] >= 3


def test_invariant_leg_killed_at_its_timeout_is_retried_and_results_are_exactly_once(
    start_chaos: StartChaos,
) -> None:
    chaos = start_chaos(ChaosConfig.quiet(timeout_s=1.5, margin_ms=600))
    tasks = chaos.tasks("hang", 40)
    tasks[12]["chaos"] = HANG_ONCE
    source, run_id = start_run(chaos, "hang", tasks)

    chaos.wait_status(run_id)
    chaos.settle()

    stats = chaos.stack.runtime.stats(chaos.stack.function.name)
    assert stats.timeouts == 1
    assert stats.retries >= 1
    check = chaos.check(source)
    assert check.finished
    assert check.problems == []
    rows = {row["index"]: row for row in chaos.rows(run_id)}
    assert (rows[12]["error"], rows[12]["attempt"]) == (None, 2)


def test_invariant_crash_mid_batch_loses_nothing(start_chaos: StartChaos) -> None:
    chaos = start_chaos(ChaosConfig.quiet(timeout_s=1.5, margin_ms=600))
    tasks = chaos.tasks("crash", 40)
    tasks[9]["chaos"] = CRASH_ONCE
    source, run_id = start_run(chaos, "crash", tasks)

    chaos.wait_status(run_id)
    chaos.settle()

    check = chaos.check(source)
    assert check.finished
    assert check.problems == []
    assert chaos.processor_faults() == {"crash": 1}
    assert chaos.stack.runtime.stats(chaos.stack.function.name).errors >= 1


def test_invariant_sweep_resumes_a_dropped_handoff_and_a_late_original_never_also_continues(
    start_chaos: StartChaos,
) -> None:
    chaos = start_chaos(replace(SLOW, drop_rate=1.0))
    runtime = chaos.stack.runtime
    source, run_id = start_run(chaos, "dropped", chaos.tasks("dropped", 100))
    deadline = time.monotonic() + 30
    while runtime.stats(chaos.stack.function.name).fault_drops == 0:
        assert time.monotonic() < deadline, "no hand-off was dropped"
        time.sleep(0.02)
    runtime.set_faults(LambdaFaults())
    lost = chaos.checkpoint(run_id)
    record = chaos.store.load_run(run_id)
    original = LegEvent(run_id, record.bucket, record.key, record.etag, lost.position, lost.leg)
    assert lost.owner is None  # handed off, and the hand-off never arrived

    while chaos.checkpoint(run_id).sweeps == 0:
        assert time.monotonic() < deadline + 30, "the sweep never resumed the run"
        time.sleep(0.02)
    runtime.invoke_async(chaos.stack.function.name, original.payload())  # the late original
    final = chaos.wait_status(run_id)
    chaos.settle()
    results_before = sorted(chaos.store.result_keys(run_id))
    runtime.invoke_async(chaos.stack.function.name, original.payload())  # and once more, late
    chaos.settle()

    assert final.status == "done"
    same_leg = [leg["exit"] for leg in legs_of(chaos, run_id) if leg["leg"] == lost.leg]
    assert sum(exit in {"handed_off", "done"} for exit in same_leg) == 1, same_leg
    assert sum(exit in QUIET_EXITS for exit in same_leg) >= 2, same_leg
    check = chaos.check(source)
    assert check.finished
    assert check.problems == []
    assert sorted(chaos.store.result_keys(run_id)) == results_before
    summary = chaos.store.load_summary(run_id)
    assert summary is not None
    assert summary["sweeps"] >= 1


def test_invariant_duplicate_upload_notification_starts_one_run(start_chaos: StartChaos) -> None:
    chaos = start_chaos()
    body = b"".join(json.dumps(t).encode() + b"\n" for t in chaos.tasks("twice", 20))
    etag = chaos.s3.put_object(Bucket=chaos.bucket, Key="tasks/twice.jsonl", Body=body)["ETag"]
    event = object_created_event(chaos.bucket, "tasks/twice.jsonl", etag, len(body), sequencer="0A")

    for _ in range(2):
        chaos.stack.runtime.invoke_async(chaos.stack.function.name, event)
    source = Source("twice", "tasks/twice.jsonl", etag, 20)
    chaos.wait([source], 30)
    chaos.settle()

    assert len(chaos.store.runs_for_source(source.key, source.etag)) == 1
    check = chaos.check(source)
    assert check.finished
    assert check.problems == []


def test_invariant_lost_answer_to_the_run_record_write_still_starts_the_run(
    start_chaos: StartChaos,
) -> None:
    planted: list[str] = []

    def lose_run_json_answer(call: S3Call) -> S3Fault | None:
        if call.method == "PUT" and call.key.endswith("/run.json") and not planted:
            planted.append(call.key)
            return AFTER_WRITE  # written; botocore retries, and the retry's IfNoneMatch fails
        return None

    chaos = start_chaos(s3_fault_hook=lose_run_json_answer)
    source = chaos.upload("answer", chaos.tasks("answer", 20))
    chaos.wait([source], 30)
    chaos.settle()

    assert planted
    check = chaos.check(source)
    assert check.finished
    assert check.problems == []


def test_invariant_lost_answer_to_the_final_checkpoint_write_still_leaves_a_summary(
    start_chaos: StartChaos,
) -> None:
    seen = {"last_batch": False, "checkpoints": 0}

    def lose_final_checkpoint_answer(call: S3Call) -> S3Fault | None:
        """The second checkpoint write after the last batch's results is the run's end."""
        if call.method == "PUT" and call.key.endswith("-0000000019.jsonl"):
            seen["last_batch"] = True
        elif seen["last_batch"] and call.method == "PUT" and call.key.endswith("checkpoint.json"):
            seen["checkpoints"] += 1
            return AFTER_WRITE if seen["checkpoints"] == 2 else None
        return None

    chaos = start_chaos(s3_fault_hook=lose_final_checkpoint_answer)
    source, run_id = start_run(chaos, "final", chaos.tasks("final", 20))
    chaos.wait_status(run_id)
    deadline = time.monotonic() + 15
    while chaos.store.load_summary(run_id) is None and time.monotonic() < deadline:
        time.sleep(0.1)  # the sweep may be the one to write it
    chaos.settle()

    assert seen["checkpoints"] >= 2
    check = chaos.check(source)
    assert check.finished
    assert check.problems == []


def test_invariant_lost_answers_to_claims_are_not_deaths_and_skip_no_healthy_task(
    start_chaos: StartChaos,
) -> None:
    seen = {"run_json_read": False, "claims": 0}

    def lose_claim_answers(call: S3Call) -> S3Fault | None:
        """A leg reads run.json, then claims: lose the answer to the first three claims."""
        if call.method == "GET" and call.key.endswith("/run.json"):
            seen["run_json_read"] = True
        elif (
            seen["run_json_read"] and call.method == "PUT" and call.key.endswith("checkpoint.json")
        ):
            seen["run_json_read"] = False
            seen["claims"] += 1
            return AFTER_WRITE if seen["claims"] <= 3 else None
        return None

    chaos = start_chaos(SLOW, lose_claim_answers)
    source, run_id = start_run(chaos, "claims", chaos.tasks("claims", 150))
    chaos.wait_status(run_id, timeout_s=60)
    chaos.settle()

    assert seen["claims"] >= 3
    assert chaos.faults()["s3_after_write"] == 3
    check = chaos.check(source)
    assert check.false_kills == 0
    assert check.problems == []
    assert check.finished


def test_invariant_summary_that_could_not_be_written_is_written_by_the_sweep(
    start_chaos: StartChaos,
) -> None:
    failed: list[str] = []

    def refuse_summaries(call: S3Call) -> S3Fault | None:
        """Fail every attempt botocore makes (six) at the finishing leg's summary."""
        if call.method == "PUT" and call.key.endswith("/summary.json") and len(failed) < 6:
            failed.append(call.key)
            return INTERNAL_ERROR
        return None

    chaos = start_chaos(s3_fault_hook=refuse_summaries)
    source, run_id = start_run(chaos, "summary", chaos.tasks("summary", 20))
    chaos.wait_status(run_id)
    deadline = time.monotonic() + 15
    while chaos.store.load_summary(run_id) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    chaos.settle()

    assert len(failed) == 6
    check = chaos.check(source)
    assert check.problems == []
    assert check.finished
    assert list(chaos.store.active_runs()) == []


def test_invariant_killer_deep_in_a_leg_first_batch_is_found_in_a_few_deaths(
    start_chaos: StartChaos,
) -> None:
    """The batch in flight when a leg died may be larger than the last one that finished."""
    config = ChaosConfig.quiet(
        timeout_s=1.5, margin_ms=600, batch_size=40, environment={"BATON_ADAPTIVE_MARGIN": "false"}
    )
    chaos = start_chaos(config)
    source, run_id = start_run(chaos, "deep", chaos.tasks("deep", 50, killers=[30]))

    chaos.wait_status(run_id, timeout_s=60)
    chaos.settle()

    check = chaos.check(source)
    assert check.killers_skipped == 1
    assert check.problems == []
    assert chaos.processor_faults()["crash"] <= config.max_task_attempts + 1


def test_invariant_sweep_during_a_start_does_not_forget_the_run(start_chaos: StartChaos) -> None:
    slowed: list[str] = []

    def slow_checkpoint_creation(call: S3Call) -> S3Fault | None:
        """Hold the start between its active marker and its checkpoint over a sweep tick."""
        if call.method == "PUT" and call.key.endswith("/checkpoint.json") and not slowed:
            slowed.append(call.key)
            time.sleep(0.8)
        return None

    chaos = start_chaos(ChaosConfig.quiet(timeout_s=1.5, margin_ms=600), slow_checkpoint_creation)
    tasks = chaos.tasks("slow-start", 30)
    tasks[3]["chaos"] = CRASH_ONCE  # the first leg dies: only the sweep can carry on
    source, run_id = start_run(chaos, "slow-start", tasks)

    chaos.wait_status(run_id, timeout_s=30)
    chaos.settle()

    assert slowed
    check = chaos.check(source)
    assert check.problems == []
    assert check.finished


def test_invariant_a_chain_ten_times_slower_is_helped_by_stealing(
    start_chaos: StartChaos,
) -> None:
    config = ChaosConfig.quiet(
        task_ms=20, timeout_s=3.0, margin_ms=600, batch_size=4, max_concurrency=8
    )
    chaos = start_chaos(config)
    tasks = chaos.tasks("straggler", 160)
    for task in tasks[:40]:  # chain 0000's range: every task ten times slower
        task["ms"] = 200
    source = chaos.upload("straggler", tasks, chains=4)
    chaos.wait([source], 120)
    chaos.settle()

    check = chaos.check(source)
    assert (check.lost, check.duplicated, check.forks, check.problems) == (0, 0, 0, [])
    run_id = str(check.run_id)
    slow = chaos.store.load_checkpoint(run_id, "0000").checkpoint
    assert slow.splits, "nobody took any of the slow chain's range"
    assert slow.range_end < 40
    stolen = {split["chain"] for split in slow.splits}
    assert all(chaos.store.load_checkpoint(run_id, c).checkpoint.status == "done" for c in stolen)
    summary = chaos.store.load_summary(run_id)
    assert summary is not None
    ranges = len(chaos.store.chain_ids(run_id))  # thieves may also steal from each other
    assert (summary["status"], summary["ok"], summary["ranges"]) == ("done", 160, ranges)
    assert ranges >= 4 + len(stolen)
