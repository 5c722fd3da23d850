"""The commands on one-time schedules: schedule, schedules, unschedule (`worker.schedule`)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from baton.runs import checked_list
from baton.target import CliError, Target
from worker.clock import Clock
from worker.events import derive_run_id
from worker.names import SCHEDULES_PREFIX
from worker.progress import EXIT_OK
from worker.schedule import (
    DUE_FORMAT,
    SCHEDULE_ID,
    SCHEDULE_METADATA,
    Schedule,
    parse_due,
    run_nonce,
    target_name,
)
from worker.start import CHAINS_METADATA

MAX_COPY_BYTES = 5 * 1024**3
"""CopyObject's limit: the tick copies a schedule to tasks/ in one request."""
OVERDUE_S = 120
"""Due this long ago and still waiting: no tick has run (the sweep rule is off, or failing)."""


def cmd_schedule(args: argparse.Namespace, target: Target) -> int:
    bucket = target.require_bucket()
    now = _now(args.clock)
    name = target_name(args.name or args.file.name)
    due = parse_due(args.at, now, now_if_past=args.now_if_past)
    if args.file.is_file() and args.file.stat().st_size > MAX_COPY_BYTES:
        raise CliError(
            f"{args.file} is {args.file.stat().st_size:,} bytes: a schedule's body is copied "
            f"to tasks/ in one CopyObject, which takes at most 5 GB; upload it with "
            "baton submit instead, or split the list"
        )
    body = checked_list(args.file)
    schedule = Schedule.new(due, name)
    metadata = {CHAINS_METADATA: str(args.chains)} if args.chains else None
    store = target.store()
    for other, _ in _listed(target):
        if other.name == name:
            print(
                f"baton: warning: schedule {other.id} also targets {other.target} (at "
                f"{_when(other.due)}); each starts its own run, at least a tick apart",
                file=sys.stderr,
            )
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
        f"{' (now: at the next tick)' if (due - now).total_seconds() < 1 else ''}"
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
    now = _now(args.clock)
    for schedule, size in schedules:
        overdue = (now - schedule.due).total_seconds() > OVERDUE_S
        print(
            f"{schedule.id}  {_when(schedule.due)}  {schedule.target}  {size:,} bytes"
            f"{'  OVERDUE: no tick has moved it (is the sweep rule running?)' if overdue else ''}"
        )
    return EXIT_OK


def cmd_unschedule(args: argparse.Namespace, target: Target) -> int:
    if not SCHEDULE_ID.match(args.schedule_id):
        raise CliError(f"{args.schedule_id!r} is not a schedule id (baton schedules lists them)")
    store = target.store()
    found = [s for s, _ in _listed(target) if s.id == args.schedule_id]
    if not found:
        raise CliError(f"no schedule {args.schedule_id}: it may have started already (baton runs)")
    now = _now(args.clock)
    for schedule in found:
        if schedule.due <= now:
            print(
                f"baton: warning: schedule {schedule.id} was due at {_when(schedule.due)}: "
                "a tick may be moving it right now",
                file=sys.stderr,
            )
        store.objects.delete(store.bucket, schedule.key)
        copied = store.objects.head(store.bucket, schedule.target)
        if copied is not None and copied.metadata.get(SCHEDULE_METADATA) == schedule.id:
            run_id = derive_run_id(store.bucket, schedule.target, "", run_nonce(schedule.id))
            print(
                f"schedule {schedule.id} has started already: s3://{store.bucket}/"
                f"{schedule.target} was copied for it (run {run_id}); stop that run with "
                f"baton cancel {run_id}"
            )
            continue
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
        "due": schedule.due.strftime(DUE_FORMAT),
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
