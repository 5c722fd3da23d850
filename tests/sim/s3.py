"""S3 in memory, behind the boto3 client's surface: what `worker.s3.ObjectStore` calls.

`MemoryS3` answers as S3 does: ETags are the body's MD5 in quotes; a PUT with
`IfMatch` or `IfNoneMatch="*"` that fails its condition is a 412
PreconditionFailed (`IfMatch` on a missing key a 404); a GET with `IfMatch` that
fails is a 412, with `IfNoneMatch` that matches a ClientError "304"; ranged reads
return the part and the whole object's ETag; listings are in key order with
`Prefix`, `StartAfter`, `MaxKeys`, `ContinuationToken` and `Delimiter` (each object's
`LastModified` in whole seconds of virtual time, as S3 keeps it); a missing
key is a 404 NoSuchKey (a HEAD's code is "404").

Calls made by a simulated invocation go through `network` (the world's): it makes
each call a yield point, draws its latency and faults, and records it in the
trace. Calls from outside the simulation (the world's own uploads, the oracle)
are answered at once.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.exceptions import ClientError

STATUS = {
    "304": 304,
    "404": 404,
    "NoSuchKey": 404,
    "NoSuchBucket": 404,
    "PreconditionFailed": 412,
    "InvalidRange": 416,
    "InternalError": 500,
    "SlowDown": 503,
}


def client_error(code: str, operation: str, message: str = "") -> ClientError:
    """A ClientError shaped as botocore raises it (the code, and the HTTP status)."""
    response: Any = {
        "Error": {"Code": code, "Message": message or code},
        "ResponseMetadata": {"HTTPStatusCode": STATUS.get(code, 400)},
    }
    return ClientError(response, operation)


def etag_of(body: bytes) -> str:
    return f'"{hashlib.md5(body).hexdigest()}"'


@dataclass(slots=True)
class Stored:
    body: bytes
    etag: str
    content_type: str = "binary/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)
    modified_ms: int = 0


class Body:
    """A streaming body: `read(n)` gives up to n bytes, then b""."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def read(self, amount: int | None = None) -> bytes:
        end = len(self._data) if amount is None or amount < 0 else self._at + amount
        piece = self._data[self._at : end]
        self._at += len(piece)
        return piece

    def close(self) -> None:
        self._at = len(self._data)


class Network(Protocol):
    """How a simulated invocation's call reaches the store (latency, faults, the trace)."""

    def in_actor(self) -> bool: ...

    def call(
        self, op: str, params: dict[str, Any], write: bool, apply: Callable[[], Any]
    ) -> Any: ...

    def now_ms(self) -> int: ...


Landed = Callable[[str, str, "Stored | None", "Stored | None"], None]
"""(bucket, key, before, after) of every write that landed, whoever made it."""


