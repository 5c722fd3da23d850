"""The events the handler accepts, parsed strictly into small dataclasses.

Payloads are small and versioned and never carry the task list itself, so a
chain has no payload-size or history limit.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from worker.crawl.spec import CrawlSpec, parse_crawl_spec
from worker.crawl.urls import host_of
from worker.exceptions import BadEventError
from worker.listing import PrefixSource, parse_prefix_source, refuse_loops

LEG_VERSION = 2
"""v2 names the chain; a v1 payload (in flight across a deploy) is chain 0000 of its run."""
FIRST_CHAIN = "0000"
MAX_POSITION = 10**10 - 1
"""Result keys hold positions in ten digits."""


@dataclass(frozen=True)
class LegEvent:
    """The baton: which run, which pinned input, where to carry on."""

    run_id: str
    bucket: str
    key: str
    etag: str
    position: int
    leg: int
    chain: str = FIRST_CHAIN

    def payload(self) -> dict[str, Any]:
        return {"v": LEG_VERSION, **asdict(self)}


@dataclass(frozen=True)
class StartRequest:
    """Start a run on a task list, or resume one, at a position."""

    bucket: str
    key: str
    position: int | None = None
    """None: the start (0), or a resume from each chain's checkpoint."""
    etag: str | None = None
    run_id: str | None = None
    nonce: str = ""
    """Makes each upload its own run (the S3 sequencer); empty for manual starts."""
    source: str = "manual"
    chains: int | None = None
    """Chains asked for (manual `chains`, or the upload's `baton-chains` metadata)."""
    prefix: PrefixSource | None = None
    """A manual prefix run: `key` is then the listed prefix itself."""
    crawl: CrawlSpec | None = None
    """A manual crawl: `key` is then `crawl/{the first seed's host}`, which names the run."""


@dataclass(frozen=True)
class SweepEvent:
    at_ms: int | None = None
    """The tick's time (EventBridge's `time`, the minute the rule fired), which the schedule
    tick moves what is due at; None: the function's clock."""


@dataclass(frozen=True)
class IgnoredEvent:
    reason: str


Event = LegEvent | StartRequest | SweepEvent | IgnoredEvent

_LEG_FIELDS = {"v", "run_id", "bucket", "key", "etag", "position", "leg"}
_LEG_FIELDS_V2 = _LEG_FIELDS | {"chain"}
_MANUAL_REQUIRED = {"bucket"}
_MANUAL_SOURCES = {"key", "prefix", "crawl"}
_MANUAL_OPTIONAL = {"position", "run_id", "chains"}
_CHAIN = re.compile(r"^([0-9]{4}|s[0-9]{10})(\.[0-9]{1,6}){0,32}$")
"""Chain ids: four digits for the chains a run starts with, `s` and ten digits for a prefix
run's segment chain (its first index), `.n` per split stolen from one."""
_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,80}$")


def parse_event(event: Any, tasks_prefix: str, results_prefix: str) -> list[Event]:
    """Recognise an event; raise BadEventError with a clear reason otherwise."""
    if not isinstance(event, dict):
        raise BadEventError(f"event must be a JSON object, got {type(event).__name__}")
    if "Records" in event:
        return parse_s3_event(event, tasks_prefix, results_prefix)
    if event.get("action") == "sweep":
        _no_unknown(event, {"action", "time"}, "sweep event")
        return [SweepEvent(_tick_time(event["time"]) if "time" in event else None)]
    if "v" in event or "leg" in event:
        return [parse_leg_event(event)]
    if event.keys() & {"bucket", "key", "prefix", "crawl", "position"}:
        request = parse_manual_event(event)
        if request.prefix is not None:
            try:
                refuse_loops(request.prefix.prefix, tasks_prefix, results_prefix)
            except ValueError as exc:
                raise BadEventError(str(exc)) from None
        elif request.key.startswith(results_prefix):
            raise BadEventError(
                f"{request.key} is under the results prefix {results_prefix}: "
                "baton never reads its own output as a task list"
            )
        return [request]
    raise BadEventError(
        "unrecognised event: expected an S3 ObjectCreated notification, a manual start "
        '{"bucket", "key", "prefix" or "crawl", "position"?, "chains"?}, a leg payload '
        '{"v": 2, ...} or '
        '{"action": "sweep"}; '
        f"got keys {sorted(event)}"
    )


def parse_leg_event(event: dict[str, Any]) -> LegEvent:
    version = event.get("v")
    if version not in (1, LEG_VERSION):
        raise BadEventError(f"leg payload version {version!r} is not supported (want 1 or 2)")
    fields = _LEG_FIELDS if version == 1 else _LEG_FIELDS_V2
    _no_unknown(event, fields, "leg payload")
    missing = fields - event.keys()
    if missing:
        raise BadEventError(f"leg payload is missing {sorted(missing)}")
    run_id = _string(event, "run_id")
    if not _RUN_ID.match(run_id):
        raise BadEventError(f"leg payload has a malformed run_id {run_id!r}")
    chain = FIRST_CHAIN if version == 1 else _string(event, "chain")
    if not _CHAIN.match(chain):
        raise BadEventError(f"leg payload has a malformed chain {chain!r}")
    return LegEvent(
        run_id=run_id,
        bucket=_string(event, "bucket"),
        key=_string(event, "key"),
        etag=_string(event, "etag"),
        position=_position(event),
        leg=_count(event, "leg"),
        chain=chain,
    )


