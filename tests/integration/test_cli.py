"""The `baton` CLI against the embedded stack, through real boto3 clients over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from baton.cli import main
from devstack.site import LatencyProfile, Site, SiteConfig
from devstack.stack import EmbeddedStack
from tests.integration.test_baton_on_stack import start_stack
from worker.progress import EXIT_CODES

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
    path = write_list(tmp_path, site.urls())
    code, out, _ = baton(capsys, "submit", str(path), "--watch", "--json")
    assert code == 0
    assert "uploaded s3://" in out
    summary = json.loads(out[out.index("{") :])
    assert (summary["status"], summary["processed"]) == ("done", 60)


def test_cli_watch_piped_writes_a_line_per_change_and_a_summary_for_people(
    stack: EmbeddedStack, site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = baton(capsys, "submit", str(write_list(tmp_path, site.urls())), "--watch")
    assert code == 0
    progress = [line for line in out.splitlines() if " legs " in line and "[" in line]
    assert len(progress) == len(set(progress))  # nothing repeated while the run stood still
    assert progress[-1].split()[1] == "done"
    assert "done: 60 tasks, 60 ok, 0 failed" in out
    assert "{" not in out


def test_cli_status_results_and_runs_describe_a_finished_run(
    stack: EmbeddedStack, site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baton(capsys, "submit", str(write_list(tmp_path, site.urls()[:20])), "--watch")
    _, out, _ = baton(capsys, "runs", "--json")
    (run,) = [json.loads(line) for line in out.splitlines()]
    run_id = run["run_id"]
    _, out, _ = baton(capsys, "status", run_id, "--json")
    status = json.loads(out)
    assert (status["status"], status["done"], status["total"]) == ("done", 20, 20)
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
    assert status["done"] < 600


def put_list(stack: EmbeddedStack, key: str, urls: list[str]) -> None:
    s3: Any = stack.s3_client()
    try:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=json.dumps(urls).encode())
    finally:
        s3.close()


def test_cli_start_at_a_position_then_again_starts_a_new_run_and_says_so(
    stack: EmbeddedStack, site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    put_list(stack, "lists/hand.json", site.urls()[:30])
    code, out, _ = baton(capsys, "start", "lists/hand.json", "--position", "10", "--watch")
    assert code == 0
    run_id = out.split()[1]
    assert "done: 20 tasks, 20 ok" in out

    code, out, _ = baton(capsys, "start", "lists/hand.json", "--watch", "--json")

    assert code == 0
    assert out.split()[1] != run_id
    assert f"note: run {run_id} of this list is done; this start is a new run" in out
    summary = json.loads(out[out.index("{") :])
    assert (summary["processed"], summary["start_position"]) == (30, 0)


def test_cli_resume_of_a_cancelled_run_finishes_it(
    stack: EmbeddedStack, site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    put_list(stack, "lists/cancel.json", site.urls() * 5)
    _, out, _ = baton(capsys, "start", "lists/cancel.json")
    run_id = out.split()[1]
    baton(capsys, "cancel", run_id)
    code, _, _ = baton(capsys, "status", run_id, "--watch")
    assert code == 5

    code, out, _ = baton(capsys, "resume", run_id, "--watch", "--json")

    assert code == 0
    assert f"run {run_id} resuming at position" in out
    summary = json.loads(out[out.index("{") :])
    assert (summary["status"], summary["processed"]) == ("done", 300)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--position", "99999"], "the function refused: position 99999 is past the end"),
        (["--position", "-1"], "-1 is negative: positions start at 0"),
        (["--position", "x"], "'x' is not a whole number"),
    ],
)
def test_cli_start_that_the_function_or_the_parser_refuses_exits_2_with_the_reason(
    stack: EmbeddedStack,
    site: Site,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    put_list(stack, "lists/refused.json", site.urls()[:5])
    try:
        code, _, err = baton(capsys, "start", "lists/refused.json", *args)
    except SystemExit as exc:  # argparse's own refusal
        code, err = int(str(exc.code)), capsys.readouterr().err
    assert code == 2
    assert message in err


def test_cli_resume_of_a_live_run_exits_2_with_the_functions_message(
    stack: EmbeddedStack, site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    put_list(stack, "lists/live.json", site.urls() * 5)
    _, out, _ = baton(capsys, "start", "lists/live.json")
    run_id = out.split()[1]

    code, out, err = baton(capsys, "resume", run_id)

    assert code == 2
    assert f"the function refused: run {run_id} is live" in err
    assert "resuming" not in out
    baton(capsys, "cancel", run_id)


def test_cli_status_watch_of_an_unknown_run_fails_at_once(
    stack: EmbeddedStack, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code, _, err = baton(capsys, "status", "no-such-run-000000000000", "--watch")
    assert code == 2
    assert "no run 'no-such-run-000000000000'" in err
    assert time.monotonic() - started < 10


def test_cli_submit_of_an_invalid_list_says_what_is_wrong_and_uploads_nothing(
    stack: EmbeddedStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('["https://a.example/", "https://b.exa')
    code, out, err = baton(capsys, "submit", str(bad))
    assert code == 2
    assert f"{bad}: task list is not valid JSON" in err
    assert out == ""
    s3: Any = stack.s3_client()
    try:
        assert s3.list_objects_v2(Bucket=stack.bucket, Prefix="tasks/")["KeyCount"] == 0
    finally:
        s3.close()


def test_cli_submit_again_of_the_same_file_follows_the_new_run(
    stack: EmbeddedStack, site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_list(tmp_path, site.urls()[:5])
    _, first, _ = baton(capsys, "submit", str(path), "--watch")
    code, second, _ = baton(capsys, "submit", str(path), "--watch")
    first_run = first.split("\nrun ")[1].split()[0]
    second_run = second.split("\nrun ")[1].split()[0]
    assert code == 0
    assert first_run != second_run
    assert f"{second_run}  done" in second


def test_cli_run_whose_tasks_were_all_refused_by_the_guard_does_not_look_like_success(
    tmp_path: Path, site: Site, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    guarded = start_stack(tmp_path, BATON_ALLOW_NETS="")
    try:
        for name, value in guarded.client_environment().items():
            monkeypatch.setenv(name, value)
        path = write_list(tmp_path, site.urls()[:4])
        code, out, _ = baton(capsys, "submit", str(path), "--watch")
    finally:
        guarded.stop()
    assert code == 3
    assert "done: 4 tasks, 0 ok, 4 failed (blocked x4)" in out
    assert "BATON_ALLOW_NETS" in out


def test_cli_results_into_a_pipe_closed_early_exits_quietly(
    stack: EmbeddedStack, site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baton(capsys, "submit", str(write_list(tmp_path, site.urls())), "--watch")
    _, out, _ = baton(capsys, "runs", "--json")
    run_id = json.loads(out.splitlines()[0])["run_id"]
    done = subprocess.run(
        f"{sys.executable} -m baton results {run_id} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0
    assert json.loads(done.stdout)["index"] == 0
    assert "Traceback" not in done.stderr
    assert "BrokenPipe" not in done.stderr


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
    assert "pass --bucket, set BATON_BUCKET" in err


def run_baton(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "baton", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_cli_stack_up_detached_is_found_by_every_command_without_flags(
    site: Site, tmp_path: Path
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_ENDPOINT_URL", "BATON_")) and k not in ("AWS_PROFILE",)
    }
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    write_list(tmp_path, site.urls()[:10])
    up = run_baton(
        "stack",
        "up",
        "--detach",
        "--s3-port",
        "0",
        "--lambda-port",
        "0",
        "--allow-loopback",
        cwd=tmp_path,
        env=env,
    )
    try:
        assert up.returncode == 0, up.stderr
        assert "stack up in the background" in up.stdout
        submitted = run_baton("submit", "list.jsonl", "--watch", cwd=tmp_path, env=env)
        assert submitted.returncode == 0, submitted.stderr
        assert "done: 10 tasks, 10 ok, 0 failed" in submitted.stdout
        exports = run_baton("stack", "env", cwd=tmp_path, env=env).stdout
        assert "export AWS_ENDPOINT_URL_S3=http://127.0.0.1:" in exports
        assert "export BATON_BUCKET=baton-local" in exports
        again = run_baton("stack", "up", "--detach", cwd=tmp_path, env=env)
        assert again.returncode == 2
        assert "already running here" in again.stderr
    finally:
        down = run_baton("stack", "down", cwd=tmp_path, env=env)
    assert down.returncode == 0, down.stderr
    assert "stack stopped" in down.stdout
    assert not (tmp_path / ".baton" / "stack.json").exists()
    after = run_baton("runs", cwd=tmp_path, env=env)
    assert after.returncode == 2
    assert "no bucket" in after.stderr


def test_cli_local_exits_3_when_the_run_finished_with_failed_tasks(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_list(tmp_path, [*site.urls()[:3], site.base_url + "/no-such-page"])
    code, _, _ = baton(capsys, "local", str(path), "--allow-loopback")
    assert code == EXIT_CODES["failed_tasks"] == 3
