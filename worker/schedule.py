"""One-time schedules kept in S3, and the tick that moves them to `tasks/` when due.

A schedule is one object whose key says when and where:

    schedules/{due:%Y-%m-%dT%H:%M:%SZ}/{id}/{target name}

Its body is the task list (any bytes), its user metadata the start's options
(`baton-chains`). Keys sort by due time (UTC, fixed width), so "what is due" is a
listing of `schedules/` that stops at the first key past now: the tick reads no
content. Each due schedule is copied to `{tasks prefix}{target name}` with metadata
`baton-schedule: {id}`, then deleted. Exactly one run per schedule:

- A target that already carries `baton-schedule: {id}` (a tick that died between
  copy and delete, or was retried) is not copied again: the tick only deletes.
- The upload's run id is derived from the bucket, the key and the schedule id only
  (not the S3 sequencer, not the ETag: an SSE-KMS bucket gives every copy a new
  ETag), so a second copy that still happens (two ticks racing) is the same run's
  start, which `worker.start` answers as a duplicate. On such a bucket that second
  copy is a new version, so the run it duplicates ends `superseded`: rare, and seen.
- One schedule per target per tick: the start reads `baton-schedule` from the object
  at the key when its notification arrives, so two copies to one key within seconds
  could both be read as the later one; the later schedule waits for the next tick.
  The start also ignores the metadata when the object's ETag is not the notified
  one (it was replaced since).
- The tick has a deadline (half the invocation's time left); the rest wait for the
  next tick, so the sweep that follows always runs.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from worker.exceptions import BadEventError, BatonError
from worker.names import SCHEDULES_PREFIX, TASKS_PREFIX, TRIGGER_SUFFIXES
from worker.s3 import ObjectNotFoundError, ObjectStore

log = logging.getLogger(__name__)

SCHEDULE_METADATA = "baton-schedule"
"""User metadata of a scheduled copy: the schedule id its run id is derived from."""
DUE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_DUE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
SCHEDULE_ID = re.compile(r"^[a-z0-9]{6,32}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
"""A target name: one path segment of letters, digits, `.`, `_`, `-` (no `/`, no `..`)."""
_RELATIVE = re.compile(r"^\+(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class ScheduleError(BadEventError):
    """A schedule that cannot be made: a bad time, name or target. Exit 2 in the CLI."""


@dataclass(frozen=True)
class Schedule:
    due: datetime
    id: str
    name: str

    @property
    def key(self) -> str:
        return f"{SCHEDULES_PREFIX}{self.due.strftime(DUE_FORMAT)}/{self.id}/{self.name}"

    @property
    def target(self) -> str:
        """Under the default tasks prefix (what the CLI shows)."""
        return self.target_in(TASKS_PREFIX)

    def target_in(self, tasks_prefix: str) -> str:
        """Under the function's `tasks_prefix` (`Settings.tasks_prefix`): where its trigger is."""
        return tasks_prefix + self.name

    @classmethod
    def new(cls, due: datetime, name: str, schedule_id: str | None = None) -> Schedule:
        check_name(name)
        return cls(_whole_second(due), schedule_id or secrets.token_hex(6), name)

    @classmethod
    def from_key(cls, key: str) -> Schedule | None:
        """The schedule a key names; None for anything else under `schedules/`."""
        parts = key.removeprefix(SCHEDULES_PREFIX).split("/")
        if not key.startswith(SCHEDULES_PREFIX) or len(parts) != 3:
            return None
        due, schedule_id, name = parts
        if not _DUE.match(due) or not SCHEDULE_ID.match(schedule_id):
            return None
        try:
            check_name(name)  # a key made by hand: the same rules as `baton schedule`
            when = datetime.strptime(due, DUE_FORMAT).replace(tzinfo=UTC)
        except (ValueError, ScheduleError):
            return None
        return cls(when, schedule_id, name)


def check_name(name: str) -> None:
    """A target name the tick can copy to `tasks/` and the trigger will start a run on."""
    if "/" in name:
        raise ScheduleError(
            f"target name {name!r} has a '/': a schedule's target is one name under tasks/"
        )
    if not _NAME.match(name) or ".." in name:
        raise ScheduleError(
            f"target name {name!r} is not safe: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit); --name NAME chooses another"
        )
    if not name.endswith(TRIGGER_SUFFIXES):
        raise ScheduleError(
            f"target name {name!r} must end with {' or '.join(TRIGGER_SUFFIXES)}: "
            "only those uploads under tasks/ start a run"
        )


def target_name(target: str) -> str:
    """`tasks/x.jsonl` or `x.jsonl` -> `x.jsonl`; anything outside tasks/ is refused."""
    if "/" in target and not target.startswith(TASKS_PREFIX):
        raise ScheduleError(f"target {target!r} is outside {TASKS_PREFIX}: runs start only there")
    name = target.removeprefix(TASKS_PREFIX)
    check_name(name)
    return name


def parse_due(text: str, now: datetime, *, now_if_past: bool = False) -> datetime:
    """`+90s`, `+1m`, `+2h`, `+1d`, or ISO 8601 with an offset (`Z` or `+01:00`), in UTC.

    A time in the past is refused (a schedule that silently started at once would
    surprise whoever typed the wrong date), unless `now_if_past`: then it is now.
    """
    relative = _RELATIVE.match(text.strip())
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        try:
            return _whole_second(now + timedelta(**{_UNITS[unit]: amount}))
        except OverflowError:
            raise ScheduleError(f"{text!r} is too far ahead (past the year 9999)") from None
    try:
        when = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ScheduleError(
            f"cannot read the time {text!r}: give ISO 8601 with an offset "
            "(2026-11-29T14:05:00+01:00 or ...Z) or a relative time (+30m, +2h, +1d)"
        ) from None
    if when.tzinfo is None:
        raise ScheduleError(
            f"the time {text!r} has no offset: add Z for UTC or your offset (+01:00), "
            "so it means the same on every machine"
        )
    when = _whole_second(when.astimezone(UTC))
    if when < now.replace(microsecond=0):
        if not now_if_past:
            raise ScheduleError(
                f"{when.strftime(DUE_FORMAT)} is in the past (now {now.strftime(DUE_FORMAT)}); "
                "pass --now-if-past to start it at the next tick"
            )
        return _whole_second(now)
    return when


