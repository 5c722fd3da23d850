"""Completion, once: when every chain has finished, one leg writes the run's summary.

The check lists the chains' done markers *before* the chains themselves: a chain
that splits off a range creates the range's checkpoint before the chain's own
done marker, so any range that exists when a chain is marked done is seen by a
later listing of the chains. If every chain listed has a marker, no range is
left. Then `summary.json` is written with `IfNoneMatch="*"`: the one leg (or
sweep) whose write wins writes `manifest.json` and sends the completion notice;
`notice.json` records that it went out, and the sweep repairs a winner that died
between those steps.

A start may resume a stopped run while a leg completes it. So the winner reads the
chains again after its summary lands and takes the summary back if one moved (the
resume's swaps come before it clears the completion), and drops the run's active
marker only if no resume marked the run again since the completion read it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Any

from worker.checkpoint import Checkpoint, RunStatus
from worker.exceptions import BatonError
from worker.notice import NoticeError, Notifier
from worker.store import LAYOUT_VERSION, RunRecord, RunStore, Versioned
from worker.summary import summarize

log = logging.getLogger(__name__)


def finished_chains(
    store: RunStore, record: RunRecord, io: Executor | None = None
) -> list[Checkpoint] | None:
    """Every chain's final checkpoint when all have finished, else None; read on `io` (the
    container's small-read pool) side by side, since the completing leg reads every chain."""
    if record.version < LAYOUT_VERSION:
        cp = store.load_checkpoint(record.run_id).checkpoint
        return [cp] if cp.finished else None
    done = store.done_chains(record.run_id)
    chains = store.chain_ids(record.run_id)
    if not chains or not set(chains) <= done:
        return None

    def load(chain: str) -> Versioned:
        return store.load_checkpoint(record.run_id, chain)

    def read() -> list[Versioned]:
        return list(io.map(load, chains)) if io is not None else [load(c) for c in chains]

    found = read()
    checkpoints = [v.checkpoint for v in found]
    for cp in checkpoints:
        if not cp.finished:  # a marker written from a read made before a resume reopened it
            log.warning(
                "run %s: chain %s is marked done but %s", record.run_id, cp.chain, cp.status
            )
            store.clear_chain_done(record.run_id, cp.chain)  # the sweep sees it again
    if not all(cp.finished for cp in checkpoints):
        return None
    crawl = record.crawl is not None and len(chains) > 1
    all_done = all(cp.status is RunStatus.DONE for cp in checkpoints)
    if crawl and all_done and not _crawl_quiet(store, record, found, read):
        return None
    return checkpoints


def _crawl_quiet(
    store: RunStore,
    record: RunRecord,
    found: list[Versioned],
    read: Callable[[], list[Versioned]],
) -> bool:
    """Every crawl chain ended done, and no links wait for any of them: no inbox holds an
    object, and no checkpoint changed while the inboxes were listed (a chain woken in
    between, for links sent before its sender ended, would otherwise be missed)."""
    if store.chains_with_mail(record.run_id):
        return False  # the sender wakes the chain, or the sweep does
    return [v.etag for v in read()] == [v.etag for v in found]


def try_complete(
    store: RunStore,
    record: RunRecord,
    notifier: Notifier,
    at_ms: int,
    presign_s: int = 0,
    *,
    architecture: str = "",
    io: Executor | None = None,
) -> dict[str, Any] | None:
    """Complete the run if every chain has finished; the summary if this call wrote it.
    `architecture` (the setting) prices a run whose run.json pinned no prices."""
    chains = finished_chains(store, record, io)
    if chains is None:
        return None
    summary = summarize(chains, record, store, architecture=architecture)
    active = store.active_since(record.run_id)
    if not store.create_summary(record.run_id, summary):
        found = store.load_summary(record.run_id)
        if found is None or not stale(found, summary):
            return None  # another leg (or the sweep) completed it
        # A summary of the ending before a resume, whose writer died before it could
        # take it back: it goes, and this completion writes the run's.
        store.withdraw_summary(record.run_id, found)
        if not store.create_summary(record.run_id, summary):
            return None
    if _moved(store, record, chains, io):
        store.withdraw_summary(record.run_id, summary)
        log.warning("run %s: a chain was resumed while it completed; not complete", record.run_id)
        return None
    log.info(
        "run %s %s: %s tasks, %s ok, %s failed, in %s chains",
        record.run_id,
        summary["status"],
        summary["processed"],
        summary["ok"],
        summary["failed"],
        len(chains),
        extra={"event": "run_finished", "run_id": record.run_id, "status": summary["status"]},
    )
    publish(store, record, summary, notifier, at_ms, presign_s=presign_s, active=active)
    return summary


STATED = ("status", "processed", "ok", "failed")
"""What a summary states about the run; two completions of one ending agree on them."""


def stale(found: dict[str, Any], chains_say: dict[str, Any]) -> bool:
    """Whether a summary (or a notice's detail) in place says another ending than the
    chains do now, on what both state."""
    both = [field for field in STATED if field in found and field in chains_say]
    return any(found[field] != chains_say[field] for field in both)


def _moved(
    store: RunStore, record: RunRecord, chains: list[Checkpoint], io: Executor | None
) -> bool:
    """Whether any chain's checkpoint is not as the completion read it."""

    def load(cp: Checkpoint) -> Checkpoint:
        return store.load_checkpoint(record.run_id, cp.chain).checkpoint

    again = list(io.map(load, chains)) if io is not None else [load(cp) for cp in chains]
    return again != chains