class MemoryS3:
    def __init__(self, network: Network | None = None, on_write: Landed | None = None) -> None:
        self.network = network
        self.on_write = on_write
        self._objects: dict[str, dict[str, Stored]] = {}
        self._keys: dict[str, list[str]] = {}

    # the boto3 surface
    def create_bucket(self, **kw: Any) -> dict[str, Any]:
        self._objects.setdefault(kw["Bucket"], {})
        self._keys.setdefault(kw["Bucket"], [])
        return {}

    def put_object(self, **kw: Any) -> dict[str, Any]:
        return self._call("PutObject", kw, True, lambda: self._put(kw))  # type: ignore[no-any-return]

    def get_object(self, **kw: Any) -> dict[str, Any]:
        return self._call("GetObject", kw, False, lambda: self._get(kw))  # type: ignore[no-any-return]

    def head_object(self, **kw: Any) -> dict[str, Any]:
        return self._call("HeadObject", kw, False, lambda: self._head(kw))  # type: ignore[no-any-return]

    def delete_object(self, **kw: Any) -> dict[str, Any]:
        return self._call("DeleteObject", kw, True, lambda: self._delete(kw))  # type: ignore[no-any-return]

    def delete_objects(self, **kw: Any) -> dict[str, Any]:
        """One DeleteObject per key, each through the network: S3 does not delete a batch
        atomically, so a fault may land between any two."""
        for item in kw["Delete"]["Objects"]:
            self.delete_object(Bucket=kw["Bucket"], Key=item["Key"])
        return {}

    def copy_object(self, **kw: Any) -> dict[str, Any]:
        return self._call("CopyObject", kw, True, lambda: self._copy(kw))  # type: ignore[no-any-return]

    def list_objects_v2(self, **kw: Any) -> dict[str, Any]:
        return self._call("ListObjectsV2", kw, False, lambda: self._list(kw))  # type: ignore[no-any-return]

    def generate_presigned_url(
        self,
        operation: str,
        Params: dict[str, Any],
        ExpiresIn: int = 3600,
    ) -> str:
        return (
            f"https://{Params['Bucket']}.s3.sim.invalid/{Params['Key']}"
            f"?X-Amz-Expires={ExpiresIn}&X-Amz-Signature=sim-{operation}"
        )

    # reading the store from outside (the oracle)
    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        keys = self._keys.get(bucket, [])
        at = bisect.bisect_left(keys, prefix)
        out = []
        while at < len(keys) and keys[at].startswith(prefix):
            out.append(keys[at])
            at += 1
        return out

    def body(self, bucket: str, key: str) -> bytes | None:
        stored = self._objects.get(bucket, {}).get(key)
        return None if stored is None else stored.body

    # semantics
    def _call(self, op: str, kw: dict[str, Any], write: bool, apply: Callable[[], Any]) -> Any:
        network = self.network
        if network is None or not network.in_actor():
            return apply()
        return network.call(op, kw, write, apply)

    def _bucket(self, name: str, op: str) -> dict[str, Stored]:
        objects = self._objects.get(name)
        if objects is None:
            raise client_error("NoSuchBucket", op, f"no bucket {name}")
        return objects

    def _put(self, kw: dict[str, Any]) -> dict[str, Any]:
        objects = self._bucket(kw["Bucket"], "PutObject")
        key = kw["Key"]
        held = objects.get(key)
        if kw.get("IfNoneMatch") == "*" and held is not None:
            raise client_error(
                "PreconditionFailed",
                "PutObject",
                "At least one of the pre-conditions you specified did not hold",
            )
        if "IfMatch" in kw:
            if held is None:
                raise client_error("NoSuchKey", "PutObject")
            if held.etag != kw["IfMatch"]:
                raise client_error(
                    "PreconditionFailed",
                    "PutObject",
                    "At least one of the pre-conditions you specified did not hold",
                )
        raw = kw.get("Body", b"")
        body = (
            raw if isinstance(raw, bytes) else raw.encode() if isinstance(raw, str) else raw.read()
        )
        stored = Stored(
            body,
            etag_of(body),
            kw.get("ContentType", "binary/octet-stream"),
            dict(kw.get("Metadata", {})),
            self.network.now_ms() if self.network else 0,
        )
        self._store(kw["Bucket"], key, held, stored)
        return {"ETag": stored.etag}

    def _store(self, bucket: str, key: str, held: Stored | None, stored: Stored | None) -> None:
        objects = self._objects[bucket]
        keys = self._keys[bucket]
        if stored is None:
            del objects[key]
            keys.pop(bisect.bisect_left(keys, key))
        else:
            if held is None:
                bisect.insort(keys, key)
            objects[key] = stored
        if self.on_write is not None:
            self.on_write(bucket, key, held, stored)

    def _read(self, kw: dict[str, Any], op: str) -> Stored:
        stored = self._bucket(kw["Bucket"], op).get(kw["Key"])
        if stored is None:
            raise client_error("NoSuchKey" if op == "GetObject" else "404", op, "Not Found")
        if "IfMatch" in kw and stored.etag != kw["IfMatch"]:
            raise client_error(
                "PreconditionFailed",
                op,
                "At least one of the pre-conditions you specified did not hold",
            )
        if "IfNoneMatch" in kw and kw["IfNoneMatch"] in (stored.etag, "*"):
            raise client_error("304", op, "Not Modified")
        return stored

    def _get(self, kw: dict[str, Any]) -> dict[str, Any]:
        stored = self._read(kw, "GetObject")
        data = stored.body
        response: dict[str, Any] = {
            "ETag": stored.etag,
            "ContentType": stored.content_type,
            "Metadata": dict(stored.metadata),
        }
        if "Range" in kw:
            first, last = _byte_range(str(kw["Range"]), len(data))
            response["ContentRange"] = f"bytes {first}-{last}/{len(data)}"
            data = data[first : last + 1]
        response["Body"] = Body(data)
        response["ContentLength"] = len(data)
        return response

    def _head(self, kw: dict[str, Any]) -> dict[str, Any]:
        stored = self._read(kw, "HeadObject")
        return {
            "ETag": stored.etag,
            "ContentLength": len(stored.body),
            "ContentType": stored.content_type,
            "Metadata": dict(stored.metadata),
        }

    def _delete(self, kw: dict[str, Any]) -> dict[str, Any]:
        objects = self._bucket(kw["Bucket"], "DeleteObject")
        held = objects.get(kw["Key"])
        if held is not None:
            self._store(kw["Bucket"], kw["Key"], held, None)
        return {}

    def _copy(self, kw: dict[str, Any]) -> dict[str, Any]:
        source = kw["CopySource"]
        if isinstance(source, str):
            bucket, _, key = source.lstrip("/").partition("/")
            source = {"Bucket": bucket, "Key": key}
        held = self._bucket(source["Bucket"], "CopyObject").get(source["Key"])
        if held is None:
            raise client_error("NoSuchKey", "CopyObject")
        if "CopySourceIfMatch" in kw and held.etag != kw["CopySourceIfMatch"]:
            raise client_error("PreconditionFailed", "CopyObject")
        objects = self._bucket(kw["Bucket"], "CopyObject")
        target = objects.get(kw["Key"])
        if kw.get("IfNoneMatch") == "*" and target is not None:
            raise client_error("PreconditionFailed", "CopyObject")
        replace = kw.get("MetadataDirective") == "REPLACE"
        stored = Stored(
            held.body,
            held.etag,
            kw.get("ContentType", held.content_type) if replace else held.content_type,
            dict(kw.get("Metadata", {})) if replace else dict(held.metadata),
            self.network.now_ms() if self.network else 0,
        )
        self._store(kw["Bucket"], kw["Key"], target, stored)
        return {"CopyObjectResult": {"ETag": stored.etag}}

    def _list(self, kw: dict[str, Any]) -> dict[str, Any]:
        bucket = kw["Bucket"]
        objects = self._bucket(bucket, "ListObjectsV2")
        keys = self._keys[bucket]
        prefix = kw.get("Prefix", "")
        delimiter = kw.get("Delimiter")
        max_keys = int(kw.get("MaxKeys", 1000))
        token = kw.get("ContinuationToken")
        after = token if token is not None else kw.get("StartAfter", "")
        at = bisect.bisect_right(keys, after) if after else bisect.bisect_left(keys, prefix)
        at = max(at, bisect.bisect_left(keys, prefix))
        contents: list[dict[str, Any]] = []
        commons: list[str] = []
        last = ""
        truncated = False
        while at < len(keys) and keys[at].startswith(prefix):
            key = keys[at]
            if (
                token is not None
                and delimiter
                and token.endswith(delimiter)
                and key.startswith(token)
            ):
                at += 1  # the rest of a common prefix already returned
                continue
            if len(contents) + len(commons) >= max_keys:
                truncated = True
                break
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if delimiter and cut >= 0:
                common = key[: cut + len(delimiter)]
                commons.append(common)
                last = common
                at = bisect.bisect_left(keys, common + "\U0010ffff")
                continue
            stored = objects[key]
            contents.append(
                {
                    "Key": key,
                    "ETag": stored.etag,
                    "Size": len(stored.body),
                    "LastModified": datetime.fromtimestamp(stored.modified_ms // 1000, UTC),
                }
            )
            last = key
            at += 1
        response: dict[str, Any] = {
            "IsTruncated": truncated,
            "KeyCount": len(contents) + len(commons),
            "MaxKeys": max_keys,
            "Prefix": prefix,
        }
        if contents:
            response["Contents"] = contents
        if commons:
            response["CommonPrefixes"] = [{"Prefix": p} for p in commons]
        if truncated:
            response["NextContinuationToken"] = last
        return response


def _byte_range(spec: str, size: int) -> tuple[int, int]:
    first_s, _, last_s = spec.removeprefix("bytes=").partition("-")
    if not first_s:  # a suffix: the last n bytes
        n = int(last_s)
        return max(0, size - n), size - 1
    first = int(first_s)
    last = size - 1 if not last_s else min(int(last_s), size - 1)
    if first >= size or first > last:
        raise client_error("InvalidRange", "GetObject", "The requested range is not satisfiable")
    return first, last
