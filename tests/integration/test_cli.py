"""The `baton` CLI against the embedded stack, through real boto3 clients over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.test_baton_on_stack import start_stack
from worker.cli import main
from worker.local.site import LatencyProfile, Site, SiteConfig
from worker.local.stack import EmbeddedStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with Site(
        SiteConfig(pages=60, page_bytes=(1_000, 2_000), latency=LatencyProfile(median_s=0.05))
    ) as running:
        yield running


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedStack]:
    running = start_stack(tmp_path)
    for name, value in running.client_environment().items():
        monkeypatch.setenv(name, value)
    yield running
    running.stop()


def baton(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_list(tmp_path: Path, urls: list[str], name: str = "list.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(u) + "\n" for u in urls))
    return path


def test_cli_submit_watch_follows_the_run_to_done(
    stack: EmbeddedStack, site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = baton(capsys, "submit", str(write_list(tmp_path, site.urls())), "--watch")
    assert code == 0
    assert "uploaded s3://" in out
    summary = json.loads(out[out.index("{") :])
    assert (summary["status"], summary["processed"]) == ("done", 60)


def test_cli_status_results_and_runs_describe_a_finished_run(
    stack: EmbeddedStack, site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baton(capsys, "submit", str(write_list(tmp_path, site.urls()[:20])), "--watch")
    _, out, _ = baton(capsys, "runs", "--json")
    (run,) = [json.loads(line) for line in out.splitlines()]
    run_id = run["run_id"]
    _, out, _ = baton(capsys, "status", run_id, "--json")
    status = json.loads(out)
    assert (status["status"], status["position"], status["total"]) == ("done", 20, 20)
    _, out, _ = baton(capsys, "results", run_id)
    assert sorted(json.loads(line)["index"] for line in out.splitlines()) == list(range(20))
    _, out, _ = baton(capsys, "results", run_id, "--presign", "--expires", "60")
    manifest = requests.get(out.strip(), timeout=10)
    assert manifest.status_code == 200
    assert len(manifest.content.splitlines()) == 20


def test_cli_cancel_stops_a_running_run(
    stack: EmbeddedStack, site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slow = write_list(tmp_path, site.urls() * 10)
    _, out, _ = baton(capsys, "submit", str(slow))
    run_id = out.split("run ")[-1].strip()
    code, out, _ = baton(capsys, "cancel", run_id)
    assert code == 0
    assert "cancel requested" in out
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, out, _ = baton(capsys, "status", run_id, "--json")
        if json.loads(out)["status"] != "running":
            break
        time.sleep(0.2)
    status = json.loads(out)
    assert status["status"] == "cancelled"
    assert status["position"] < 600


def test_cli_start_and_resume_by_hand(
    stack: EmbeddedStack, site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3: Any = stack.s3_client()
    try:
        s3.put_object(
            Bucket=stack.bucket, Key="lists/hand.json", Body=json.dumps(site.urls()[:30]).encode()
        )
    finally:
        s3.close()
    code, out, _ = baton(capsys, "start", "lists/hand.json", "--position", "10", "--watch")
    assert code == 0
    run_id = out.split()[1]
    code, out, _ = baton(capsys, "resume", run_id, "--position", "20", "--watch")
    assert code == 0
    summary = json.loads(out[out.index("{") :])
    assert (summary["status"], summary["processed"], summary["start_position"]) == ("done", 20, 10)


def test_cli_errors_are_clear_and_exit_2(
    stack: EmbeddedStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = baton(capsys, "status", "no-such-run-000000000000")
    assert code == 2
    assert "no run 'no-such-run-000000000000'" in err
    code, _, err = baton(capsys, "submit", str(tmp_path / "missing.jsonl"))
    assert code == 2
    assert "is not a file" in err


def test_cli_without_a_bucket_says_how_to_name_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BATON_BUCKET", raising=False)
    code, _, err = baton(capsys, "runs")
    assert code == 2
    assert "pass --bucket or set BATON_BUCKET" in err
