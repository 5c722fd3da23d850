from __future__ import annotations

import pytest

_lines: list[str] = []


def report_line(line: str) -> None:
    """Show the simulator's summary line at the end of the session (pytest captures output)."""
    _lines.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _lines:
        terminalreporter.write_line(line)
