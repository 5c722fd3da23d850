"""One-time schedules kept in S3, and the tick that moves them to `tasks/` when due.

A schedule is one object whose key says when and where:

    schedules/{due:%Y-%m-%dT%H:%M:%SZ}/{id}/{target name}

Its body is the task list (any bytes), its user metadata the start's options
(`baton-chains`). Keys sort by due time (UTC, fixed width), so "what is due" is a
listing of `schedules/` that stops at the first key past now: the tick reads no
content. Each due schedule is copied to `tasks/{target name}` with metadata
`baton-schedule: {id}`, then deleted. The upload's run id is derived from that
id (not the S3 sequencer), so a second copy (two ticks at once, a tick retried
by Lambda, a tick that died between copy and delete) is the same run's start,
which `worker.start` already answers as a duplicate: one run per schedule.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from worker.exceptions import BadEventError, BatonError
from worker.names import TASKS_PREFIX, TRIGGER_SUFFIXES
from worker.s3 import ObjectStore

log = logging.getLogger(__name__)

SCHEDULES_PREFIX = "schedules/"
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
        return TASKS_PREFIX + self.name

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
        if not _DUE.match(due) or not SCHEDULE_ID.match(schedule_id) or not _NAME.match(name):
            return None
        try:
            when = datetime.strptime(due, DUE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
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
            "(starting with a letter or digit)"
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
        return _whole_second(now + timedelta(**{_UNITS[unit]: amount}))
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
    when = when.astimezone(UTC)
    if when.microsecond:
        when = when.replace(microsecond=0) + timedelta(seconds=1)
    return when


def due_schedules(objects: ObjectStore, bucket: str, now: datetime) -> list[Schedule]:
    """Schedules due at `now`, oldest first: a listing that stops at the first later key."""
    horizon = now.strftime(DUE_FORMAT)
    due: list[Schedule] = []
    for listed in objects.list(bucket, SCHEDULES_PREFIX):
        schedule = Schedule.from_key(listed.key)
        if schedule is None:
            if listed.key.removeprefix(SCHEDULES_PREFIX)[:20] > horizon:
                break
            log.warning("ignoring s3://%s/%s: not a schedule's key", bucket, listed.key)
            continue
        if schedule.due.strftime(DUE_FORMAT) > horizon:
            break
        due.append(schedule)
    return due


@dataclass
class TickResult:
    moved: list[str] = field(default_factory=list)
    """Schedule ids copied to their targets (and deleted) by this tick."""
    errors: list[str] = field(default_factory=list)


def tick(objects: ObjectStore, bucket: str, now: datetime) -> TickResult:
    """Move every due schedule to its target: copy (carrying its id), then delete.

    A copy that happens twice is harmless (the second start is the same run), so
    no lock is taken; a failed copy leaves the schedule for the next tick.
    """
    result = TickResult()
    try:
        due = due_schedules(objects, bucket, now)
    except BatonError as exc:
        result.errors.append(f"listing {SCHEDULES_PREFIX}: {exc}")
        return result
    for schedule in due:
        try:
            move(objects, bucket, schedule)
        except BatonError as exc:
            log.error("schedule %s: could not move it: %s", schedule.id, exc)
            result.errors.append(f"{schedule.id}: {exc}")
            continue
        result.moved.append(schedule.id)
    return result


def move(objects: ObjectStore, bucket: str, schedule: Schedule) -> None:
    head = objects.head(bucket, schedule.key)
    if head is None:
        return  # another tick moved it a moment ago
    metadata = {k: v for k, v in head.metadata.items() if k != SCHEDULE_METADATA}
    metadata[SCHEDULE_METADATA] = schedule.id
    content_type = "application/x-ndjson" if schedule.name.endswith(".jsonl") else None
    objects.copy(
        bucket,
        schedule.key,
        schedule.target,
        metadata=metadata,
        content_type=content_type or "application/json",
    )
    log.info(
        "schedule %s due %s: copied to s3://%s/%s",
        schedule.id,
        schedule.due.strftime(DUE_FORMAT),
        bucket,
        schedule.target,
        extra={"event": "schedule_moved", "schedule": schedule.id, "target": schedule.target},
    )
    objects.delete(bucket, schedule.key)


def run_nonce(schedule_id: str) -> str:
    """What makes a scheduled upload's run id: its schedule, so every copy is one run."""
    return f"schedule:{schedule_id}"
