"""Prefix runs end to end on the embedded stack: listing in legs over HTTP, the CLI, specs,
and a presigned manifest whose URLs download the right bytes."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from baton.cli import main
from devstack.stack import EmbeddedStack
from tests.integration.test_baton_on_stack import start_stack
from tests.integration.test_fanout_on_stack import wait_for
from worker.store import RunStore

pytestmark = pytest.mark.integration

SMALL = 300
BIG_BYTES = 6 * 1024 * 1024 + 123
PREFIX = "reports/2026/04/"


def small_body(i: int) -> bytes:
    return f"report {i}\n".encode() * (i % 7 + 1)


def big_body() -> bytes:
    return hashlib.sha256(b"seed").digest() * (BIG_BYTES // 32) + b"x" * (BIG_BYTES % 32)


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedStack]:
    running = start_stack(
        tmp_path,
        BATON_LIST_PAGE_SIZE="40",
        BATON_SEGMENT_PAGES="2",
    )
    for name, value in running.client_environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BATON_RESULTS_PREFIX", raising=False)
    yield running
    running.stop()


@pytest.fixture
def seeded(stack: EmbeddedStack) -> dict[str, bytes]:
    """A few hundred small objects and one of several MB under PREFIX, and one outside it."""
    s3 = stack.s3_client()
    objects = {f"{PREFIX}r{i:04d}.txt": small_body(i) for i in range(SMALL)}
    objects[f"{PREFIX}big.bin"] = big_body()
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda item: s3.put_object(Bucket=stack.bucket, Key=item[0], Body=item[1]),
                objects.items(),
            )
        )
    s3.put_object(Bucket=stack.bucket, Key="reports/2026/05/other.txt", Body=b"not in the run")
    time.sleep(1.1)  # S3 keeps whole seconds: the run must start a second after these
    return objects


def baton(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def run_id_of(out: str) -> str:
    line = next(line for line in out.splitlines() if line.startswith("run "))
    return line.split()[1]


def test_baton_start_prefix_presigns_every_object_and_its_manifest_urls_download_them(
    stack: EmbeddedStack, seeded: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = baton(
        capsys, "start", "--prefix", f"s3://{stack.bucket}/{PREFIX}", "--chains", "3", "--watch"
    )
    assert code == 0, out
    run_id = run_id_of(out)
    assert f"done: {len(seeded)} tasks, {len(seeded)} ok, 0 failed" in out, out
    code, url = baton(capsys, "results", run_id, "--presign")
    assert code == 0
    manifest = requests.get(url.strip(), timeout=30)
    assert manifest.status_code == 200
    lines = [json.loads(line) for line in manifest.text.splitlines()]
    assert [line["key"] for line in lines] == sorted(seeded)  # every object once, in order
    for line in [lines[0], lines[1], *(x for x in lines if x["key"].endswith("big.bin"))]:
        got = requests.get(line["url"], timeout=30)
        assert got.status_code == 200
        assert got.content == seeded[line["key"]]
        assert got.headers["ETag"] == line["etag"]
        assert line["size"] == len(seeded[line["key"]])
    code, status = baton(capsys, "status", run_id)
    assert "presigned.jsonl: s3://" in status
    store = RunStore.over(stack.s3_client(), stack.bucket, "runs/")
    summary = store.load_summary(run_id)
    assert summary is not None
    assert summary["listing"]["segments"] >= 4  # 301 keys, 80 a segment: listed in pieces
    [notice] = wait_for("a notice", lambda: stack.notices(wait_s=1))
    assert notice["detail"]["presigned_key"] == f"runs/{run_id}/presigned.jsonl"
    assert "https://" not in json.dumps(notice["detail"])


def test_sha256_prefix_run_streams_every_object_big_ones_in_ranges(
    stack: EmbeddedStack, seeded: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = baton(
        capsys,
        "start",
        "--prefix",
        f"s3://{stack.bucket}/{PREFIX}",
        "--processor",
        "sha256",
        "--watch",
    )
    assert code == 0, out
    store = RunStore.over(stack.s3_client(), stack.bucket, "runs/")
    rows = {row["id"]: row for row in store.rows(run_id_of(out))}
    assert set(rows) == set(seeded)
    for key, data in seeded.items():
        assert (rows[key]["sha256"], rows[key]["bytes"]) == (
            hashlib.sha256(data).hexdigest(),
            len(data),
        )
    assert rows[f"{PREFIX}big.bin"]["requests"] == 1  # 6 MiB: one 8 MiB range
    assert sorted(row["index"] for row in rows.values()) == list(range(len(seeded)))


def upload_spec(stack: EmbeddedStack, key: str, body: bytes) -> tuple[RunStore, str]:
    s3 = stack.s3_client()
    etag = s3.put_object(Bucket=stack.bucket, Key=key, Body=body)["ETag"]
    store = RunStore.over(s3, stack.bucket, "runs/")
    runs = wait_for("a run of the spec", lambda: store.runs_for_source(key, etag), 30)
    return store, runs[0]


def test_uploading_a_prefix_spec_starts_a_run(
    stack: EmbeddedStack, seeded: dict[str, bytes]
) -> None:
    spec = json.dumps({"prefix": PREFIX, "suffix": "7.txt", "processor": "sha256"}).encode()
    store, run_id = upload_spec(stack, "tasks/april.prefix.json", spec)
    summary = wait_for("a summary", lambda: store.load_summary(run_id), 90)
    expected = sorted(k for k in seeded if k.endswith("7.txt"))
    assert (summary["status"], summary["total"], summary["ok"]) == ("done", len(expected), 30)
    assert [row["id"] for row in store.rows(run_id)] == expected


def test_a_bad_prefix_spec_fails_its_run_with_the_reason(stack: EmbeddedStack) -> None:
    store, run_id = upload_spec(
        stack, "tasks/bad.prefix.json", json.dumps({"prefix": PREFIX, "presign_s": 10**9}).encode()
    )
    summary: Any = wait_for("a summary", lambda: store.load_summary(run_id), 30)
    assert summary["status"] == "failed"
    assert "at most 7 days" in summary["reason"]


def test_start_prefix_refuses_a_loop_with_the_functions_own_reason(
    stack: EmbeddedStack, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["start", "--prefix", f"s3://{stack.bucket}/runs/"])
    err = capsys.readouterr().err
    assert code == 2
    assert "the function refused" in err
    assert "own run state" in err
