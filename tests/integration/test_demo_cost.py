"""The demo's run ends with its cost: summary.json has a cost section, and the demo prints it."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from devstack.demo import run_demo

pytestmark = pytest.mark.integration


def test_demo_prints_the_cost_section_of_its_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the demo copies its results under .baton-local/
    out = io.StringIO()
    assert run_demo(pages=40, timeout_s=3.0, out=out) == 0
    text = out.getvalue()
    line = next(line for line in text.splitlines() if line.startswith("cost: $"))
    # Printed from summary.json's cost section (summary_lines shows it only when present).
    assert re.search(r"on Lambda (x86_64|arm64) \(\d+ requests, [\d.]+ GB-s\)", line)
    assert "Step Functions Distributed Map" in line
    assert "Lambda durable functions" in line