def _whole_second(when: datetime) -> datetime:
    """Up to the next whole second: a schedule never starts before the time asked."""
    try:
        when = when.astimezone(UTC)
        if when.microsecond:
            when = when.replace(microsecond=0) + timedelta(seconds=1)
    except OverflowError:
        raise ScheduleError("the time is too far ahead (past the year 9999)") from None
    return when


def due_schedules(objects: ObjectStore, bucket: str, now: datetime) -> list[Schedule]:
    """Schedules due at `now`, oldest first: a listing that stops at the first later key."""
    horizon = now.astimezone(UTC).strftime(DUE_FORMAT)
    due: list[Schedule] = []
    for listed in objects.list(bucket, SCHEDULES_PREFIX):
        schedule = Schedule.from_key(listed.key)
        if schedule is None:
            if listed.key.removeprefix(SCHEDULES_PREFIX)[:20] > horizon:
                break
            log.warning(
                "leaving s3://%s/%s in place: not a schedule's key "
                "(schedules/{due}/{id}/{name}, a name baton schedule would take)",
                bucket,
                listed.key,
            )
            continue
        if schedule.due.strftime(DUE_FORMAT) > horizon:
            break
        due.append(schedule)
    return due


@dataclass
class TickResult:
    moved: list[str] = field(default_factory=list)
    """Schedule ids this tick moved (copied, or found copied, and deleted)."""
    deferred: list[str] = field(default_factory=list)
    """Due, left for the next tick: another schedule to the same target moved in this
    tick, or the tick ran out of time."""
    errors: list[str] = field(default_factory=list)


def tick(
    objects: ObjectStore,
    bucket: str,
    now: datetime,
    *,
    tasks_prefix: str = TASKS_PREFIX,
    out_of_time: Callable[[], bool] = lambda: False,
) -> TickResult:
    """Move due schedules to their targets: copy (carrying the id), then delete.

    No lock: a second copy is the same run's duplicate start. At most one schedule per
    target per tick, and none once `out_of_time()`: the rest wait for the next tick. A
    failed copy leaves the schedule for the next tick.
    """
    result = TickResult()
    try:
        due = due_schedules(objects, bucket, now)
    except BatonError as exc:
        result.errors.append(f"listing {SCHEDULES_PREFIX}: {exc}")
        return result
    targets: set[str] = set()
    for schedule in due:
        target = schedule.target_in(tasks_prefix)
        if target in targets or out_of_time():
            result.deferred.append(schedule.id)
            continue
        targets.add(target)
        try:
            moved = move(objects, bucket, schedule, tasks_prefix)
        except BatonError as exc:
            log.error("schedule %s: could not move it: %s", schedule.id, exc)
            result.errors.append(f"{schedule.id}: {exc}")
            continue
        if moved:
            result.moved.append(schedule.id)
    if result.deferred:
        log.info(
            "%s due schedules left for the next tick (one per target per tick, or out of time)",
            len(result.deferred),
            extra={"event": "schedules_deferred", "schedules": result.deferred},
        )
    return result


def move(
    objects: ObjectStore, bucket: str, schedule: Schedule, tasks_prefix: str = TASKS_PREFIX
) -> bool:
    """Copy one schedule to its target and delete it; False when it was gone already
    (another tick moved it, or it was unscheduled meanwhile)."""
    target = schedule.target_in(tasks_prefix)
    head = objects.head(bucket, schedule.key)
    if head is None:
        return False
    copied = objects.head(bucket, target)
    if copied is not None and copied.metadata.get(SCHEDULE_METADATA) == schedule.id:
        # A tick that died between copy and delete, or was retried: copying again would
        # make a new version (a new ETag on an SSE-KMS bucket) under the started run.
        log.info("schedule %s: already copied to s3://%s/%s", schedule.id, bucket, target)
        objects.delete(bucket, schedule.key)
        return True
    metadata = {k: v for k, v in head.metadata.items() if k != SCHEDULE_METADATA}
    metadata[SCHEDULE_METADATA] = schedule.id
    content_type = "application/x-ndjson" if schedule.name.endswith(".jsonl") else None
    try:
        objects.copy(
            bucket,
            schedule.key,
            target,
            metadata=metadata,
            content_type=content_type or "application/json",
        )
    except ObjectNotFoundError:
        if objects.head(bucket, schedule.key) is not None:
            raise
        log.info("schedule %s: unscheduled meanwhile (deleted before its copy)", schedule.id)
        return False
    log.info(
        "schedule %s due %s: copied to s3://%s/%s",
        schedule.id,
        schedule.due.strftime(DUE_FORMAT),
        bucket,
        target,
        extra={"event": "schedule_moved", "schedule": schedule.id, "target": target},
    )
    objects.delete(bucket, schedule.key)
    return True


_NONCE = "schedule:"


def run_nonce(schedule_id: str) -> str:
    """What makes a scheduled upload's run id: its schedule, so every copy is one run."""
    return f"{_NONCE}{schedule_id}"


def is_scheduled(nonce: str) -> bool:
    """A scheduled upload's run id leaves the ETag out (each copy may have its own)."""
    return nonce.startswith(_NONCE)