def publish(
    store: RunStore,
    record: RunRecord,
    summary: dict[str, Any],
    notifier: Notifier,
    at_ms: int,
    *,
    presign_s: int = 0,
    active: int | None,
) -> bool:
    """The manifest, then the notice; True once the notice is recorded as sent. `active`:
    the run's active marker as read before the summary (`RunStore.mark_inactive`)."""
    presigned_key = write_presigned(store, record)
    listed = manifest(store, record, summary, presign_s)
    if presigned_key is not None:
        listed["presigned"] = presigned_key
    manifest_key = store.put_manifest(record.run_id, listed)
    detail = notice_detail(store, record, summary, manifest_key)
    if presigned_key is not None:
        detail["presigned_key"] = presigned_key
    if presign_s:  # the opt-in: URLs are bearer credentials
        detail["manifest_url"] = store.objects.presign(record.bucket, manifest_key, presign_s)
        if presigned_key is not None:
            detail["presigned_url"] = store.objects.presign(record.bucket, presigned_key, presign_s)
    try:
        targets = notifier.send(detail)
    except NoticeError as exc:
        log.warning(
            "run %s: completion notice not sent (%s); the sweep retries", record.run_id, exc
        )
        return False
    store.put_notice(record.run_id, {"sent_ms": at_ms, "targets": targets, "detail": detail})
    store.mark_inactive(record.run_id, active)
    return True


def write_presigned(store: RunStore, record: RunRecord) -> str | None:
    """A `presign` prefix run's `presigned.jsonl`: a `{key, url, size, etag}` line per object
    presigned, in index order, streamed from the results (a multipart upload past 8 MiB),
    never held whole. Rewritten the same by a repair. None for other runs."""
    if (record.listing or {}).get("processor") != "presign":
        return None
    key = store.presigned_key(record.run_id)
    store.objects.put_stream(record.bucket, key, presigned_lines(store, record.run_id))
    return key


def presigned_lines(store: RunStore, run_id: str) -> Iterator[bytes]:
    for row in store.rows(run_id):
        if row.get("error") or not row.get("presigned_url"):
            continue  # its row says why: changed, deleted, or not an object
        line = {"key": row["key"], "url": row["presigned_url"], "size": row["size"]}
        line["etag"] = row["etag"]
        yield json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def manifest(
    store: RunStore, record: RunRecord, summary: dict[str, Any], presign_s: int = 0
) -> dict[str, Any]:
    """Every results object in index order (and the objects of holes), with the counts;
    with `presign_s`, a URL for each that works without AWS credentials until it expires."""

    def objects(keys: Any) -> list[dict[str, Any]]:
        listed = [{"key": key, "first": first, "last": last} for first, last, key in keys]
        for entry in listed if presign_s else []:
            entry["url"] = store.objects.presign(record.bucket, entry["key"], presign_s)
        return listed

    return {
        "run_id": record.run_id,
        "status": summary["status"],
        "bucket": record.bucket,
        "total": summary["total"],
        "rows": summary["processed"],
        "ok": summary["ok"],
        "failed": summary["failed"],
        "summary": store.run_prefix(record.run_id) + "summary.json",
        "results": objects(store.result_keys(record.run_id)),
        "holes": objects(store.hole_keys(record.run_id)),
    }


def notice_detail(
    store: RunStore, record: RunRecord, summary: dict[str, Any], manifest_key: str
) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "status": summary["status"],
        "reason": summary["reason"],
        "bucket": record.bucket,
        "source": summary["source"],
        "total": summary["total"],
        "ok": summary["ok"],
        "failed": summary["failed"],
        "chains": record.chains,
        "duration_s": summary["duration_s"],
        "summary_key": store.run_prefix(record.run_id) + "summary.json",
        "manifest_key": manifest_key,
    }


def repair(
    store: RunStore,
    record: RunRecord,
    notifier: Notifier,
    at_ms: int,
    *,
    presign_s: int = 0,
    resend_after_ms: int = 0,
    architecture: str = "",
    io: Executor | None = None,
) -> str | None:
    """What the sweep does for a run whose completion a leg did not see through.

    A notice is sent again only `resend_after_ms` after the run finished: until then
    the completing leg may still be sending it, and a second copy helps nobody.
    """
    active = store.active_since(record.run_id)
    summary = store.load_summary(record.run_id)
    chains = finished_chains(store, record, io) if summary is not None else None
    if chains is not None and summary is not None:
        now = summarize(chains, record, store, architecture=architecture)
        if stale(summary, now):  # written before a resume, by a leg that died
            store.withdraw_summary(record.run_id, summary)
            summary = None
    if summary is None:
        completed = try_complete(
            store, record, notifier, at_ms, presign_s, architecture=architecture, io=io
        )
        return None if completed is None else "completed"
    notice = store.load_notice(record.run_id)
    if notice is not None and not stale(notice.get("detail") or {}, summary):
        store.mark_inactive(record.run_id, active)
        return "tidied"
    if at_ms - int(summary.get("finished_ms") or 0) < resend_after_ms:
        return None
    try:
        sent = publish(store, record, summary, notifier, at_ms, presign_s=presign_s, active=active)
        return "notice sent" if sent else None
    except BatonError as exc:
        log.warning("run %s: could not finish its completion: %s", record.run_id, exc)
        return None
