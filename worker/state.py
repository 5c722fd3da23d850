"""The one S3 state store of a run: run.json, the CAS checkpoint, results, summary.

Layout under the results prefix (which never triggers the worker):

    {prefix}{run_id}/run.json             what the run is: pinned input, totals, config
    {prefix}{run_id}/checkpoint.json      where it is; every write a compare-and-swap
    {prefix}{run_id}/results/{start:010d}-{end:010d}.jsonl   one object per batch
    {prefix}{run_id}/summary.json         written once at the end
    {prefix}{run_id}/cancel               marker: stop at the next batch
    {prefix}_active/{run_id}              present while the run may still need a leg
    {prefix}_sources/{digest}/{run_id}    which runs a task list version started
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from botocore.exceptions import ClientError

from worker.exceptions import ConflictError, RunNotFoundError, TransientError
from worker.s3errors import is_not_found, is_precondition_failed, is_transient

RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
SUPERSEDED = "superseded"
TERMINAL = frozenset({DONE, FAILED, CANCELLED, SUPERSEDED})


def now_ms() -> int:
    return int(time.time() * 1000)


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


@dataclass(frozen=True)
class Checkpoint:
    """Where a run is. Only the leg that wins a CAS on it may act on the run."""

    run_id: str
    total: int
    position: int
    leg: int = 0
    status: str = RUNNING
    ok: int = 0
    failed: int = 0
    owner: str | None = None
    lease_until_ms: int = 0
    """The owner's deadline plus slack: past it, the owner is certainly dead."""
    handed_off_ms: int = 0
    heartbeat_ms: int = 0
    strikes: int = 0
    """Owners that died at this position; past a threshold the task is skipped."""
    careful_until: int = 0
    """Below this position batches run one task at a time, to find a killer task."""
    batch_end: int = 0
    """End (exclusive) of the batch the owner works next: a dead owner's suspect range."""
    sweeps: int = 0
    crashes: int = 0
    """Legs in a row that raised an unexpected (non-transient) error at this position."""
    failure_kinds: dict[str, int] = field(default_factory=dict)
    failure_samples: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    started_ms: int = 0
    finished_ms: int = 0
    leg_ms_total: int = 0
    task_ms_total: int = 0

    def lease_live(self, at_ms: int) -> bool:
        return self.owner is not None and at_ms < self.lease_until_ms

    def stalled(self, at_ms: int, stall_after_ms: int) -> bool:
        """Running, yet nothing will move it on unless the sweep does: a hand-off nobody
        claimed for `stall_after_ms`, or an owner whose lease ran out (it is dead)."""
        if self.status in TERMINAL:
            return False
        if self.owner is None:
            return at_ms - max(self.handed_off_ms, self.heartbeat_ms) > stall_after_ms
        return at_ms > self.lease_until_ms

    def evolve(self, **changes: Any) -> Checkpoint:
        return replace(self, **changes)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Versioned:
    checkpoint: Checkpoint
    etag: str


