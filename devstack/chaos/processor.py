"""The chaotic per-task processor, run inside the Lambda containers as `PROCESSOR`.

Cheap fake work that sometimes crashes the container (`os._exit` mid-batch),
hangs until the runtime kills it at the function's timeout, or defers itself to
the next leg (`OutOfTimeError`), each at its rate from the function's `CHAOS_*`
variables. A crash or a hang is drawn per (seed, run tag, task index, attempt),
so a task that crashed is not doomed: its next attempt draws again. Tasks
planted with the option `"chaos": KILLER` crash on every attempt; `CRASH_ONCE`
and `HANG_ONCE` fail their first attempt only.

Attempts are counted across the containers' processes in files under
`CHAOS_DIR`, and every fault appends a line to a faults file just before it
takes the process, so the harness counts faults where they happened.
"""

from __future__ import annotations

import functools
import os
import random
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from devstack.chaos.faults import FAULTS, FaultKind, Layer, by_name
from worker.exceptions import OutOfTimeError
from worker.processor import TaskContext
from worker.processor import process as fetch_page
from worker.tasks import Task

__all__ = [
    "CRASH_ONCE",
    "CRAWL_PROCESSOR",
    "HANG_ONCE",
    "KILLER",
    "PLANTED_URLS",
    "PROCESSOR",
    "ProcessorChaos",
    "crawl_page",
    "process",
    "recorded",
]

KILLER = "killer"
"""Task option `"chaos": "killer"`: the task crashes its leg on every attempt."""
CRASH_ONCE = "crash_once"
HANG_ONCE = "hang_once"

_CRASH = by_name("crash")
_HANG = by_name("timeout")
_DEFER = by_name("defer")
_ATTEMPTS = "attempts"
_FAULTS_FILE = "faults.log"


@dataclass(frozen=True)
class ProcessorChaos:
    """The processor's side of `ChaosConfig`, carried in the function's `CHAOS_*` variables."""

    directory: Path | None
    """Shared by every container: attempts and the faults file. None: count in-process."""
    seed: int = 0
    rates: Mapping[str, float] = field(default_factory=dict)
    """By fault kind, for the kinds whose hook is here (`Layer.PROCESSOR`)."""
    task_ms: float = 1.0
    hang_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProcessorChaos:
        directory = env.get("CHAOS_DIR")
        return cls(
            directory=Path(directory) if directory else None,
            seed=int(env.get("CHAOS_SEED", "0")),
            rates={kind.name: float(env.get(kind.variable, "0")) for kind in _kinds()},
            task_ms=float(env.get("CHAOS_TASK_MS", "1")),
            hang_s=float(env.get("CHAOS_HANG_S", "60")),
        )

    def environment(self) -> dict[str, str]:
        """The function's variables that `from_env` reads back in each container."""
        directory = {} if self.directory is None else {"CHAOS_DIR": str(self.directory)}
        return {
            **directory,
            "CHAOS_SEED": str(self.seed),
            **{kind.variable: str(self.rate(kind)) for kind in _kinds()},
            "CHAOS_TASK_MS": str(self.task_ms),
            "CHAOS_HANG_S": str(self.hang_s),
        }

    def rate(self, kind: FaultKind) -> float:
        return self.rates.get(kind.name, 0.0)

    def prepare(self) -> None:
        """Make the shared directory before any container counts an attempt in it."""
        if self.directory is not None:
            (self.directory / _ATTEMPTS).mkdir(parents=True, exist_ok=True)

    def attempt(self, tag: str, index: int) -> int:
        """This task's attempt number, 1 first, counted across processes in a file."""
        if self.directory is None:
            _local_attempts[(tag, index)] += 1
            return _local_attempts[(tag, index)]
        path = self.directory / _ATTEMPTS / f"{_safe(tag)}-{index}"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, b".")
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def record(self, word: str, tag: str, index: int, attempt: int) -> None:
        """One line per fault, written (unbuffered) before the fault takes the process."""
        if self.directory is None:
            return
        line = f"{word} {tag} {index} {attempt} {os.getpid()}\n".encode()
        fd = os.open(self.directory / _FAULTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def recorded(directory: Path) -> Counter[str]:
    """The faults the processor recorded under `directory`, by their word ("crash", ...)."""
    path = directory / _FAULTS_FILE
    if not path.exists():
        return Counter()
    return Counter(line.split(" ", 1)[0] for line in path.read_text().splitlines() if line)


_local_attempts: Counter[tuple[str, int]] = Counter()
"""Attempts per task when no CHAOS_DIR is shared: counted in this process only."""


@functools.cache
def _chaos() -> ProcessorChaos:
    return ProcessorChaos.from_env(os.environ)


def process(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """Cheap fake work that sometimes crashes the container, hangs past the timeout or
    defers itself to the next leg."""
    chaos = _chaos()
    tag = str(task.options.get("tag", ""))
    attempt = chaos.attempt(tag, task.index)
    plan = task.options.get("chaos")
    roll = random.Random(f"{chaos.seed}/{tag}/{task.index}/{attempt}").random()
    first = attempt == 1
    crash = chaos.rate(_CRASH)
    if plan == KILLER or (plan == CRASH_ONCE and first) or roll < crash:
        chaos.record(_CRASH.name, tag, task.index, attempt)
        os._exit(70)
    hang = crash + chaos.rate(_HANG)
    if (plan == HANG_ONCE and first) or roll < hang:
        chaos.record("hang", tag, task.index, attempt)  # counted as the runtime's timeout
        time.sleep(chaos.hang_s)  # the runtime kills the container long before this ends
    elif roll < hang + chaos.rate(_DEFER):
        chaos.record(_DEFER.name, tag, task.index, attempt)
        raise OutOfTimeError("chaos: out of time before starting", tried=False)
    time.sleep(float(task.options.get("ms", chaos.task_ms)) / 1000)
    return {"attempt": attempt}


PROCESSOR = f"{__name__}:{process.__name__}"
"""The function's BATON_PROCESSOR."""

PLANTED_URLS = "CHAOS_PLANTED_URLS"
"""A crawl's plantings: lines of `{crash_once|hang_once|killer} URL` (its tasks are the
pages it finds, so there is no task list to plant them in)."""
CRAWL_TAG = "crawl"


def crawl_page(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """`process`'s faults (drawn per log index and attempt, planted per URL), then the real
    page fetch: a crawl under chaos, its rows carrying the links that grow its log."""
    plan = _planted().get(task.url or "")
    options = {"tag": CRAWL_TAG, "ms": 0} | ({"chaos": plan} if plan else {})
    process(replace(task, options=options), ctx)
    return fetch_page(task, ctx)


CRAWL_PROCESSOR = f"{__name__}:{crawl_page.__name__}"
"""BATON_PROCESSOR for a crawl under chaos."""


@functools.cache
def _planted() -> dict[str, str]:
    lines = os.environ.get(PLANTED_URLS, "").splitlines()
    return {url: plan for plan, _, url in (line.strip().partition(" ") for line in lines) if url}


def _kinds() -> list[FaultKind]:
    return [kind for kind in FAULTS if kind.where is Layer.PROCESSOR]


def _safe(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", tag)[:60] or "_"
