"""One-time schedules: keys that sort by due time, a tick that moves only what is due, and
exactly one run per schedule however many times it is moved."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.unit.harness import Harness, settings
from worker.events import StartRequest
from worker.names import SCHEDULES_PREFIX
from worker.s3 import Listed, ObjectStore
from worker.schedule import (
    SCHEDULE_METADATA,
    Schedule,
    ScheduleError,
    due_schedules,
    move,
    parse_due,
    run_nonce,
    target_name,
    tick,
)
from worker.start import scheduled

NOW = datetime(2026, 11, 29, 14, 5, 0, tzinfo=UTC)
URLS = [f"https://example.com/{i}" for i in range(7)]


@pytest.fixture
def h(s3: Any, bucket: str) -> Harness:
    return Harness(s3, bucket, settings(bucket=bucket), timeout_ms=60_000)


def put_schedule(h: Harness, due: datetime, name: str = "nightly.json", **meta: str) -> Schedule:
    schedule = Schedule.new(due, name)
    h.s3.put_object(
        Bucket=h.bucket, Key=schedule.key, Body=json.dumps(URLS).encode(), Metadata=meta
    )
    return schedule


def tick_at(h: Harness, when: datetime) -> dict[str, Any]:
    event = {"action": "sweep", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
    answer = h.invoke(event)
    assert answer["ok"], answer
    result: dict[str, Any] = answer["results"][0]
    return result


def copied_upload(h: Harness, name: str, sequencer: str) -> dict[str, Any]:
    """The S3 notification of a copy to tasks/ (moto sends none: the test delivers it)."""
    etag = h.s3.head_object(Bucket=h.bucket, Key=f"tasks/{name}")["ETag"]
    return h.upload_event(f"tasks/{name}", etag, sequencer=sequencer)


def keys(h: Harness, prefix: str) -> list[str]:
    return [
        o["Key"] for o in h.s3.list_objects_v2(Bucket=h.bucket, Prefix=prefix).get("Contents", [])
    ]


def test_schedule_key_sorts_by_due_time_in_utc() -> None:
    later = Schedule.new(datetime(2026, 11, 29, 15, 0, tzinfo=UTC), "a.json", "aaaaaa")
    earlier_in_paris = Schedule.new(
        datetime.fromisoformat("2026-11-29T15:30:00+01:00"), "b.json", "bbbbbb"
    )
    assert earlier_in_paris.key == "schedules/2026-11-29T14:30:00Z/bbbbbb/b.json"
    assert sorted([later.key, earlier_in_paris.key]) == [earlier_in_paris.key, later.key]


def test_schedule_key_round_trips_and_names_its_target() -> None:
    schedule = Schedule.new(NOW, "list.jsonl", "abc123")
    assert Schedule.from_key(schedule.key) == schedule
    assert schedule.target == "tasks/list.jsonl"


def test_schedule_from_key_refuses_other_objects() -> None:
    assert Schedule.from_key("schedules/readme.txt") is None
    assert Schedule.from_key("schedules/2026-13-40T99:00:00Z/abc123/x.json") is None
    assert Schedule.from_key("schedules/2026-11-29T14:05:00Z/abc123/sub/x.json") is None


def test_parse_due_reads_relative_times() -> None:
    assert parse_due("+1m", NOW) == NOW + timedelta(minutes=1)
    assert parse_due("+2h", NOW) == NOW + timedelta(hours=2)
    assert parse_due("+90s", NOW) == NOW + timedelta(seconds=90)
    assert parse_due("+1d", NOW) == NOW + timedelta(days=1)


def test_parse_due_reads_iso_8601_with_an_offset_into_utc() -> None:
    assert parse_due("2026-11-29T16:00:00+01:00", NOW) == datetime(2026, 11, 29, 15, tzinfo=UTC)
    assert parse_due("2026-11-29T15:00:00Z", NOW) == datetime(2026, 11, 29, 15, tzinfo=UTC)


def test_parse_due_rounds_a_fraction_of_a_second_up() -> None:
    assert parse_due("2026-11-29T15:00:00.2Z", NOW) == datetime(2026, 11, 29, 15, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["tomorrow", "+5x", "2026-11-29 25:00", "+", ""])
def test_parse_due_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ScheduleError, match="cannot read the time"):
        parse_due(text, NOW)


def test_parse_due_refuses_a_time_without_an_offset() -> None:
    with pytest.raises(ScheduleError, match="no offset"):
        parse_due("2026-11-29T16:00:00", NOW)


def test_parse_due_refuses_a_time_in_the_past() -> None:
    with pytest.raises(ScheduleError, match=r"in the past.*--now-if-past"):
        parse_due("2026-11-29T14:00:00Z", NOW)


def test_parse_due_takes_a_past_time_as_now_when_asked() -> None:
    assert parse_due("2026-11-29T14:00:00Z", NOW, now_if_past=True) == NOW


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("runs/x.json", "outside tasks/"),
        ("other/x.json", "outside tasks/"),
        ("tasks/sub/x.json", "has a '/'"),
        ("../x.json", "outside tasks/"),
        ("x y.json", "not safe"),
        (".hidden.json", "not safe"),
        ("x..json", "not safe"),
        ("x.csv", "must end with"),
    ],
)
def test_target_name_refuses_bad_targets(target: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        target_name(target)


def test_target_name_takes_a_key_under_tasks_or_a_bare_name() -> None:
    assert target_name("tasks/list.jsonl") == "list.jsonl"
    assert target_name("list.jsonl") == "list.jsonl"


def test_due_schedules_lists_only_what_is_due(h: Harness) -> None:
    due = put_schedule(h, NOW - timedelta(minutes=3))
    exactly_now = put_schedule(h, NOW, "now.json")
    put_schedule(h, NOW + timedelta(seconds=1), "later.json")
    put_schedule(h, NOW + timedelta(days=1), "tomorrow.json")
    found = due_schedules(ObjectStore(h.s3), h.bucket, NOW)
    assert [s.id for s in found] == [due.id, exactly_now.id]


def test_due_schedules_reads_no_content(h: Harness) -> None:
    for minutes in range(5):
        put_schedule(h, NOW + timedelta(minutes=minutes - 2), f"l{minutes}.json")
    objects = ObjectStore(h.s3)
    due_schedules(objects, h.bucket, NOW)
    counts = objects.counts()
    assert counts["list"] == 1
    assert counts["get"] == counts["head"] == 0


def test_tick_moves_a_due_schedule_to_its_target_with_its_id(h: Harness) -> None:
    schedule = put_schedule(h, NOW - timedelta(seconds=30), "nightly.json", **{"baton-chains": "2"})
    answer = tick_at(h, NOW)
    assert answer["scheduled"] == [schedule.id]
    head = h.s3.head_object(Bucket=h.bucket, Key="tasks/nightly.json")
    assert head["Metadata"] == {SCHEDULE_METADATA: schedule.id, "baton-chains": "2"}
    body = h.s3.get_object(Bucket=h.bucket, Key="tasks/nightly.json")["Body"].read()
    assert json.loads(body) == URLS
    assert keys(h, SCHEDULES_PREFIX) == []


def test_tick_leaves_a_schedule_that_is_not_due(h: Harness) -> None:
    schedule = put_schedule(h, NOW + timedelta(minutes=1))
    assert tick_at(h, NOW)["scheduled"] == []
    assert keys(h, "tasks/") == []
    assert keys(h, SCHEDULES_PREFIX) == [schedule.key]
    assert tick_at(h, NOW + timedelta(minutes=1))["scheduled"] == [schedule.id]


def test_tick_without_a_time_uses_the_function_clock(h: Harness) -> None:
    now = datetime.fromtimestamp(h.clock.now_ms() / 1000, UTC)
    schedule = put_schedule(h, now + timedelta(minutes=1))
    assert h.invoke({"action": "sweep"})["results"][0]["scheduled"] == []
    h.clock.advance(60_000)
    assert h.invoke({"action": "sweep"})["results"][0]["scheduled"] == [schedule.id]


def test_a_scheduled_upload_starts_a_run_named_by_its_schedule(h: Harness) -> None:
    put_schedule(h, NOW)
    tick_at(h, NOW)
    started = h.invoke(copied_upload(h, "nightly.json", "00A1"))["results"][0]
    assert started["action"] == "started"
    assert started["run_id"].startswith("nightly-")
    assert started["total"] == len(URLS)


def test_two_copies_of_one_schedule_start_one_run(h: Harness) -> None:
    """Two ticks at once, or a tick Lambda retried: each copies, each copy is notified."""
    schedule = put_schedule(h, NOW)
    store = ObjectStore(h.s3)
    due = due_schedules(store, h.bucket, NOW)
    first = h.s3.copy_object(  # a concurrent tick's copy, before this tick's
        Bucket=h.bucket,
        Key=schedule.target,
        CopySource={"Bucket": h.bucket, "Key": schedule.key},
        MetadataDirective="REPLACE",
        Metadata={SCHEDULE_METADATA: schedule.id},
    )
    assert due == [schedule]
    tick_at(h, NOW)
    one = h.invoke(copied_upload(h, "nightly.json", "00A1"))["results"][0]
    two = h.invoke(copied_upload(h, "nightly.json", "00B2"))["results"][0]
    assert first["CopyObjectResult"]["ETag"]
    assert (one["action"], two["action"]) == ("started", "duplicate")
    assert one["run_id"] == two["run_id"]
    assert len(h.invoker.calls) == 1  # one leg 0
    assert len(list(h.store.run_ids())) == 1


def test_a_tick_that_died_between_copy_and_delete_starts_no_second_run(h: Harness) -> None:
    schedule = put_schedule(h, NOW)
    h.s3.copy_object(  # the dead tick's copy; its delete never happened
        Bucket=h.bucket,
        Key=schedule.target,
        CopySource={"Bucket": h.bucket, "Key": schedule.key},
        MetadataDirective="REPLACE",
        Metadata={SCHEDULE_METADATA: schedule.id},
    )
    first = h.invoke(copied_upload(h, "nightly.json", "00A1"))["results"][0]
    h.drive(h.invoker.pop())  # the run goes on, and even finishes, before the next tick
    assert tick_at(h, NOW + timedelta(minutes=1))["scheduled"] == [schedule.id]
    again = h.invoke(copied_upload(h, "nightly.json", "00C3"))["results"][0]
    assert again["action"] == "duplicate"
    assert again["run_id"] == first["run_id"]
    assert h.invoker.calls == []
    assert sorted(h.result_indices(first["run_id"])) == list(range(len(URLS)))


def test_a_plain_upload_of_the_same_list_is_its_own_run(h: Harness) -> None:
    """Without the schedule's metadata, each upload is its own run, as before."""
    h.s3.put_object(Bucket=h.bucket, Key="tasks/nightly.json", Body=json.dumps(URLS).encode())
    one = h.invoke(copied_upload(h, "nightly.json", "00A1"))["results"][0]
    two = h.invoke(copied_upload(h, "nightly.json", "00B2"))["results"][0]
    assert (one["action"], two["action"]) == ("started", "started")
    assert one["run_id"] != two["run_id"]


