"""The one door to S3: every S3 call baton makes goes through `ObjectStore`.

It takes a boto3 S3 client (or anything with the same few methods: the
simulator's in-memory S3 is one) and turns botocore's errors into baton's,
here and nowhere else:

    precondition failed on a write (IfMatch / IfNoneMatch)  -> ConflictError
    precondition failed on a pinned read (IfMatch)          -> InputChangedError
    304 on a revalidation (IfNoneMatch)                     -> a hit, not an error
    no such key / bucket                                    -> ObjectNotFoundError
    5xx, SlowDown, throttling, a dropped connection         -> TransientError
    anything else (AccessDenied, a bad request)             -> S3Error
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from worker.exceptions import (
    BatonError,
    ConflictError,
    InputChangedError,
    TransientError,
)

TRANSIENT_CODES = frozenset(
    {
        "500",
        "502",
        "503",
        "504",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
PRECONDITION_CODES = frozenset({"412", "PreconditionFailed", "ConditionalRequestConflict", "409"})
NOT_MODIFIED_CODES = frozenset({"304", "NotModified"})
"""botocore reports a 304 to a conditional GET as a ClientError with code "304"."""
LIST_PAGE = 1000
DELETE_BATCH = 1000
"""Keys per DeleteObjects request, S3's most."""
REQUEST_KINDS = ("get", "put", "list", "head", "delete", "copy")
"""What `ObjectStore.counts()` counts: one per call made (botocore's own retries of a call
are not seen here), by the request's kind as S3 prices it."""
PART_BYTES = 8 * 1024 * 1024
"""Parts of a streamed upload (S3's minimum is 5 MiB for every part but the last)."""


class ObjectNotFoundError(BatonError):
    """No such key (or bucket)."""


class S3Error(BatonError):
    """An S3 error that retrying will not fix: access denied, a malformed request."""


@dataclass(frozen=True)
class Listed:
    key: str
    etag: str
    size: int
    metadata: dict[str, str] = field(default_factory=dict)
    """User metadata (`x-amz-meta-*`), from HEAD only."""
    last_modified: str = ""
    """ISO 8601 UTC (S3 keeps whole seconds), from a listing page only."""


@dataclass(frozen=True)
class Page:
    """One ListObjectsV2 page: its objects in key order, and whether more follow."""

    objects: list[Listed]
    truncated: bool


@dataclass(frozen=True)
class Got:
    """A whole object read into memory."""

    body: bytes
    etag: str


