"""A seeded soak: upload runs in waves under every fault, then check them all.

    python -m devstack.chaos --seed 7 --runs 6 --tasks 300     # what `make chaos` runs

It prints a line per run and ends with the report's summary line; the exit
status is 0 only when every run passed every check.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from devstack.chaos.config import ChaosConfig
from devstack.chaos.faults import RATES, kinds_of
from devstack.chaos.harness import ChaosStack
from devstack.chaos.oracle import Source
from devstack.chaos.report import ChaosReport

__all__ = ["main", "parse", "run_chaos"]

_LOAD = ("seed", "runs", "tasks", "parallel", "killers", "once")
_OPTIONS = (*_LOAD, *RATES, "timeout_s")
"""The ChaosConfig fields the command line sets: `--timeout` for timeout_s, dashes for `_`."""


def run_chaos(config: ChaosConfig, directory: Path) -> ChaosReport:
    """Upload `config.runs` lists in waves, let them run under faults, then check them all."""
    started = time.monotonic()
    sources: list[Source] = []
    with ChaosStack(config, directory) as chaos:
        step = max(1, config.parallel)
        for first in range(0, config.runs, step):
            uploaded = [chaos.upload_run(n) for n in range(first, min(config.runs, first + step))]
            sources.extend(uploaded)
            chaos.wait(uploaded, config.max_wait_s)
        chaos.settle()
        checks = [chaos.check(source) for source in sources]
        faults = chaos.faults()
    return ChaosReport(checks, faults, config.enabled_kinds(), time.monotonic() - started)


def main(argv: Sequence[str] | None = None) -> int:
    config, work_dir = parse(argv)
    directory = work_dir or Path(tempfile.mkdtemp(prefix="baton-chaos-"))
    directory.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(directory / "harness.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        report = run_chaos(config, directory)
    finally:
        root.removeHandler(handler)
        handler.close()
    *details, summary = report.lines()
    print("\n".join(details))
    if report.ok and work_dir is None:
        shutil.rmtree(directory)
        print(f"{report.elapsed_s:.0f} s")
    else:
        print(f"{report.elapsed_s:.0f} s; logs and fault files in {directory}")
    print(summary)
    return 0 if report.ok else 1


def parse(argv: Sequence[str] | None = None) -> tuple[ChaosConfig, Path | None]:
    """The session's config from the command line, and the work directory if one was given."""
    defaults = ChaosConfig(runs=6, tasks=300)
    parser = argparse.ArgumentParser(
        prog="python -m devstack.chaos",
        description="Run baton under seeded faults on the embedded stack and check every run.",
    )
    for name in _OPTIONS:
        value = getattr(defaults, name)
        flag = "--" + name.removesuffix("_s").replace("_", "-")
        parser.add_argument(flag, dest=name, type=type(value), default=value, help=_help(name))
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="keep the logs and fault files here (default: a temporary "
        "directory, removed when every check passed)",
    )
    args = parser.parse_args(argv)
    config = replace(defaults, **{name: getattr(args, name) for name in _OPTIONS})
    work_dir: Path | None = args.work_dir
    return config, work_dir


def _help(name: str) -> str | None:
    """A rate's help, from the fault kinds it switches on."""
    kinds = kinds_of(name)
    if not kinds:
        return None
    described = "; ".join(f"{kind.name}: {kind.help}" for kind in kinds)
    return f"{described} (a probability per opportunity)"
