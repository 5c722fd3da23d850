"""The commands on one-time schedules: schedule, schedules, unschedule (`worker.schedule`)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from baton.runs import checked_list
from baton.target import CliError, Target
from worker.clock import Clock
from worker.names import SCHEDULES_PREFIX
from worker.progress import EXIT_OK
from worker.schedule import (
    SCHEDULE_ID,
    Schedule,
    parse_due,
    target_name,
)
from worker.start import CHAINS_METADATA


def cmd_schedule(args: argparse.Namespace, target: Target) -> int:
    bucket = target.require_bucket()
    now = _now(args.clock)
    name = target_name(args.name or args.file.name)
    due = parse_due(args.at, now, now_if_past=args.now_if_past)
    body = checked_list(args.file)
    schedule = Schedule.new(due, name)
    metadata = {CHAINS_METADATA: str(args.chains)} if args.chains else None
    store = target.store()
    store.objects.put(
        bucket,
        schedule.key,
        body,
        content_type="application/octet-stream",
        metadata=metadata,
        if_none_match=True,
    )
    print(
        f"scheduled {schedule.id}: s3://{bucket}/{schedule.target} at {_when(schedule.due)}"
        f"{'' if due > now else ' (now: at the next tick)'}"
    )
    print(f"  s3://{bucket}/{schedule.key}")
    return EXIT_OK


def cmd_schedules(args: argparse.Namespace, target: Target) -> int:
    schedules = _listed(target)
    if args.json:
        for schedule, size in schedules:
            print(json.dumps(_as_dict(schedule, size)))
        return EXIT_OK
    if not schedules:
        print("no schedules")
        return EXIT_OK
    for schedule, size in schedules:
        print(f"{schedule.id}  {_when(schedule.due)}  {schedule.target}  {size:,} bytes")
    return EXIT_OK


def cmd_unschedule(args: argparse.Namespace, target: Target) -> int:
    if not SCHEDULE_ID.match(args.schedule_id):
        raise CliError(f"{args.schedule_id!r} is not a schedule id (baton schedules lists them)")
    store = target.store()
    found = [s for s, _ in _listed(target) if s.id == args.schedule_id]
    if not found:
        raise CliError(f"no schedule {args.schedule_id}: it may have started already (baton runs)")
    for schedule in found:
        store.objects.delete(store.bucket, schedule.key)
        print(f"unscheduled {schedule.id}: {schedule.target} at {_when(schedule.due)}")
    return EXIT_OK


def _listed(target: Target) -> list[tuple[Schedule, int]]:
    store = target.store()
    out = []
    for listed in store.objects.list(store.bucket, SCHEDULES_PREFIX):
        schedule = Schedule.from_key(listed.key)
        if schedule is not None:
            out.append((schedule, listed.size))
    return out


def _as_dict(schedule: Schedule, size: int) -> dict[str, Any]:
    return {
        "id": schedule.id,
        "due": schedule.due.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "due_local": schedule.due.astimezone().isoformat(),
        "target": schedule.target,
        "key": schedule.key,
        "bytes": size,
    }


def _when(due: datetime) -> str:
    """The due time in the user's zone, and in UTC."""
    local = due.astimezone()
    utc = f"{due:%Y-%m-%d %H:%M:%S} UTC"
    if local.utcoffset() == UTC.utcoffset(None):
        return utc
    return f"{local:%Y-%m-%d %H:%M:%S %Z} ({utc})"


def _now(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.now_ms() / 1000, UTC)
