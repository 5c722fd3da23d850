"""baton end to end on the embedded stack: S3 over HTTP, the local Lambda runtime, a real site."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.demo import LegLog, LocalRun
from devstack.site import LatencyProfile, Site, SiteConfig
from devstack.stack import EmbeddedStack
from worker.checkpoint import TERMINAL
from worker.store import RunStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    config = SiteConfig(
        pages=120,
        seed=3,
        page_bytes=(2_000, 8_000),
        broken_share=0.05,
        retry_after_s=0,
        latency=LatencyProfile(median_s=0.1),
    )
    with Site(config) as running:
        yield running


def start_stack(tmp_path: Path, timeout_s: float = 2.0, **env: str) -> EmbeddedStack:
    bucket = f"baton-it-{time.time_ns() % 10**12}"
    function = LocalRun(timeout_s=timeout_s, margin_ms=600).function(bucket)
    environment = {**function.environment, "BATON_BATCH_SIZE": "10", **env}
    function = type(function)(**{**function.__dict__, "environment": environment})
    return EmbeddedStack(
        function, bucket=bucket, log_file=tmp_path / "containers.log", sweep_interval_s=1.0
    ).start()


def upload(stack: EmbeddedStack, s3: Any, key: str, tasks: list[Any]) -> str:
    body = "".join(json.dumps(t) + "\n" for t in tasks).encode()
    return str(s3.put_object(Bucket=stack.bucket, Key=key, Body=body)["ETag"])


def wait_for_end(store: RunStore, key: str, etag: str, timeout_s: float = 90) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = store.runs_for_source(key, etag)
        # The finishing leg writes the summary just after its final CAS.
        if (
            runs
            and store.load_checkpoint(runs[0]).checkpoint.status in TERMINAL
            and store.load_summary(runs[0]) is not None
        ):
            return runs[0]
        time.sleep(0.2)
    raise AssertionError(f"run of {key} did not end within {timeout_s} s")


def result_indices(store: RunStore, run_id: str) -> list[int]:
    return [row["index"] for row in store.rows(run_id)]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbeddedStack]:
    running = start_stack(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def s3(stack: EmbeddedStack) -> Iterator[Any]:
    client = stack.s3_client()
    yield client
    client.close()


def test_stack_upload_runs_a_multi_leg_run_to_done_exactly_once(
    stack: EmbeddedStack, s3: Any, site: Site
) -> None:
    etag = upload(stack, s3, "tasks/site.jsonl", site.urls())
    store = RunStore.over(s3, stack.bucket, "runs/")
    run_id = wait_for_end(store, "tasks/site.jsonl", etag)
    summary = store.load_summary(run_id)
    assert summary is not None
    assert summary["status"] == "done"
    assert summary["legs"] >= 3
    assert summary["ok"] + summary["failed"] == 120
    assert sorted(result_indices(store, run_id)) == list(range(120))
    row = next(r for r in store.rows(run_id) if r["index"] == 0)
    assert row["title"] == site.page(0).title


def test_stack_warm_containers_revalidate_the_task_list_with_304s(
    stack: EmbeddedStack, s3: Any, site: Site, tmp_path: Path
) -> None:
    etag = upload(stack, s3, "tasks/site.jsonl", site.urls())
    wait_for_end(RunStore.over(s3, stack.bucket, "runs/"), "tasks/site.jsonl", etag)
    stack.runtime.wait_idle(10)
    legs = LegLog(tmp_path / "containers.log")
    legs.poll()
    stats = stack.runtime.stats(stack.function.name)
    assert stats.warm_starts > 0
    hits = [leg["cache_hit"] for leg in legs.legs]
    assert hits.count(False) <= stats.cold_starts  # one download per cold container at most
    assert hits.count(True) >= len(hits) - stats.cold_starts


def test_stack_manual_invoke_starts_a_run_at_a_position(
    stack: EmbeddedStack, s3: Any, site: Site
) -> None:
    key = "tasks/manual.json"
    body = json.dumps(site.urls()[:40]).encode()
    etag = s3.put_object(Bucket=stack.bucket, Key=key + ".upload", Body=body)["ETag"]
    s3.copy_object(
        Bucket=stack.bucket,
        Key="lists/manual.json",
        CopySource={"Bucket": stack.bucket, "Key": key + ".upload"},
    )
    client = stack.lambda_client()
    try:
        response = client.invoke(
            FunctionName=stack.function.name,
            InvocationType="Event",
            Payload=json.dumps(
                {"bucket": stack.bucket, "key": "lists/manual.json", "position": 25}
            ).encode(),
        )
    finally:
        client.close()
    assert response["StatusCode"] == 202
    store = RunStore.over(s3, stack.bucket, "runs/")
    run_id = wait_for_end(store, "lists/manual.json", etag)
    assert sorted(result_indices(store, run_id)) == list(range(25, 40))
    summary = store.load_summary(run_id)
    assert summary is not None
    assert (summary["start_position"], summary["processed"]) == (25, 15)


def test_stack_leg_killed_at_its_timeout_is_retried_and_nothing_is_lost(
    tmp_path: Path, site: Site
) -> None:
    stack = start_stack(
        tmp_path, timeout_s=3.0, BATON_PROCESSOR="tests.integration.processors:hang_once"
    )
    s3 = stack.s3_client()
    try:
        marker = tmp_path / "hung"
        tasks: list[Any] = [{"url": url} for url in site.urls()[:60]]
        tasks[33]["hang_marker"] = str(marker)
        etag = upload(stack, s3, "tasks/hang.jsonl", tasks)
        store = RunStore.over(s3, stack.bucket, "runs/")
        run_id = wait_for_end(store, "tasks/hang.jsonl", etag)
        stats = stack.runtime.stats(stack.function.name)
        summary = store.load_summary(run_id)
        indices = result_indices(store, run_id)
    finally:
        s3.close()
        stack.stop()
    assert marker.exists()
    assert stats.timeouts >= 1  # the hang; a leg slowed down by a loaded machine may add one
    assert stats.retries >= 1
    assert summary is not None
    assert summary["status"] == "done"
    assert sorted(indices) == list(range(60))
