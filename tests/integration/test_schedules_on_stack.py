"""One-time schedules through the real path: the CLI writes one, the stack's tick (the
sweep rule's event, with its time) copies it to tasks/, S3 notifies, the run starts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baton.cli import main
from devstack.demo import LocalRun
from devstack.site import LatencyProfile, Site, SiteConfig
from devstack.stack import EmbeddedStack
from tests.fakes import FakeClock
from worker.store import RunStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with Site(SiteConfig(pages=20, latency=LatencyProfile(median_s=0.01))) as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at_ms=float(int(time.time()) * 1000))  # a whole second, as a tick


@pytest.fixture
def stack(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EmbeddedStack]:
    """A stack kept running, whose ticks come only when the test sends them (no ticker),
    each saying the time on the test's clock."""
    bucket = f"baton-sched-{time.time_ns() % 10**12}"
    function = LocalRun(timeout_s=5.0, margin_ms=800).function(bucket)
    running = EmbeddedStack(
        function, bucket=bucket, log_file=tmp_path / "containers.log", clock=clock
    ).start()
    for name, value in running.client_environment().items():
        monkeypatch.setenv(name, value)
    yield running
    running.stop()


def baton(capsys: pytest.CaptureFixture[str], clock: FakeClock, *args: str) -> tuple[int, str]:
    code = main(list(args), clock=clock)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def tick(stack: EmbeddedStack) -> dict[str, Any]:
    """One tick, synchronously: its answer."""
    client = stack.lambda_client()
    try:
        answer = client.invoke(
            FunctionName=stack.function.name, Payload=json.dumps(stack.tick_event()).encode()
        )
        result: dict[str, Any] = json.loads(answer["Payload"].read())
    finally:
        client.close()
    assert result["ok"], result
    return dict(result["results"][0])


def wait_for_runs(store: RunStore, count: int, timeout_s: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = list(store.run_ids())
        if len(runs) >= count:
            return runs
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} runs after {timeout_s} s")


def wait_for_summary(store: RunStore, run_id: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        summary = store.load_summary(run_id)
        if summary is not None:
            return summary
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} has no summary after {timeout_s} s")


