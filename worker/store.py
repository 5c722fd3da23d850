"""The one S3 state store of a run: run.json, the CAS checkpoint, results, summary.

Layout under the results prefix (which never triggers the worker):

    {prefix}{run_id}/run.json             what the run is: pinned input, totals, chains, config
    {prefix}{run_id}/chains/{chain}/checkpoint.json   where each chain is; every write a CAS
    {prefix}{run_id}/done/{chain}         marker: that chain's range is finished
    {prefix}{run_id}/manifest.json        the results objects in index order, with counts
    {prefix}{run_id}/notice.json          the completion notice: what was sent, when
    {prefix}{run_id}/results/{start:010d}-{end:010d}.jsonl   one object per commit: the
                                          rows of that range, less its holes
    {prefix}{run_id}/holes/{first:010d}-{last:010d}.jsonl    rows of holes of earlier legs
    {prefix}{run_id}/summary.json         written once at the end
    {prefix}{run_id}/cancel               marker: stop at the next batch
    {prefix}{run_id}/listing/{first:010d}-{token}.jsonl   prefix runs: a segment of listed keys
    {prefix}{run_id}/queue/{chain}        prefix runs: a work chain waiting for a free slot
    {prefix}{run_id}/presigned.jsonl      prefix runs with `presign`: {key, url, size, etag}
    {prefix}_active/{run_id}              present while the run may still need a leg

Runs created before layout version 2 keep `{prefix}{run_id}/checkpoint.json`, read as
chain 0000 of a one-chain run (`RunRecord.version` says which a run uses).
    {prefix}_sources/{digest}/{run_id}    which runs a task list version started
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from worker.checkpoint import Checkpoint
from worker.exceptions import ConflictError, RunNotFoundError, TransientError
from worker.names import RESULTS_PREFIX
from worker.s3 import ObjectNotFoundError, ObjectStore

LAYOUT_VERSION = 2
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.json"
CHAINS_DIR = "chains/"
DONE_DIR = "done/"
MANIFEST_FILE = "manifest.json"
NOTICE_FILE = "notice.json"
RESULTS_DIR = "results/"
HOLES_DIR = "holes/"
SUMMARY_FILE = "summary.json"
CANCEL_FILE = "cancel"
ACTIVE_DIR = "_active/"
SOURCES_DIR = "_sources/"
QUEUE_DIR = "queue/"
PRESIGNED_FILE = "presigned.jsonl"
FRONTIER_DIR = "frontier/"
SEEN_DIR = "seen/"
ROBOTS_DIR = "robots/"
INBOX_DIR = "inbox/"


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    bucket: str
    key: str
    etag: str
    total: int
    start_position: int
    created_ms: int
    source: str
    config: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    """Layout version: 1 (one checkpoint per run, before fan-out) or 2 (a checkpoint per chain)."""
    chains: int = 1
    listing: dict[str, Any] | None = None
    """A prefix run's source: `prefix`, `suffix`, `processor`, `presign_s`, and `cutoff_ms`
    (objects modified later are not in the run); None for a task list."""
    crawl: dict[str, Any] | None = None
    """A crawl run's spec (`worker.crawl.spec.CrawlSpec.as_dict`); None otherwise."""


@dataclass(frozen=True)
class Versioned:
    checkpoint: Checkpoint
    etag: str


