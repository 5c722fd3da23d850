"""Following a run to its end, for a person or a pipe; the exit code says how it ended."""

from __future__ import annotations

import json
import time
from typing import Any, TextIO

from baton.target import CliError
from worker.exceptions import RunNotFoundError
from worker.progress import (
    chain_lines,
    cost_line,
    crawl_line,
    exit_code,
    load_view,
    progress_line,
    summary_lines,
)
from worker.store import RunStore


def follow(
    store: RunStore,
    run_id: str,
    out: TextIO,
    as_json: bool = False,
    *,
    interval: float = 1.0,
    wait_s: float = 60.0,
) -> int:
    """Watch the run until it ends; the exit code follows `worker.progress.exit_code`.

    On a terminal the bar is redrawn in place; piped, a line is written only when
    the run moves (position, leg or state), so a log of it stays readable.
    """
    store.load_run(run_id)  # a run that does not exist fails here, like `status`
    tty = out.isatty()
    started = time.monotonic()
    last = None
    while True:
        try:
            v = load_view(store, run_id)
        except RunNotFoundError:
            v = None
        if v is None or not v.chains:
            if time.monotonic() - started > wait_s:
                raise CliError(f"run {run_id} has not started within {wait_s:.0f}s") from None
            time.sleep(interval)
            continue
        line = progress_line(v)
        if v.record.crawl is not None:
            line += "\n" + crawl_line(v) if not tty else "  " + crawl_line(v).strip()
        if tty:
            out.write("\r" + line + "\x1b[K")
        elif (v.position, v.legs, v.state) != last:
            out.write(line + "\n")
        last = (v.position, v.legs, v.state)
        out.flush()
        summary = store.load_summary(run_id) if v.finished else None
        if summary is not None:
            wait_for_manifest(store, run_id)
            if tty:
                out.write("\n")
            lines = [json.dumps(summary, indent=2)] if as_json else summary_lines(summary)
            out.write("\n".join(lines) + "\n")
            return exit_code(str(summary["status"]), int(summary["failed"]))
        time.sleep(interval)


MANIFEST_WAIT_S = 30.0
"""The completing leg writes manifest.json (and presigned.jsonl) just after the summary."""


def wait_for_manifest(store: RunStore, run_id: str, wait_s: float = MANIFEST_WAIT_S) -> bool:
    """Whether the finished run's manifest exists, waiting a little for its writer."""
    deadline = time.monotonic() + wait_s
    while store.load_manifest(run_id) is None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


PRESIGNED_URL_S = 3600
"""`baton status` signs a URL of a presign run's manifest for an hour; `results --presign
--expires S` for another lifetime."""


def describe(store: RunStore, run_id: str) -> list[str]:
    """`baton status` for a person: the run's line and, with several chains, theirs."""
    v = load_view(store, run_id)
    lines = [progress_line(v), *chain_lines(v), cost_line(v.cost, so_far=not v.finished)]
    manifest = store.load_manifest(run_id) if v.finished else None
    if manifest is not None and manifest.get("presigned"):
        key = manifest["presigned"]
        url = store.objects.presign(store.bucket, key, PRESIGNED_URL_S)
        lines += [
            f"presigned.jsonl: s3://{store.bucket}/{key}",
            f"  a URL of it, valid 1 h (signed with your credentials): {url}",
        ]
    return lines


def say_started(answer: dict[str, Any], out: TextIO) -> None:
    verb = {"started": "starting", "resumed": "resuming"}.get(answer["outcome"], answer["outcome"])
    chains = answer.get("chains", 1)
    across = f" in {chains} chains" if chains > 1 else ""
    at = f" at position {answer['position']} of {answer['total']}" if answer["total"] else ""
    out.write(f"run {answer['run_id']} {verb}{at}{across}\n")
    if answer.get("note"):
        out.write(f"note: {answer['note']}\n")