class RunStore:
    """Typed access to one bucket's runs; the only code that writes run state."""

    def __init__(self, s3: Any, bucket: str, prefix: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix

    def run_prefix(self, run_id: str) -> str:
        return f"{self.prefix}{run_id}/"

    def results_key(self, run_id: str, start: int, end: int) -> str:
        return f"{self.run_prefix(run_id)}results/{start:010d}-{end:010d}.jsonl"

    # run.json
    def create_run(self, record: RunRecord) -> bool:
        """Write run.json once; False when the run already exists."""
        key = self.run_prefix(record.run_id) + "run.json"
        return self._put(key, _dumps(asdict(record)), if_none_match=True) is not None

    def load_run(self, run_id: str) -> RunRecord:
        data = self._get_json(self.run_prefix(run_id) + "run.json")
        if data is None:
            raise RunNotFoundError(f"no run {run_id!r} in s3://{self.bucket}/{self.prefix}")
        return RunRecord(**data)

    # checkpoint.json
    def create_checkpoint(self, checkpoint: Checkpoint) -> Versioned | None:
        key = self.run_prefix(checkpoint.run_id) + "checkpoint.json"
        etag = self._put(key, _dumps(asdict(checkpoint)), if_none_match=True)
        return None if etag is None else Versioned(checkpoint, etag)

    def load_checkpoint(self, run_id: str) -> Versioned:
        key = self.run_prefix(run_id) + "checkpoint.json"
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                raise RunNotFoundError(
                    f"no run {run_id!r} in s3://{self.bucket}/{self.prefix}"
                ) from exc
            raise _transient_or(exc) from exc
        data = json.loads(response["Body"].read())
        return Versioned(Checkpoint.from_json(data), response["ETag"])

    def swap(self, current: Versioned, new: Checkpoint) -> Versioned:
        """Compare-and-swap: write `new` only if the checkpoint is still `current`."""
        key = self.run_prefix(new.run_id) + "checkpoint.json"
        body = _dumps(asdict(new))
        try:
            response = self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                IfMatch=current.etag,
                ContentType="application/json",
            )
        except ClientError as exc:
            if is_precondition_failed(exc) or is_not_found(exc):
                landed = self._holds(key, body)
                if landed is not None:
                    return Versioned(new, landed)
                raise ConflictError(f"checkpoint of {new.run_id} changed under us") from exc
            raise _transient_or(exc) from exc
        return Versioned(new, response["ETag"])

    def _holds(self, key: str, body: bytes) -> str | None:
        """The ETag of `key` if it holds exactly `body`: our own write, whose answer was lost.

        S3 can fail a PUT after it landed; botocore then retries it, and the retry's
        IfMatch fails on our own write. Only we write these bytes (a checkpoint
        carries its owner, counts and millisecond times), so finding them means the
        swap happened; without this the leg would read it as lost and the next owner
        would count a strike for a leg that never died.
        """
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError:
            return None
        return str(response["ETag"]) if response["Body"].read() == body else None

    # results
    def put_results(self, run_id: str, start: int, end: int, rows: list[dict[str, Any]]) -> str:
        key = self.results_key(run_id, start, end)
        body = b"".join(_dumps(row) + b"\n" for row in rows)
        self._put(key, body, content_type="application/x-ndjson")
        return key

    def result_keys(self, run_id: str, start_after: int = -1) -> Iterator[tuple[int, int, str]]:
        """(start, end, key) of every results object, in position order."""
        prefix = self.run_prefix(run_id) + "results/"
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after >= 0:
            kwargs["StartAfter"] = f"{prefix}{start_after:010d}"
        for page in self.s3.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix) :].removesuffix(".jsonl")
                start, _, end = name.partition("-")
                yield int(start), int(end), obj["Key"]

    def read_rows(self, key: str) -> list[dict[str, Any]]:
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    # summary, cancel, active index
    def put_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        self._put(self.run_prefix(run_id) + "summary.json", _dumps(summary))

    def load_summary(self, run_id: str) -> dict[str, Any] | None:
        return self._get_json(self.run_prefix(run_id) + "summary.json")

    def request_cancel(self, run_id: str) -> None:
        self._put(self.run_prefix(run_id) + "cancel", b"cancel requested\n")

    def clear_cancel(self, run_id: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.run_prefix(run_id) + "cancel")

    def cancel_requested(self, run_id: str) -> bool:
        return self._exists(self.run_prefix(run_id) + "cancel")

    def mark_source(self, run_id: str, key: str, etag: str) -> None:
        """Index runs by their input, so `baton submit` can find the run its upload started."""
        self._put(f"{self.source_prefix(key, etag)}{run_id}", b"")

    def runs_for_source(self, key: str, etag: str) -> list[str]:
        prefix = self.source_prefix(key, etag)
        response = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"][len(prefix) :] for obj in response.get("Contents", [])]

    def source_prefix(self, key: str, etag: str) -> str:
        digest = hashlib.sha256(f"{self.bucket}\n{key}\n{etag}".encode()).hexdigest()[:16]
        return f"{self.prefix}_sources/{digest}/"

    def mark_active(self, run_id: str) -> None:
        self._put(f"{self.prefix}_active/{run_id}", b"")

    def mark_inactive(self, run_id: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=f"{self.prefix}_active/{run_id}")

    def active_runs(self) -> Iterator[str]:
        prefix = f"{self.prefix}_active/"
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(prefix) :]

    def run_ids(self) -> Iterator[str]:
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
        ):
            for common in page.get("CommonPrefixes", []):
                run_id = common["Prefix"][len(self.prefix) :].rstrip("/")
                if not run_id.startswith("_"):
                    yield run_id

    # primitives
    def _put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        content_type: str = "application/json",
    ) -> str | None:
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ContentType": content_type,
        }
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        try:
            return str(self.s3.put_object(**kwargs)["ETag"])
        except ClientError as exc:
            if if_none_match and is_precondition_failed(exc):
                return None
            raise _transient_or(exc) from exc

    def _get_json(self, key: str) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise _transient_or(exc) from exc
        data: dict[str, Any] = json.loads(body)
        return data

    def _exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return False
            raise _transient_or(exc) from exc
        return True


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _transient_or(exc: ClientError) -> Exception:
    return TransientError(f"S3 call failed: {exc}") if is_transient(exc) else exc