class RunStore:
    """Typed access to one bucket's runs; the only code that writes run state."""

    def __init__(self, objects: ObjectStore, bucket: str, prefix: str = RESULTS_PREFIX) -> None:
        self.objects = objects
        self.bucket = bucket
        self.prefix = prefix
        self._versions: dict[str, int] = {}
        """Layout version per run: run.json never changes, so it is read once."""

    @classmethod
    def over(cls, client: Any, bucket: str, prefix: str = RESULTS_PREFIX) -> RunStore:
        """A store on a boto3 S3 client (the CLI's, a test's)."""
        return cls(ObjectStore(client), bucket, prefix)

    def run_prefix(self, run_id: str) -> str:
        return f"{self.prefix}{run_id}/"

    def results_key(self, run_id: str, start: int, end: int) -> str:
        return f"{self.run_prefix(run_id)}{RESULTS_DIR}{start:010d}-{end:010d}.jsonl"

    # run.json
    def create_run(self, record: RunRecord) -> bool:
        """Write run.json once; False when the run already exists."""
        created = self._create(self.run_prefix(record.run_id) + RUN_FILE, asdict(record))
        if created is not None:
            self._versions[record.run_id] = record.version
        return created is not None

    def load_run(self, run_id: str) -> RunRecord:
        data = self._get_json(self.run_prefix(run_id) + RUN_FILE)
        if data is None:
            raise self._not_found(run_id)
        record = RunRecord(**data)
        self._versions[run_id] = record.version
        return record

    def checkpoint_key(self, run_id: str, chain: str) -> str:
        if self._version(run_id) < LAYOUT_VERSION:
            return self.run_prefix(run_id) + CHECKPOINT_FILE
        return f"{self.run_prefix(run_id)}{CHAINS_DIR}{chain}/{CHECKPOINT_FILE}"

    def _version(self, run_id: str) -> int:
        if run_id not in self._versions:
            self.load_run(run_id)
        return self._versions[run_id]

    # checkpoint.json
    def create_checkpoint(self, checkpoint: Checkpoint) -> Versioned | None:
        key = self.checkpoint_key(checkpoint.run_id, checkpoint.chain)
        etag = self._create(key, asdict(checkpoint))
        return None if etag is None else Versioned(checkpoint, etag)

    def load_checkpoint(self, run_id: str, chain: str = "0000") -> Versioned:
        try:
            got = self.objects.get(self.bucket, self.checkpoint_key(run_id, chain))
        except ObjectNotFoundError as exc:
            raise self._not_found(run_id, chain) from exc
        return Versioned(Checkpoint.from_json(json.loads(got.body)), got.etag)

    def has_checkpoint(self, run_id: str, chain: str) -> bool:
        return self.objects.head(self.bucket, self.checkpoint_key(run_id, chain)) is not None

    def chain_ids(self, run_id: str) -> list[str]:
        """Every chain with a checkpoint, in key order (one, "0000", for a version 1 run)."""
        if self._version(run_id) < LAYOUT_VERSION:
            return ["0000"]
        return list(self.objects.folders(self.bucket, self.run_prefix(run_id) + CHAINS_DIR))

    def load_chains(self, run_id: str) -> list[Checkpoint]:
        return [self.load_checkpoint(run_id, chain).checkpoint for chain in self.chain_ids(run_id)]

    def mark_chain_done(self, run_id: str, chain: str) -> None:
        self.objects.put(self.bucket, f"{self.run_prefix(run_id)}{DONE_DIR}{chain}", b"")

    def clear_chain_done(self, run_id: str, chain: str) -> None:
        self.objects.delete(self.bucket, f"{self.run_prefix(run_id)}{DONE_DIR}{chain}")

    def clear_completion(self, run_id: str) -> None:
        """A resumed run is not complete any more: its summary, manifest, notice go."""
        for name in (SUMMARY_FILE, MANIFEST_FILE, NOTICE_FILE):
            self.objects.delete(self.bucket, self.run_prefix(run_id) + name)

    def queue_chain(self, run_id: str, chain: str) -> None:
        self.objects.put(self.bucket, f"{self.run_prefix(run_id)}{QUEUE_DIR}{chain}", b"")

    def unqueue(self, run_id: str, chain: str) -> None:
        self.objects.delete(self.bucket, f"{self.run_prefix(run_id)}{QUEUE_DIR}{chain}")

    def queued_chains(self, run_id: str) -> list[str]:
        """Work chains of a prefix run waiting for a slot, in key (so index) order."""
        prefix = self.run_prefix(run_id) + QUEUE_DIR
        return [obj.key[len(prefix) :] for obj in self.objects.list(self.bucket, prefix)]

    def put_segment(self, key: str, body: bytes) -> str:
        return self.objects.put(self.bucket, key, body, content_type="application/x-ndjson")

    # crawl runs: each chain's frontier log, its seen-set, robots.txt per origin
    def frontier_key(self, run_id: str, chain: str, first: int) -> str:
        return f"{self.run_prefix(run_id)}{FRONTIER_DIR}{chain}/{first:010d}.jsonl"

    def seen_key(self, run_id: str, chain: str, first: int) -> str:
        return f"{self.run_prefix(run_id)}{SEEN_DIR}{chain}/{first:010d}.bin"

    def put_frontier(self, run_id: str, chain: str, first: int, body: bytes, seen: bytes) -> None:
        """A segment of the log and its URL hashes, both before the CAS that counts them.

        Keys are the segment's first index, so a segment a dead leg wrote past the
        checkpoint's end is simply written over by the next one there.
        """
        self.objects.put(
            self.bucket,
            self.frontier_key(run_id, chain, first),
            body,
            content_type="application/x-ndjson",
        )
        self.objects.put(self.bucket, self.seen_key(run_id, chain, first), seen)

    def frontier_firsts(self, run_id: str, chain: str, after: int = -1) -> list[int]:
        """First indices of the chain's seen-set objects after `after`, in order."""
        prefix = f"{self.run_prefix(run_id)}{SEEN_DIR}{chain}/"
        start = f"{prefix}{after:010d}.bin" if after >= 0 else None
        return [
            int(obj.key[len(prefix) :].removesuffix(".bin"))
            for obj in self.objects.list(self.bucket, prefix, start_after=start)
        ]

    def put_inbox(
        self, run_id: str, to: str, sender: str, number: int, body: bytes, *, attempt: str
    ) -> None:
        """Links for another chain's hosts, keyed by the sender's rows so far and by the
        leg that wrote them (`attempt`, its claim). A redone batch writes beside its
        earlier attempt, never over it: the owner may have taken that one in already and
        would delete the redo's links with it. The earlier attempt's links were found on
        pages really fetched; whatever they repeat, the seen-set drops."""
        tag = hashlib.blake2b(attempt.encode(), digest_size=4).hexdigest()
        key = f"{self.run_prefix(run_id)}{INBOX_DIR}{to}/{sender}-{number:010d}-{tag}.jsonl"
        self.objects.put(self.bucket, key, body, content_type="application/x-ndjson")

    def inbox_keys(self, run_id: str, chain: str) -> list[str]:
        prefix = f"{self.run_prefix(run_id)}{INBOX_DIR}{chain}/"
        return [obj.key for obj in self.objects.list(self.bucket, prefix)]

    def chains_with_mail(self, run_id: str) -> set[str]:
        """Chains with links waiting in their inbox."""
        prefix = self.run_prefix(run_id) + INBOX_DIR
        return {
            obj.key[len(prefix) :].split("/", 1)[0]
            for obj in self.objects.list(self.bucket, prefix)
        }

    def robots_key(self, run_id: str, origin: str) -> str:
        name = "".join(c if c.isalnum() or c in ".-" else "_" for c in origin)
        return f"{self.run_prefix(run_id)}{ROBOTS_DIR}{name}.json"

    def create_robots(self, run_id: str, origin: str, rules: dict[str, Any]) -> bool:
        """Once per origin per run: the first leg to fetch it decides for the whole run."""
        return self._create(self.robots_key(run_id, origin), rules) is not None

    def load_robots(self, run_id: str, origin: str) -> dict[str, Any] | None:
        return self._get_json(self.robots_key(run_id, origin))

    def presigned_key(self, run_id: str) -> str:
        return self.run_prefix(run_id) + PRESIGNED_FILE

    def done_chains(self, run_id: str) -> set[str]:
        prefix = self.run_prefix(run_id) + DONE_DIR
        return {obj.key[len(prefix) :] for obj in self.objects.list(self.bucket, prefix)}

    def swap(self, current: Versioned, new: Checkpoint) -> Versioned:
        """Compare-and-swap: write `new` only if the checkpoint is still `current`."""
        key = self.checkpoint_key(new.run_id, new.chain)
        body = _dumps(asdict(new))
        try:
            etag = self.objects.put(self.bucket, key, body, if_match=current.etag)
        except (ConflictError, ObjectNotFoundError) as exc:
            landed = self._holds(key, body)
            if landed is not None:
                return Versioned(new, landed)
            raise ConflictError(f"checkpoint of {new.run_id} changed under us") from exc
        except TransientError:
            # botocore gave up, but a PUT it sent may have landed: if so, the swap happened
            # (the usage it carried must not be written again).
            landed = self._holds(key, body)
            if landed is None:
                raise
            return Versioned(new, landed)
        return Versioned(new, etag)

    def _holds(self, key: str, body: bytes) -> str | None:
        """The ETag of `key` if it holds exactly `body`: our own write, whose answer was lost.

        S3 can fail a PUT after it landed; botocore then retries it, and the retry's
        IfMatch fails on our own write (or botocore gives up: a transient error). Only we
        write these bytes (a checkpoint carries its owner, counts and millisecond times),
        so finding them means the
        swap happened; without this the leg would read it as lost and the next owner
        would count a strike for a leg that never died.
        """
        try:
            got = self.objects.get(self.bucket, key)
        except (ObjectNotFoundError, TransientError):
            return None
        return got.etag if got.body == body else None

    # results
    def put_results(self, run_id: str, start: int, end: int, rows: list[dict[str, Any]]) -> str:
        key = self.results_key(run_id, start, end)
        body = b"".join(_dumps(row) + b"\n" for row in rows)
        self.objects.put(self.bucket, key, body, content_type="application/x-ndjson")
        return key

    def holes_key(self, run_id: str, first: int, last: int) -> str:
        return f"{self.run_prefix(run_id)}{HOLES_DIR}{first:010d}-{last:010d}.jsonl"

    def put_holes(self, run_id: str, rows: list[dict[str, Any]]) -> str:
        """Rows of holes, in their own key space: range objects' key ranges never overlap."""
        indices = [row["index"] for row in rows]
        key = self.holes_key(run_id, min(indices), max(indices))
        body = b"".join(_dumps(row) + b"\n" for row in sorted(rows, key=lambda r: r["index"]))
        self.objects.put(self.bucket, key, body, content_type="application/x-ndjson")
        return key

    def result_keys(self, run_id: str, start_after: int = -1) -> Iterator[tuple[int, int, str]]:
        """(start, end, key) of every range object, in position order."""
        return self._ranges(self.run_prefix(run_id) + RESULTS_DIR, start_after)

    def hole_keys(self, run_id: str, start_after: int = -1) -> Iterator[tuple[int, int, str]]:
        """(first, last, key) of every object of holes, in order."""
        return self._ranges(self.run_prefix(run_id) + HOLES_DIR, start_after)

    def rows(self, run_id: str) -> Iterator[dict[str, Any]]:
        """Every result row of the run, in index order (holes merged in where they belong)."""
        holes = sorted(
            (row for _, _, key in self.hole_keys(run_id) for row in self.read_rows(key)),
            key=lambda row: row["index"],
        )
        at = 0
        for _, _, key in self.result_keys(run_id):
            for row in self.read_rows(key):
                while at < len(holes) and holes[at]["index"] < row["index"]:
                    yield holes[at]
                    at += 1
                yield row
        yield from holes[at:]

    def _ranges(self, prefix: str, start_after: int) -> Iterator[tuple[int, int, str]]:
        after = f"{prefix}{start_after:010d}" if start_after >= 0 else None
        for obj in self.objects.list(self.bucket, prefix, start_after=after):
            name = obj.key[len(prefix) :].removesuffix(".jsonl")
            start, _, end = name.partition("-")
            yield int(start), int(end), obj.key

    def read_rows(self, key: str) -> list[dict[str, Any]]:
        body = self.objects.get(self.bucket, key).body
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def read_bytes(self, key: str) -> bytes:
        return self.objects.get(self.bucket, key).body

    def delete(self, key: str) -> None:
        self.objects.delete(self.bucket, key)

    def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            self.objects.delete_many(self.bucket, keys)

    # summary, cancel, active index
    def put_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        self.objects.put(self.bucket, self.run_prefix(run_id) + SUMMARY_FILE, _dumps(summary))

    def create_summary(self, run_id: str, summary: dict[str, Any]) -> bool:
        """Write summary.json only if none exists: exactly one leg completes a run."""
        return self._create(self.run_prefix(run_id) + SUMMARY_FILE, summary) is not None

    def put_manifest(self, run_id: str, manifest: dict[str, Any]) -> str:
        key = self.run_prefix(run_id) + MANIFEST_FILE
        self.objects.put(self.bucket, key, _dumps(manifest))
        return key

    def load_manifest(self, run_id: str) -> dict[str, Any] | None:
        return self._get_json(self.run_prefix(run_id) + MANIFEST_FILE)

    def put_notice(self, run_id: str, notice: dict[str, Any]) -> None:
        self.objects.put(self.bucket, self.run_prefix(run_id) + NOTICE_FILE, _dumps(notice))

    def load_notice(self, run_id: str) -> dict[str, Any] | None:
        return self._get_json(self.run_prefix(run_id) + NOTICE_FILE)

    def load_summary(self, run_id: str) -> dict[str, Any] | None:
        return self._get_json(self.run_prefix(run_id) + SUMMARY_FILE)

    def request_cancel(self, run_id: str) -> None:
        self.objects.put(
            self.bucket,
            self.run_prefix(run_id) + CANCEL_FILE,
            b"cancel requested\n",
            content_type="text/plain",
        )

    def clear_cancel(self, run_id: str) -> None:
        self.objects.delete(self.bucket, self.run_prefix(run_id) + CANCEL_FILE)

    def cancel_requested(self, run_id: str) -> bool:
        return self.objects.head(self.bucket, self.run_prefix(run_id) + CANCEL_FILE) is not None

    def mark_source(self, run_id: str, key: str, etag: str) -> None:
        """Index runs by their input, so `baton submit` can find the run its upload started."""
        self.objects.put(self.bucket, f"{self.source_prefix(key, etag)}{run_id}", b"")

    def runs_for_source(self, key: str, etag: str) -> list[str]:
        prefix = self.source_prefix(key, etag)
        return [obj.key[len(prefix) :] for obj in self.objects.list(self.bucket, prefix)]

    def source_prefix(self, key: str, etag: str) -> str:
        digest = hashlib.sha256(f"{self.bucket}\n{key}\n{etag}".encode()).hexdigest()[:16]
        return f"{self.prefix}{SOURCES_DIR}{digest}/"

    def mark_active(self, run_id: str, at_ms: int) -> None:
        """The sweep's list of runs to watch; the marker holds when it was written."""
        self.objects.put(self.bucket, f"{self.prefix}{ACTIVE_DIR}{run_id}", str(at_ms).encode())

    def active_since(self, run_id: str) -> int | None:
        """When the run's marker was written (0 if before markers held it); None if gone."""
        try:
            body = self.objects.get(self.bucket, f"{self.prefix}{ACTIVE_DIR}{run_id}").body
        except ObjectNotFoundError:
            return None
        return int(body) if body.strip().isdigit() else 0

    def mark_inactive(self, run_id: str, seen: int | None) -> None:
        """Drop the run's marker if it is still the one read before (`active_since`): a
        resume that marked the run again since keeps it, so the sweep goes on watching."""
        if seen is not None and self.active_since(run_id) == seen:
            self.objects.delete(self.bucket, f"{self.prefix}{ACTIVE_DIR}{run_id}")

    def withdraw_summary(self, run_id: str, written: dict[str, Any]) -> None:
        """Take back a summary that a resume made wrong, if it is still `written` (not a
        later completion's own)."""
        if self.load_summary(run_id) == written:
            self.objects.delete(self.bucket, self.run_prefix(run_id) + SUMMARY_FILE)

    def active_runs(self) -> Iterator[str]:
        prefix = f"{self.prefix}{ACTIVE_DIR}"
        for obj in self.objects.list(self.bucket, prefix):
            yield obj.key[len(prefix) :]

    def run_ids(self) -> Iterator[str]:
        for name in self.objects.folders(self.bucket, self.prefix):
            if not name.startswith("_"):
                yield name

    # primitives
    def _create(self, key: str, data: dict[str, Any]) -> str | None:
        """Write `key` only if it does not exist; None when it does."""
        try:
            return self.objects.put(self.bucket, key, _dumps(data), if_none_match=True)
        except ConflictError:
            return None

    def _get_json(self, key: str) -> dict[str, Any] | None:
        try:
            body = self.objects.get(self.bucket, key).body
        except ObjectNotFoundError:
            return None
        data: dict[str, Any] = json.loads(body)
        return data

    def _not_found(self, run_id: str, chain: str | None = None) -> RunNotFoundError:
        what = f"no run {run_id!r}"
        if chain not in (None, "0000"):
            what = f"no chain {chain} of run {run_id!r}"
        return RunNotFoundError(f"{what} in s3://{self.bucket}/{self.prefix}")


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