def test_tick_ignores_objects_that_are_not_schedules(h: Harness) -> None:
    h.s3.put_object(Bucket=h.bucket, Key="schedules/notes.txt", Body=b"hello")
    schedule = put_schedule(h, NOW)
    assert tick_at(h, NOW)["scheduled"] == [schedule.id]
    assert keys(h, SCHEDULES_PREFIX) == ["schedules/notes.txt"]


def test_tick_reports_a_schedule_it_could_not_move_and_keeps_it(h: Harness) -> None:
    schedule = put_schedule(h, NOW)
    objects = ObjectStore(h.s3)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        from worker.s3 import S3Error

        raise S3Error("AccessDenied (test)")

    objects.copy = refuse  # type: ignore[method-assign]
    result = tick(objects, h.bucket, NOW)
    assert result.moved == []
    assert result.errors
    assert schedule.id in result.errors[0]
    assert keys(h, SCHEDULES_PREFIX) == [schedule.key]


def test_sweep_event_refuses_a_bad_time(h: Harness) -> None:
    answer = h.invoke({"action": "sweep", "time": "yesterday"})
    assert not answer["ok"]
    assert "not an ISO 8601 time" in answer["error"]


def test_tick_moves_one_schedule_per_target_per_tick(h: Harness) -> None:
    """Two schedules of the same list to one target, due in one tick: the start reads the
    schedule id from the object at the key, so both copies in one tick would both be read
    as the later one (one schedule lost). The later waits a tick; each gets its run."""
    first = put_schedule(h, NOW - timedelta(seconds=20))
    second = put_schedule(h, NOW - timedelta(seconds=10))
    answer = tick_at(h, NOW)
    assert (answer["scheduled"], answer["deferred"]) == ([first.id], [second.id])
    one = h.invoke(copied_upload(h, "nightly.json", "00A1"))["results"][0]
    assert tick_at(h, NOW + timedelta(minutes=1))["scheduled"] == [second.id]
    two = h.invoke(copied_upload(h, "nightly.json", "00B2"))["results"][0]
    assert (one["action"], two["action"]) == ("started", "started")
    assert one["run_id"] != two["run_id"]


