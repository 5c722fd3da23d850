"""What the machine is, and how busy the rest of it is while a bench runs (from /proc).

The machine may be shared (other engineers' test runs on the same two cores): the
`Contention` sampler says how much, per bench label, so a noisy figure can be told
from a slow one.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


class Contention:
    """Samples once a second how many threads outside this benchmark's tree are runnable.

    Set `label` to the bench that is running; `summary()` groups the samples by it.
    """

    def __init__(self) -> None:
        self.samples: list[tuple[str, int]] = []
        self.label = "setup"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="contention", daemon=True)

    def __enter__(self) -> Contention:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for label in dict.fromkeys(label for label, _ in self.samples):
            counts = [n for lab, n in self.samples if lab == label]
            out[label] = summarize(counts)
        return out

    def since(self, start: int) -> dict[str, float] | None:
        """The summary of the samples taken since `len(self.samples)` was `start`."""
        counts = [n for _, n in self.samples[start:]]
        return summarize(counts) if counts else None

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append((self.label, foreign_runnable()))


def summarize(counts: list[int]) -> dict[str, float]:
    return {
        "mean_runnable": round(sum(counts) / len(counts), 2),
        "busy_share": round(sum(1 for n in counts if n) / len(counts), 3),
        "seconds": len(counts),
    }


def foreign_runnable() -> int:
    """Runnable threads of processes that are neither this one nor its descendants."""
    parents: dict[int, int] = {}
    running: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            fields = stat[stat.rfind(")") + 2 :].split()
            pid, ppid = int(proc.name), int(fields[1])
            parents[pid] = ppid
            if ppid in (0, 2):  # the kernel's own threads
                continue
            for task in (proc / "task").iterdir():
                line = (task / "stat").read_text()
                if line[line.rfind(")") + 2] == "R":
                    running[pid] = running.get(pid, 0) + 1
        except (OSError, ValueError, IndexError):
            continue
    me = os.getpid()

    def ours(pid: int) -> bool:
        while pid > 1:
            if pid == me:
                return True
            pid = parents.get(pid, 0)
        return False

    return sum(count for pid, count in running.items() if not ours(pid))


def machine_facts() -> dict[str, Any]:
    """CPU, memory, Python, the commit measured and whether the runtime tree was dirty."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    nproc = _run(["nproc"]) or str(os.cpu_count())
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    dirty = _run(["git", "status", "--porcelain", "--", "worker", "cache", "handler.py"]) or ""
    return {
        "nproc": int(nproc) if nproc.isdigit() else nproc,
        "cpu_model": model,
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _run(["git", "rev-parse", "--short", "HEAD"]),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "uncommitted_worker_changes": [line.strip() for line in dirty.splitlines()],
    }


def _run(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