def parse_manual_event(event: dict[str, Any]) -> StartRequest:
    """`{"bucket", <one source>, "position"?, "run_id"?, "chains"?}`: the source is `key` (a
    task list), `prefix` (`{"prefix", "suffix"?, "processor"?, "presign_s"?}`) or `crawl`
    (a crawl spec, `worker.crawl.spec`)."""
    _no_unknown(event, _MANUAL_REQUIRED | _MANUAL_SOURCES | _MANUAL_OPTIONAL, "manual payload")
    missing = _MANUAL_REQUIRED - event.keys()
    if missing:
        raise BadEventError(f"manual payload is missing {sorted(missing)}")
    sources = sorted(_MANUAL_SOURCES & event.keys())
    if len(sources) != 1:
        raise BadEventError(
            'manual payload needs exactly one source, "key" (a task list), "prefix" '
            f'(objects under a prefix) or "crawl" (a crawl spec), got {sources or "none"}'
        )
    run_id = event.get("run_id")
    if run_id is not None and (not isinstance(run_id, str) or not _RUN_ID.match(run_id)):
        raise BadEventError(f"manual payload has a malformed run_id {run_id!r}")
    chains = event.get("chains")
    if chains is not None and (_count(event, "chains") < 1):
        raise BadEventError(f"'chains' must be a whole number >= 1, got {chains!r}")
    if "crawl" in event:
        if "position" in event:
            raise BadEventError(
                "'position' applies to a task list only: a crawl grows its own log "
                "(resume one with its run_id)"
            )
        try:
            spec = parse_crawl_spec(event["crawl"], "manual payload's 'crawl'")
        except ValueError as exc:
            raise BadEventError(str(exc)) from None
        return StartRequest(
            bucket=_string(event, "bucket"),
            key=crawl_key(spec),
            run_id=run_id,
            chains=chains,
            crawl=spec,
        )
    if "prefix" in event:
        if "position" in event:
            raise BadEventError(
                "'position' applies to a task list only: a prefix run lists its objects as "
                "it goes (resume one with its run_id)"
            )
        try:
            source = parse_prefix_source(event["prefix"], "manual payload's 'prefix'")
        except ValueError as exc:
            raise BadEventError(str(exc)) from None
        return StartRequest(
            bucket=_string(event, "bucket"),
            key=source.prefix,
            run_id=run_id,
            chains=chains,
            prefix=source,
        )
    return StartRequest(
        bucket=_string(event, "bucket"),
        key=_string(event, "key"),
        position=_position(event) if "position" in event else None,
        run_id=run_id,
        chains=chains,
    )


def parse_s3_event(event: dict[str, Any], tasks_prefix: str, results_prefix: str) -> list[Event]:
    records = event.get("Records")
    if not isinstance(records, list) or not records:
        raise BadEventError("S3 event has no Records")
    out: list[Event] = []
    for number, record in enumerate(records):
        try:
            s3 = record["s3"]
            bucket = s3["bucket"]["name"]
            obj = s3["object"]
            key = unquote_plus(obj["key"])
        except (KeyError, TypeError) as exc:
            raise BadEventError(f"S3 record {number} is malformed: missing {exc}") from exc
        name = str(record.get("eventName", ""))
        if record.get("eventSource") != "aws:s3" or not name.startswith("ObjectCreated"):
            out.append(IgnoredEvent(f"record {number} is {name or 'not an S3 event'}"))
        elif key.startswith(results_prefix):
            out.append(IgnoredEvent(f"{key} is under the results prefix {results_prefix}"))
        elif not key.startswith(tasks_prefix):
            out.append(IgnoredEvent(f"{key} is outside the tasks prefix {tasks_prefix}"))
        else:
            etag = obj.get("eTag") or obj.get("etag")
            out.append(
                StartRequest(
                    bucket=bucket,
                    key=key,
                    etag=quote_etag(etag) if etag else None,
                    nonce=str(obj.get("sequencer") or record.get("eventTime") or ""),
                    source="s3",
                )
            )
    return out


def crawl_key(spec: CrawlSpec) -> str:
    """What names a manual crawl's run (its id's readable part): its first seed's host."""
    return f"crawl/{host_of(spec.seeds[0])}"


def derive_run_id(bucket: str, key: str, etag: str, nonce: str = "") -> str:
    """Same object version and upload give the same run, so duplicates collapse."""
    # A list's file name; a prefix (it ends with "/"), all of it: "reports-2026-04".
    stem = key if key.endswith("/") else key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode().lower()
    stem = re.sub(r"[^a-z0-9]+", "-", ascii_stem).strip("-")[:40] or "run"
    digest = hashlib.sha256(f"{bucket}\n{key}\n{etag}\n{nonce}".encode()).hexdigest()[:12]
    return f"{stem}-{digest}"


def _tick_time(value: Any) -> int:
    """EventBridge's `time` (ISO 8601, UTC) as epoch milliseconds."""
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise BadEventError(f"sweep event 'time' {value!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise BadEventError(f"sweep event 'time' {value!r} has no offset")
    return int(when.timestamp() * 1000)


def quote_etag(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _no_unknown(event: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = event.keys() - allowed
    if unknown:
        raise BadEventError(f"{what} has unknown fields {sorted(unknown)}")


def _string(event: dict[str, Any], name: str) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value:
        raise BadEventError(f"{name!r} must be a non-empty string, got {value!r}")
    return value


def _count(event: dict[str, Any], name: str) -> int:
    value = event.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadEventError(f"{name!r} must be a non-negative integer, got {value!r}")
    return value


def _position(event: dict[str, Any]) -> int:
    position = _count(event, "position")
    if position > MAX_POSITION:
        raise BadEventError(f"'position' {position} is larger than {MAX_POSITION}")
    return position
