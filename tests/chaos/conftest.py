from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.chaos import ChaosConfig, ChaosStack
from devstack.s3server import FaultHook

StartChaos = Callable[..., ChaosStack]


@pytest.fixture
def start_chaos(tmp_path: Path) -> Iterator[StartChaos]:
    """Start a `ChaosStack` (no random faults unless the config asks); stopped after the test."""
    started: list[ChaosStack] = []

    def start(
        config: ChaosConfig | None = None, s3_fault_hook: FaultHook | None = None
    ) -> ChaosStack:
        directory = tmp_path / f"chaos-{len(started)}"
        chaos = ChaosStack(config or ChaosConfig.quiet(), directory, s3_fault_hook)
        started.append(chaos)
        return chaos.start()

    yield start
    for chaos in started:
        chaos.stop()


_lines: list[str] = []


def report_line(line: str) -> None:
    """Show a chaos summary line at the end of the session (pytest captures test output)."""
    _lines.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _lines:
        terminalreporter.write_line(line)
