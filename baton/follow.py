"""Following a run to its end, for a person or a pipe; the exit code says how it ended."""

from __future__ import annotations

import json
import time
from typing import Any, TextIO

from baton.target import CliError
from worker.exceptions import RunNotFoundError
from worker.progress import exit_code, progress_line, summary_lines, view
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
            v = view(store.load_run(run_id), store.load_checkpoint(run_id).checkpoint)
        except RunNotFoundError:
            if time.monotonic() - started > wait_s:
                raise CliError(f"run {run_id} has not started within {wait_s:.0f}s") from None
            time.sleep(interval)
            continue
        cp = v.checkpoint
        line = progress_line(v)
        if tty:
            out.write("\r" + line + "\x1b[K")
        elif (cp.position, cp.leg, v.state) != last:
            out.write(line + "\n")
        last = (cp.position, cp.leg, v.state)
        out.flush()
        if cp.finished:
            if tty:
                out.write("\n")
            summary = store.load_summary(run_id)
            if summary is not None:
                lines = [json.dumps(summary, indent=2)] if as_json else summary_lines(summary)
                out.write("\n".join(lines) + "\n")
            return exit_code(cp.status, cp.failed)
        time.sleep(interval)


def say_started(answer: dict[str, Any], out: TextIO) -> None:
    verb = {"started": "starting", "resumed": "resuming"}.get(answer["outcome"], answer["outcome"])
    out.write(
        f"run {answer['run_id']} {verb} at position {answer['position']} of {answer['total']}\n"
    )
    if answer.get("note"):
        out.write(f"note: {answer['note']}\n")