def test_schedule_at_plus_one_minute_starts_its_run_within_one_tick(
    stack: EmbeddedStack,
    site: Site,
    clock: FakeClock,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "later.jsonl"
    path.write_text("".join(json.dumps(u) + "\n" for u in site.urls()))
    code, out = baton(capsys, clock, "--bucket", stack.bucket, "schedule", str(path), "--at", "+1m")
    assert code == 0, out
    schedule_id = out.split()[1].rstrip(":")
    code, out = baton(capsys, clock, "schedules")
    assert schedule_id in out
    assert "tasks/later.jsonl" in out
    assert "UTC" in out

    assert tick(stack)["scheduled"] == []  # not due yet: nothing moves
    clock.advance(59_000)
    assert tick(stack)["scheduled"] == []
    clock.advance(1_000)  # the next tick after the due time
    assert tick(stack)["scheduled"] == [schedule_id]

    store = RunStore.over(stack.s3_client(), stack.bucket)
    (run_id,) = wait_for_runs(store, 1)
    assert run_id.startswith("later-")
    summary = wait_for_summary(store, run_id)
    assert (summary["status"], summary["processed"]) == ("done", 20)
    code, out = baton(capsys, clock, "schedules")
    assert out.strip() == "no schedules"


def test_duplicate_ticks_on_the_stack_start_one_run(
    stack: EmbeddedStack,
    site: Site,
    clock: FakeClock,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two ticks at once: the schedule is copied twice (each copy notified) before either
    deletes it; then a tick retried after its copy finds the copy and only deletes. One
    run starts: the second notification is answered as a duplicate."""
    path = tmp_path / "twice.jsonl"
    path.write_text("".join(json.dumps(u) + "\n" for u in site.urls()[:5]))
    code, out = baton(capsys, clock, "schedule", str(path), "--at", "+1s")
    assert code == 0, out
    schedule_id = out.split()[1].rstrip(":")
    clock.advance(1_000)
    s3 = stack.s3_client()
    key = next(
        o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix="schedules/")["Contents"]
    )
    for _ in range(2):  # the two racing ticks' copies, neither deleted yet
        s3.copy_object(
            Bucket=stack.bucket,
            Key="tasks/twice.jsonl",
            CopySource={"Bucket": stack.bucket, "Key": key},
            MetadataDirective="REPLACE",
            Metadata={"baton-schedule": schedule_id},
        )
    assert tick(stack)["scheduled"] == [schedule_id]
    store = RunStore.over(s3, stack.bucket)
    (run_id,) = wait_for_runs(store, 1)
    wait_for_summary(store, run_id)
    wait_for_log(tmp_path / "containers.log", f"run {run_id} already exists")
    assert list(store.run_ids()) == [run_id]


def wait_for_log(path: Path, text: str, timeout_s: float = 30) -> None:
    """Until the function's log says `text` (an answer it gave)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path} after {timeout_s} s")


def test_unschedule_cancels_a_schedule_before_it_is_due(
    stack: EmbeddedStack,
    site: Site,
    clock: FakeClock,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "never.jsonl"
    path.write_text(json.dumps(site.urls()[0]) + "\n")
    _, out = baton(capsys, clock, "schedule", str(path), "--at", "+2h", "--chains", "2")
    schedule_id = out.split()[1].rstrip(":")
    code, out = baton(capsys, clock, "unschedule", schedule_id)
    assert code == 0
    assert f"unscheduled {schedule_id}" in out
    clock.advance(3 * 3600_000)
    assert tick(stack)["scheduled"] == []
    code, out = baton(capsys, clock, "unschedule", schedule_id)
    assert code == 2
    assert "no schedule" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "yesterday"], "cannot read the time"),
        (["--at", "2020-01-01T00:00:00Z"], "in the past"),
        (["--at", "2030-01-01T00:00:00"], "no offset"),
        (["--at", "+1h", "--name", "runs/x.jsonl"], "outside tasks/"),
        (["--at", "+1h", "--name", "tasks/a/b.jsonl"], "has a '/'"),
        (["--at", "+1h", "--name", "x y.jsonl"], "not safe"),
        (["--at", "+99999999d"], "too far ahead"),
    ],
)
@pytest.mark.usefixtures("stack")
def test_schedule_refuses_bad_input_with_exit_2(
    clock: FakeClock,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text('"https://example.com/"\n')
    code, out = baton(capsys, clock, "schedule", str(path), *args)
    assert code == 2
    assert message in out


def test_schedule_refuses_a_body_copy_object_cannot_take(
    stack: EmbeddedStack, clock: FakeClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as sparse:
        sparse.truncate(5 * 1024**3 + 1)
    code, out = baton(capsys, clock, "schedule", str(path), "--at", "+1h")
    assert code == 2
    assert "5 GB" in out


def test_schedule_warns_of_a_second_schedule_to_one_target_and_notes_now(
    stack: EmbeddedStack, clock: FakeClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "same.jsonl"
    path.write_text('"https://example.com/"\n')
    code, out = baton(capsys, clock, "schedule", str(path), "--at", "+1h")
    first = out.split()[1].rstrip(":")
    assert code == 0
    assert "warning" not in out
    clock.advance(1)  # "now" inside a second: --now-if-past rounds it up
    code, out = baton(
        capsys, clock, "schedule", str(path), "--at", "2020-01-01T00:00:00Z", "--now-if-past"
    )
    assert code == 0
    assert f"schedule {first} also targets tasks/same.jsonl" in out
    assert "(now: at the next tick)" in out


def test_schedules_flags_a_schedule_no_tick_has_moved(
    stack: EmbeddedStack, clock: FakeClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "late.jsonl"
    path.write_text('"https://example.com/"\n')
    baton(capsys, clock, "schedule", str(path), "--at", "+1m")
    assert "OVERDUE" not in baton(capsys, clock, "schedules")[1]
    clock.advance(4 * 60_000)  # no tick sent
    assert "OVERDUE" in baton(capsys, clock, "schedules")[1]


def test_unschedule_says_when_the_schedule_has_started_already(
    stack: EmbeddedStack, clock: FakeClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tick copied it (and had not deleted it yet) when the user unscheduled it."""
    path = tmp_path / "started.jsonl"
    path.write_text('"https://example.com/"\n')
    _, out = baton(capsys, clock, "schedule", str(path), "--at", "+1s")
    schedule_id = out.split()[1].rstrip(":")
    clock.advance(2_000)
    s3 = stack.s3_client()
    key = next(
        o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix="schedules/")["Contents"]
    )
    s3.copy_object(
        Bucket=stack.bucket,
        Key="tasks/started.jsonl",
        CopySource={"Bucket": stack.bucket, "Key": key},
        MetadataDirective="REPLACE",
        Metadata={"baton-schedule": schedule_id},
    )
    code, out = baton(capsys, clock, "unschedule", schedule_id)
    assert code == 0
    assert "was due at" in out
    assert f"schedule {schedule_id} has started already" in out
    assert "baton cancel" in out
    assert f"unscheduled {schedule_id}" not in out
    store = RunStore.over(s3, stack.bucket)
    (run_id,) = wait_for_runs(store, 1)
    assert f"baton cancel {run_id}" in out
