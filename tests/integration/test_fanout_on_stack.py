"""Fan-out end to end on the embedded stack: chains over S3 on HTTP, notices delivered for real."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.site import LatencyProfile, Site, SiteConfig
from devstack.stack import EmbeddedStack
from devstack.webhook import WebhookReceiver
from tests.integration.test_baton_on_stack import result_indices, start_stack
from worker.notice import DETAIL_TYPE, SOURCE
from worker.start import CHAINS_METADATA
from worker.store import RunStore

pytestmark = pytest.mark.integration

PAGES = 80
SECRET = "shared-secret"


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    config = SiteConfig(
        pages=PAGES, seed=5, page_bytes=(1_000, 4_000), latency=LatencyProfile(median_s=0.05)
    )
    with Site(config) as running:
        yield running


def submit(stack: EmbeddedStack, urls: list[str], chains: int) -> tuple[Any, RunStore, str]:
    """Upload the list with its chains in the metadata, as `baton submit --chains` does."""
    s3 = stack.s3_client()
    body = "".join(json.dumps(url) + "\n" for url in urls).encode()
    key = "tasks/fanout.jsonl"
    etag = s3.put_object(
        Bucket=stack.bucket, Key=key, Body=body, Metadata={CHAINS_METADATA: str(chains)}
    )["ETag"]
    store = RunStore.over(s3, stack.bucket, "runs/")
    deadline = time.monotonic() + 30
    while not (runs := store.runs_for_source(key, etag)):
        assert time.monotonic() < deadline, "the upload started no run"
        time.sleep(0.2)
    return s3, store, runs[0]


def wait_for(what: str, check: Any, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout_s} s")


def test_fanned_out_upload_writes_every_index_once_and_sends_one_eventbridge_notice(
    tmp_path: Path, site: Site
) -> None:
    stack = start_stack(tmp_path)
    try:
        s3, store, run_id = submit(stack, site.urls(), chains=4)
        summary = wait_for("a summary", lambda: store.load_summary(run_id))
        notices = wait_for("a notice", lambda: stack.notices(wait_s=1))
        time.sleep(1.5)  # a second notice would have been sent by now
        notices += stack.notices()
        indices = result_indices(store, run_id)
        s3.close()
    finally:
        stack.stop()

    assert sorted(indices) == list(range(PAGES))
    assert (summary["status"], summary["chains"], summary["processed"]) == ("done", 4, PAGES)
    [notice] = notices
    assert (notice["source"], notice["detail-type"]) == (SOURCE, DETAIL_TYPE)
    assert notice["detail"]["run_id"] == run_id
    assert notice["detail"]["manifest_key"] == f"runs/{run_id}/manifest.json"
    assert "url" not in json.dumps(notice["detail"])


def test_fanned_out_run_manifest_lists_every_results_object_in_index_order(
    tmp_path: Path, site: Site
) -> None:
    stack = start_stack(tmp_path)
    try:
        s3, store, run_id = submit(stack, site.urls(), chains=3)
        manifest = wait_for("a manifest", lambda: store.load_manifest(run_id))
        s3.close()
    finally:
        stack.stop()

    objects = manifest["results"] + manifest["holes"]
    covered = sorted(i for entry in objects for i in range(entry["first"], entry["last"] + 1))
    assert covered == list(range(PAGES))
    firsts = [entry["first"] for entry in manifest["results"]]
    assert firsts == sorted(firsts)
    assert manifest["rows"] == PAGES


def test_presign_setting_puts_working_urls_in_the_manifest_and_the_notice(
    tmp_path: Path, site: Site
) -> None:
    stack = start_stack(tmp_path, BATON_PRESIGN_S="600")
    try:
        s3, store, run_id = submit(stack, site.urls()[:20], chains=2)
        manifest = wait_for("a manifest", lambda: store.load_manifest(run_id))
        [notice] = wait_for("a notice", lambda: stack.notices(wait_s=1))
        rows = requests.get(manifest["results"][0]["url"], timeout=10).text.splitlines()
        listed = requests.get(notice["detail"]["manifest_url"], timeout=10).json()
        s3.close()
    finally:
        stack.stop()

    assert json.loads(rows[0])["index"] == manifest["results"][0]["first"]
    assert listed["run_id"] == run_id


def test_fanned_out_run_posts_one_signed_webhook_notice(tmp_path: Path, site: Site) -> None:
    with WebhookReceiver(SECRET) as hook:
        url = hook.url
        stack = start_stack(tmp_path, BATON_WEBHOOK_URL=url, BATON_WEBHOOK_SECRET=SECRET)
        try:
            s3, store, run_id = submit(stack, site.urls(), chains=4)
            wait_for("a webhook notice", lambda: hook.received)
            record = wait_for("notice.json", lambda: store.load_notice(run_id))
            s3.close()
        finally:
            stack.stop()

    [received] = hook.received
    assert (received.run_id, received.signed) == (run_id, True)
    assert received.detail["status"] == "done"
    assert f"webhook:{url}" in record["targets"]


def test_a_notice_the_webhook_refused_is_sent_again_by_the_sweep(
    tmp_path: Path, site: Site
) -> None:
    with WebhookReceiver(SECRET, status=503) as hook:
        stack = start_stack(tmp_path, BATON_WEBHOOK_URL=hook.url, BATON_WEBHOOK_SECRET=SECRET)
        try:
            s3, store, run_id = submit(stack, site.urls()[:30], chains=2)
            wait_for("a summary", lambda: store.load_summary(run_id))
            wait_for("a refused notice", lambda: hook.received)
            assert store.load_notice(run_id) is None
            hook.status = 204
            record = wait_for("notice.json after a sweep", lambda: store.load_notice(run_id))
            s3.close()
        finally:
            stack.stop()

    assert all(r.run_id == run_id and r.signed for r in hook.received)
    assert len(hook.received) >= 2
    assert record["detail"]["run_id"] == run_id