class ObjectStore:
    """Typed S3 calls; `client` is created by the caller (clients are injected)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._counts: Counter[str] = Counter()
        self._counting = threading.Lock()

    def counts(self) -> dict[str, int]:
        """Requests made through this store so far, by kind (a leg takes the difference)."""
        with self._counting:
            return {kind: self._counts[kind] for kind in REQUEST_KINDS}

    def _count(self, kind: str) -> None:
        with self._counting:
            self._counts[kind] += 1

    def get(self, bucket: str, key: str, *, if_match: str | None = None) -> Got:
        """The whole object; with `if_match`, exactly that version or InputChangedError."""
        response = self._get(bucket, key, if_match=if_match)
        body = response["Body"]
        try:
            data: bytes = body.read()
        except BotoCoreError as exc:
            raise TransientError(f"reading s3://{bucket}/{key} failed: {exc}") from exc
        return Got(data, str(response["ETag"]))

    def open(
        self, bucket: str, key: str, *, if_match: str, byte_range: str | None = None
    ) -> tuple[BinaryIO, int]:
        """A streaming body of exactly version `if_match` (optionally a `Range`), and its size.

        Read it with `chunks`, which turns a broken stream into TransientError.
        """
        response = self._get(bucket, key, if_match=if_match, byte_range=byte_range)
        return response["Body"], int(response["ContentLength"])

    def unchanged(self, bucket: str, key: str, etag: str) -> None:
        """Revalidate a cached copy: a 304 to `IfNoneMatch=etag` means still that version."""
        self._count("get")
        try:
            response = self.client.get_object(Bucket=bucket, Key=key, IfNoneMatch=etag)
        except ClientError as exc:
            if _code(exc) in NOT_MODIFIED_CODES:
                return
            raise _convert(exc, f"GET s3://{bucket}/{key}", read=True) from exc
        except BotoCoreError as exc:
            raise TransientError(f"GET s3://{bucket}/{key} failed: {exc}") from exc
        response["Body"].close()
        raise InputChangedError(
            f"s3://{bucket}/{key} changed: pinned {etag}, now {response.get('ETag')}"
        )

    def head(self, bucket: str, key: str) -> Listed | None:
        self._count("head")
        try:
            response = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in NOT_FOUND_CODES:
                return None
            raise _convert(exc, f"HEAD s3://{bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"HEAD s3://{bucket}/{key} failed: {exc}") from exc
        return Listed(
            key,
            str(response["ETag"]),
            int(response.get("ContentLength", 0)),
            dict(response.get("Metadata") or {}),
        )

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        if_match: str | None = None,
        if_none_match: bool = False,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Write `body`; the new ETag. A failed condition is ConflictError."""
        params: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "Body": body,
            "ContentType": content_type,
        }
        if if_match is not None:
            params["IfMatch"] = if_match
        if if_none_match:
            params["IfNoneMatch"] = "*"
        if metadata:
            params["Metadata"] = metadata
        self._count("put")
        try:
            return str(self.client.put_object(**params)["ETag"])
        except ClientError as exc:
            raise _convert(exc, f"PUT s3://{bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"PUT s3://{bucket}/{key} failed: {exc}") from exc

    def delete(self, bucket: str, key: str) -> None:
        self._count("delete")
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) not in NOT_FOUND_CODES:
                raise _convert(exc, f"DELETE s3://{bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"DELETE s3://{bucket}/{key} failed: {exc}") from exc

    def delete_many(self, bucket: str, keys: Sequence[str]) -> None:
        """DeleteObjects: one request per 1,000 keys instead of one a key. Not atomic (S3
        may delete some and refuse others), so callers must tolerate a partial delete."""
        for first in range(0, len(keys), DELETE_BATCH):
            batch = keys[first : first + DELETE_BATCH]
            what = f"DELETE {len(batch)} objects under s3://{bucket}/{batch[0]}"
            self._count("delete")
            try:
                answer = self.client.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
            except ClientError as exc:
                raise _convert(exc, what) from exc
            except BotoCoreError as exc:
                raise TransientError(f"{what} failed: {exc}") from exc
            refused = answer.get("Errors") or []
            if refused:
                first_error = refused[0]
                code = str(first_error.get("Code", ""))
                message = f"{what}: {len(refused)} refused, first {first_error.get('Key')}: {code}"
                raise TransientError(message) if code in TRANSIENT_CODES else S3Error(message)

    def list(self, bucket: str, prefix: str, *, start_after: str | None = None) -> Iterator[Listed]:
        """Every object under `prefix`, in key order, a page at a time."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": LIST_PAGE}
        if start_after is not None:
            params["StartAfter"] = start_after
        while True:
            page = self._list(params)
            for obj in page.get("Contents", []):
                yield Listed(obj["Key"], str(obj.get("ETag", "")), int(obj.get("Size", 0)))
            if not page.get("IsTruncated"):
                return
            params = {**params, "ContinuationToken": page["NextContinuationToken"]}
            params.pop("StartAfter", None)

    def list_page(
        self, bucket: str, prefix: str, *, start_after: str | None, max_keys: int = LIST_PAGE
    ) -> Page:
        """One page of keys after `start_after`: a lister resumes from the last key it kept,
        which (unlike a continuation token) can live in a checkpoint for any time."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if start_after:
            params["StartAfter"] = start_after
        page = self._list(params)
        objects = [
            Listed(
                obj["Key"],
                str(obj.get("ETag", "")),
                int(obj.get("Size", 0)),
                last_modified=_iso(obj.get("LastModified")),
            )
            for obj in page.get("Contents", [])
        ]
        return Page(objects, bool(page.get("IsTruncated")))

    def put_stream(
        self,
        bucket: str,
        key: str,
        pieces: Iterable[bytes],
        *,
        content_type: str = "application/x-ndjson",
        part_bytes: int = PART_BYTES,
    ) -> str:
        """Write `pieces` as one object without holding it: a plain PUT if it stays under
        `part_bytes`, else a multipart upload of `part_bytes` parts (aborted on error)."""
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            for piece in pieces:
                buffer += piece
                if len(buffer) >= part_bytes:
                    if upload_id is None:
                        upload_id = self._call(
                            "create_multipart_upload",
                            f"UPLOAD s3://{bucket}/{key}",
                            Bucket=bucket,
                            Key=key,
                            ContentType=content_type,
                        )["UploadId"]
                    parts.append(self._part(bucket, key, upload_id, len(parts) + 1, bytes(buffer)))
                    buffer.clear()
            if upload_id is None:
                return self.put(bucket, key, bytes(buffer), content_type=content_type)
            if buffer or not parts:
                parts.append(self._part(bucket, key, upload_id, len(parts) + 1, bytes(buffer)))
            done = self._call(
                "complete_multipart_upload",
                f"COMPLETE s3://{bucket}/{key}",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            return str(done["ETag"])
        except BaseException:
            if upload_id is not None:
                # What an abort leaves, a lifecycle rule for incomplete uploads cleans.
                with suppress(BatonError):
                    self._call(
                        "abort_multipart_upload",
                        f"ABORT s3://{bucket}/{key}",
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                    )
            raise

    def _part(self, bucket: str, key: str, upload_id: str, number: int, body: bytes) -> Any:
        answer = self._call(
            "upload_part",
            f"PART {number} s3://{bucket}/{key}",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _call(self, method: str, what: str, **params: Any) -> Any:
        try:
            return getattr(self.client, method)(**params)
        except ClientError as exc:
            raise _convert(exc, what) from exc
        except BotoCoreError as exc:
            raise TransientError(f"{what} failed: {exc}") from exc

    def folders(self, bucket: str, prefix: str) -> Iterator[str]:
        """The next path segment of every key under `prefix` (`Delimiter="/"`)."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/"}
        while True:
            page = self._list(params)
            for common in page.get("CommonPrefixes", []):
                yield common["Prefix"][len(prefix) :].rstrip("/")
            if not page.get("IsTruncated"):
                return
            params = {**params, "ContinuationToken": page["NextContinuationToken"]}

    def copy(
        self,
        bucket: str,
        source_key: str,
        key: str,
        *,
        metadata: dict[str, str],
        content_type: str | None = None,
    ) -> str:
        """Copy `source_key` to `key` in one bucket, with `metadata` replacing the source's;
        the copy's ETag. Do not rely on it equalling the source's: it does for a single-part
        object stored plain or with SSE-S3, but SSE-KMS and SSE-C give every copy a new one."""
        params: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "CopySource": {"Bucket": bucket, "Key": source_key},
            "MetadataDirective": "REPLACE",
            "Metadata": metadata,
        }
        if content_type:
            params["ContentType"] = content_type
        self._count("copy")
        try:
            response = self.client.copy_object(**params)
        except ClientError as exc:
            raise _convert(exc, f"COPY s3://{bucket}/{source_key} to {key}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"COPY s3://{bucket}/{source_key} failed: {exc}") from exc
        return str(response["CopyObjectResult"]["ETag"])

    def presign(self, bucket: str, key: str, expires_s: int) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
        )
        return url

    def _get(
        self, bucket: str, key: str, *, if_match: str | None = None, byte_range: str | None = None
    ) -> Any:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if if_match is not None:
            params["IfMatch"] = if_match
        if byte_range is not None:
            params["Range"] = byte_range
        self._count("get")
        try:
            return self.client.get_object(**params)
        except ClientError as exc:
            raise _convert(exc, f"GET s3://{bucket}/{key}", read=True) from exc
        except BotoCoreError as exc:
            raise TransientError(f"GET s3://{bucket}/{key} failed: {exc}") from exc

    def _list(self, params: dict[str, Any]) -> Any:
        self._count("list")
        try:
            return self.client.list_objects_v2(**params)
        except ClientError as exc:
            raise _convert(exc, f"LIST s3://{params['Bucket']}/{params['Prefix']}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"LIST s3://{params['Bucket']} failed: {exc}") from exc


def chunks(body: BinaryIO, what: str, size: int = 1024 * 1024) -> Iterator[bytes]:
    """A streaming body in pieces; a stream that breaks is worth a retry, not a failed run."""
    try:
        while piece := body.read(size):
            yield piece
    except BotoCoreError as exc:
        raise TransientError(f"reading {what} failed: {exc}") from exc
    finally:
        body.close()


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value or "")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _convert(exc: ClientError, what: str, *, read: bool = False) -> BatonError:
    code = _code(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in PRECONDITION_CODES:
        if read:
            return InputChangedError(f"{what}: the object is no longer the pinned version")
        return ConflictError(f"{what}: the precondition failed (someone else wrote first)")
    if code in NOT_FOUND_CODES:
        return ObjectNotFoundError(f"{what}: no such object")
    if code in TRANSIENT_CODES or status >= 500:
        return TransientError(f"{what} failed: {exc}")
    return S3Error(f"{what} failed: {exc}")