def test_a_scheduled_upload_replaced_since_its_notification_is_not_read_as_the_newer() -> None:
    """The start HEADs the key when the notification arrives: if the object there is not
    the notified one (another ETag), its baton-schedule is the newer object's. (Its start
    then fails on the pinned ETag; read as the newer schedule's, it would have taken that
    schedule's run id.)"""
    notified = StartRequest("b", "tasks/x.json", etag='"aaa"', nonce="00A1", source="s3")
    newer = Listed("tasks/x.json", '"bbb"', 10, {SCHEDULE_METADATA: "abc123"})
    assert scheduled(notified, newer) == notified
    same = Listed("tasks/x.json", '"aaa"', 10, {SCHEDULE_METADATA: "abc123"})
    assert scheduled(notified, same).nonce == run_nonce("abc123")


def test_a_retried_tick_finds_its_copy_and_only_deletes(h: Harness) -> None:
    """A tick that died between copy and delete: the next does not copy again (on an
    SSE-KMS bucket each copy has a new ETag: a new version under the started run)."""
    schedule = put_schedule(h, NOW)
    h.s3.copy_object(
        Bucket=h.bucket,
        Key=schedule.target,
        CopySource={"Bucket": h.bucket, "Key": schedule.key},
        MetadataDirective="REPLACE",
        Metadata={SCHEDULE_METADATA: schedule.id},
    )
    objects = ObjectStore(h.s3)
    result = tick(objects, h.bucket, NOW)
    assert result.moved == [schedule.id]
    assert objects.counts()["copy"] == 0
    assert keys(h, SCHEDULES_PREFIX) == []


def test_a_second_copy_with_a_new_etag_is_the_same_runs_start(h: Harness) -> None:
    """A scheduled run's id comes from the bucket, key and schedule id, not the ETag: on an
    SSE-KMS bucket two copies of one schedule have different ETags."""
    schedule = put_schedule(h, NOW)
    tick_at(h, NOW)
    one = h.invoke(copied_upload(h, "nightly.json", "00A1"))["results"][0]
    h.s3.put_object(  # the racing tick's copy, with its own ETag
        Bucket=h.bucket,
        Key=schedule.target,
        Body=json.dumps(URLS).encode() + b" ",
        Metadata={SCHEDULE_METADATA: schedule.id},
    )
    two = h.invoke(copied_upload(h, "nightly.json", "00B2"))["results"][0]
    assert (one["action"], two["action"]) == ("started", "duplicate")
    assert one["run_id"] == two["run_id"]


class SlowCopies:
    """An S3 client whose copies take `ms` of the fake clock each."""

    def __init__(self, client: Any, clock: Any, ms: float) -> None:
        self._client, self._clock, self._ms = client, clock, ms

    def copy_object(self, **params: Any) -> Any:
        self._clock.advance(self._ms)
        return self._client.copy_object(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_tick_stops_at_half_the_time_left_and_the_sweep_still_runs(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(bucket=bucket), timeout_ms=10_000)
    h.container.s3.client = SlowCopies(s3, h.clock, 2_000)
    schedules = [put_schedule(h, NOW, f"l{n}.json") for n in range(5)]
    answer = tick_at(h, NOW)
    assert len(answer["scheduled"]) == 3  # 0, 2, 4 s used: the third ends past 5 s
    assert len(answer["deferred"]) == 2
    assert "checked" in answer  # the sweep ran
    assert len(keys(h, SCHEDULES_PREFIX)) == 2
    assert sorted(answer["scheduled"] + answer["deferred"]) == sorted(s.id for s in schedules)


class BrokenCopies:
    """An S3 client whose copies raise something that is not a BatonError."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def copy_object(self, **params: Any) -> Any:
        raise RuntimeError("a bug in the tick (test)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_tick_that_raises_does_not_skip_the_sweep(h: Harness) -> None:
    put_schedule(h, NOW)
    h.container.s3.client = BrokenCopies(h.s3)
    answer = tick_at(h, NOW)
    assert "checked" in answer
    assert any("RuntimeError" in e for e in answer["errors"])


class DeletedBeforeCopy:
    """`baton unschedule` deletes the schedule between the tick's HEAD and its COPY."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def copy_object(self, **params: Any) -> Any:
        source = params["CopySource"]
        self._client.delete_object(Bucket=source["Bucket"], Key=source["Key"])
        return self._client.copy_object(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_schedule_unscheduled_during_the_tick_is_no_error(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worker.schedule")
    put_schedule(h, NOW)
    result = tick(ObjectStore(DeletedBeforeCopy(h.s3)), h.bucket, NOW)
    assert (result.moved, result.errors) == ([], [])
    assert keys(h, "tasks/") == []
    assert "unscheduled meanwhile" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_tick_does_not_list_a_schedule_another_tick_moved(h: Harness) -> None:
    schedule = put_schedule(h, NOW)
    objects = ObjectStore(h.s3)
    due = due_schedules(objects, h.bucket, NOW)
    h.s3.delete_object(Bucket=h.bucket, Key=schedule.key)  # the other tick's delete
    assert move(objects, h.bucket, due[0]) is False


def test_tick_copies_under_the_functions_tasks_prefix(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(bucket=bucket, tasks_prefix="in/"))
    schedule = put_schedule(h, NOW)
    assert tick_at(h, NOW)["scheduled"] == [schedule.id]
    assert keys(h, "in/") == ["in/nightly.json"]
    assert keys(h, "tasks/") == []


def test_tick_leaves_a_hand_made_key_with_a_bad_name_in_place(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    key = "schedules/2026-11-29T14:00:00Z/abc123/notes.txt"
    h.s3.put_object(Bucket=h.bucket, Key=key, Body=b"[]")
    assert tick_at(h, NOW)["scheduled"] == []
    assert keys(h, SCHEDULES_PREFIX) == [key]
    assert keys(h, "tasks/") == []
    assert "leaving" in caplog.text


def test_due_schedules_reads_now_in_utc(h: Harness) -> None:
    schedule = put_schedule(h, NOW)
    put_schedule(h, NOW + timedelta(minutes=30), "later.json")
    in_paris = NOW.astimezone(timezone(timedelta(hours=1)))  # 15:05 there
    assert due_schedules(ObjectStore(h.s3), h.bucket, in_paris) == [schedule]
    early = (NOW - timedelta(seconds=1)).astimezone(timezone(timedelta(hours=-5)))
    assert due_schedules(ObjectStore(h.s3), h.bucket, early) == []


def test_a_sweep_event_time_ahead_of_the_clock_moves_nothing(h: Harness) -> None:
    """A manual sweep saying a later time would start schedules early: refused (the sweep
    itself still runs); a minute of skew is allowed."""
    now = datetime.fromtimestamp(h.clock.now_ms() / 1000, UTC)
    schedule = put_schedule(h, now + timedelta(hours=1))
    answer = tick_at(h, now + timedelta(hours=1))
    assert answer["scheduled"] == []
    assert "ahead of the function's clock" in answer["errors"][0]
    assert "checked" in answer
    assert keys(h, SCHEDULES_PREFIX) == [schedule.key]
    h.clock.advance(3_600_000 - 30_000)
    assert tick_at(h, now + timedelta(hours=1))["scheduled"] == [schedule.id]
