"""The commands on runs: submit, start, resume, status, results, cancel, runs, sweep."""

from __future__ import annotations

import argparse
import json
import sys
import time
from hashlib import md5
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from baton.follow import describe, follow, say_started, wait_for_manifest
from baton.target import CliError, Target
from worker.crawl.spec import parse_spec_file as parse_crawl_file
from worker.events import quote_etag
from worker.exceptions import BatonError, TaskListError
from worker.names import CRAWL_SUFFIX, TRIGGER_SUFFIXES, triggers
from worker.progress import EXIT_OK, load_view, progress_line
from worker.start import CHAINS_METADATA
from worker.store import RunStore
from worker.tasks import parse_task_list

SYNC_CONFIG = Config(
    connect_timeout=5, read_timeout=900, retries={"total_max_attempts": 1, "mode": "standard"}
)
"""A synchronous start is answered in seconds (a huge list is indexed first); never retried,
since a retried start whose first answer was lost would be refused as live."""

THROTTLE_WAIT_S = 60.0
"""How long a throttled call keeps trying: a 429 never ran, so trying again is safe."""


def cmd_submit(args: argparse.Namespace, target: Target) -> int:
    bucket = target.require_bucket()
    body = checked_list(args.file)
    key = args.key or f"tasks/{args.file.name}"
    if not triggers(key):
        print(
            f"baton: warning: {key} is outside the trigger filter (tasks/ and "
            f"{', '.join(TRIGGER_SUFFIXES)}); no run will start",
            file=sys.stderr,
        )
    store = target.store()
    digest = f'"{md5(body).hexdigest()}"'  # S3's own ETag of a single-part upload
    before = set(store.runs_for_source(key, digest))
    metadata = {CHAINS_METADATA: str(args.chains)} if args.chains else None
    etag = quote_etag(
        store.objects.put(bucket, key, body, content_type=_content_type(key), metadata=metadata)
    )
    print(f"uploaded s3://{bucket}/{key} ({etag})")
    if etag != digest:
        before = set()
    deadline = time.monotonic() + args.wait_s
    while not (new := sorted(set(store.runs_for_source(key, etag)) - before)):
        if time.monotonic() > deadline:
            raise CliError(
                f"no run started within {args.wait_s:.0f}s of the upload: is the bucket's "
                "S3 notification to the function set up (see the README, Deploying)?"
            )
        time.sleep(0.5)
    run_id = new[-1]
    print(f"run {run_id}")
    return follow(store, run_id, sys.stdout, args.json) if args.watch else EXIT_OK


def cmd_start(args: argparse.Namespace, target: Target) -> int:
    if args.listing_prefix is not None:
        return _start_prefix(args, target)
    if args.key is None:
        raise CliError("name the task list's key, or --prefix s3://BUCKET/PREFIX")
    store = target.store()
    if store.objects.head(store.bucket, args.key) is None:
        raise CliError(f"s3://{store.bucket}/{args.key} does not exist")
    payload: dict[str, Any] = {"bucket": store.bucket, "key": args.key, "position": args.position}
    if args.chains:
        payload["chains"] = args.chains
    answer = call(target, payload)
    say_started(answer, sys.stdout)
    return follow(store, answer["run_id"], sys.stdout, args.json) if args.watch else EXIT_OK


def _start_prefix(args: argparse.Namespace, target: Target) -> int:
    """`baton start --prefix s3://BUCKET/PREFIX`: a manual prefix run, answered at once."""
    url = str(args.listing_prefix)
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not prefix:
        raise CliError(f"--prefix wants s3://BUCKET/PREFIX, got {url!r}")
    if target.bucket and bucket != target.bucket:
        raise CliError(
            f"{url} is not in the run bucket {target.bucket}: a prefix run lists in its own "
            "bucket (the one the sweep watches)"
        )
    if args.key is not None or args.position:
        raise CliError("--prefix takes no task list key and no --position")
    source: dict[str, Any] = {"prefix": prefix}
    for name in ("suffix", "processor", "presign_s"):
        if getattr(args, name) is not None:
            source[name] = getattr(args, name)
    payload: dict[str, Any] = {"bucket": bucket, "prefix": source}
    if args.chains:
        payload["chains"] = args.chains
    answer = call(target, payload)
    say_started(answer, sys.stdout)
    store = RunStore(target.store().objects, bucket, target.prefix)
    return follow(store, answer["run_id"], sys.stdout, args.json) if args.watch else EXIT_OK


CRAWL_OPTIONS = (
    "max_depth",
    "max_pages",
    "scope",
    "hosts",
    "allow",
    "deny",
    "per_host_concurrency",
    "per_host_delay_ms",
    "user_agent",
    "query",
    "processor",
)


def cmd_crawl(args: argparse.Namespace, target: Target) -> int:
    """`baton crawl URL... [options]`: a manual crawl, answered at once (the function checks
    the spec and says what is wrong with it)."""
    spec: dict[str, Any] = {"seeds": list(args.seeds)}
    for name in CRAWL_OPTIONS:
        if getattr(args, name) is not None:
            spec[name] = getattr(args, name)
    if args.no_robots:
        spec["robots"] = False
    if args.sitemaps:
        spec["sitemaps"] = True
    store = target.store()
    payload: dict[str, Any] = {"bucket": store.bucket, "crawl": spec}
    if args.chains:
        payload["chains"] = args.chains
    answer = call(target, payload)
    say_started(answer, sys.stdout)
    return follow(store, answer["run_id"], sys.stdout, args.json) if args.watch else EXIT_OK


def cmd_resume(args: argparse.Namespace, target: Target) -> int:
    store = target.store()
    record = store.load_run(args.run_id)
    payload: dict[str, Any] = {"bucket": record.bucket, "key": record.key, "run_id": args.run_id}
    if record.listing is not None:
        source = {k: record.listing[k] for k in ("prefix", "suffix") if record.listing.get(k)}
        payload = {"bucket": record.bucket, "prefix": source, "run_id": args.run_id}
    if record.crawl is not None and not record.key.endswith(CRAWL_SUFFIX):  # a manual crawl
        payload = {"bucket": record.bucket, "crawl": record.crawl, "run_id": args.run_id}
    if args.position is not None:
        payload["position"] = args.position  # else each chain from its checkpoint
    answer = call(target, payload)
    say_started(answer, sys.stdout)
    return follow(store, args.run_id, sys.stdout, args.json) if args.watch else EXIT_OK


def cmd_status(args: argparse.Namespace, target: Target) -> int:
    store = target.store()
    if args.watch:
        return follow(
            store, args.run_id, sys.stdout, args.json, interval=args.interval, wait_s=args.wait_s
        )
    if args.json:
        print(json.dumps(load_view(store, args.run_id).as_dict(), indent=2))
    else:
        print("\n".join(describe(store, args.run_id)))
    return EXIT_OK


def cmd_results(args: argparse.Namespace, target: Target) -> int:
    store = target.store()
    record = store.load_run(args.run_id)
    presigned = store.presigned_key(args.run_id)
    if args.presign and (record.listing or {}).get("processor") == "presign":
        if store.load_summary(args.run_id) is not None:
            wait_for_manifest(store, args.run_id)
        if store.objects.head(store.bucket, presigned) is None:
            raise CliError(f"run {args.run_id} has no {presigned} yet: it is written at the end")
        print(store.objects.presign(store.bucket, presigned, args.expires))
        return EXIT_OK
    if not args.presign:
        for row in store.rows(args.run_id):
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return EXIT_OK
    merged = f"{store.run_prefix(args.run_id)}results.jsonl"
    lines = (json.dumps(row, ensure_ascii=False) + "\n" for row in store.rows(args.run_id))
    body = "".join(lines).encode()
    store.objects.put(store.bucket, merged, body, content_type="application/x-ndjson")
    print(store.objects.presign(store.bucket, merged, args.expires))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, target: Target) -> int:
    store = target.store()
    v = load_view(store, args.run_id)  # every chain: chain 0000 may end long before the run
    if v.finished:
        raise CliError(f"run {args.run_id} already ended: {v.status}")
    store.request_cancel(args.run_id)
    print(f"run {args.run_id}: cancel requested; it stops at its next batch")
    return EXIT_OK


def cmd_runs(args: argparse.Namespace, target: Target) -> int:
    store = target.store()
    views = []
    for run_id in store.run_ids():
        try:
            views.append(load_view(store, run_id))
        except BatonError:
            continue
    views.sort(key=lambda v: v.record.created_ms, reverse=True)
    for v in views:
        print(json.dumps(v.as_dict()) if args.json else progress_line(v))
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace, target: Target) -> int:
    answer = call(target, {"action": "sweep"})
    print(
        f"sweep: {answer['checked']} active runs checked, resumed {answer['resumed'] or 'none'}, "
        f"tidied {len(answer['tidied'])}"
    )
    for error in answer["errors"]:
        print(f"baton: warning: {error}", file=sys.stderr)
    return EXIT_OK


def checked_list(path: Path) -> bytes:
    """The file's bytes, once it reads as a task list (or a crawl spec); a list's bad entries
    are only warned of."""
    if not path.is_file():
        raise CliError(f"{path} is not a file")
    body = path.read_bytes()
    if path.name.endswith(CRAWL_SUFFIX):
        try:
            parse_crawl_file(body, path.name)
        except ValueError as exc:
            raise CliError(f"{path}: {exc}") from exc
        return body
    try:
        tasks = parse_task_list(body)
    except TaskListError as exc:
        raise CliError(f"{path}: {exc}") from exc
    bad = [task for task in tasks if task.error is not None]
    if bad:
        shown = "; ".join(f"task {t.index}: {t.error}" for t in bad[:3])
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        print(
            f"baton: warning: {len(bad)} of {len(tasks)} entries are not valid tasks and will "
            f"be reported as failed: {shown}{more}",
            file=sys.stderr,
        )
    return body


def call(target: Target, payload: dict[str, Any]) -> dict[str, Any]:
    """Invoke the function synchronously and return its answer, or raise its refusal.

    A throttled invoke (every container busy at the reserved concurrency, say with
    chains) is tried again for a while; nothing else is, see SYNC_CONFIG.
    """
    client = target.lambda_client(SYNC_CONFIG)
    retrying = Retrying(
        retry=retry_if_exception(_throttled),
        stop=stop_after_delay(THROTTLE_WAIT_S),
        wait=wait_exponential_jitter(multiplier=0.5, max=5.0),
        before_sleep=lambda state: print(
            f"the function {target.function} is at its concurrency limit; trying again",
            file=sys.stderr,
        ),
        reraise=True,
    )
    response = retrying(
        client.invoke,
        FunctionName=target.function,
        InvocationType="RequestResponse",
        Payload=json.dumps(payload).encode(),
    )
    raw = response["Payload"].read()
    answer = json.loads(raw) if raw else None
    if response.get("FunctionError"):
        detail = answer.get("errorMessage", answer) if isinstance(answer, dict) else answer
        raise CliError(f"the function {target.function} failed: {detail}")
    if not isinstance(answer, dict) or "ok" not in answer:
        raise CliError(f"the function {target.function} answered {raw[:200]!r}: is it baton?")
    if not answer["ok"]:
        raise CliError(f"the function refused: {answer['error']}")
    result: dict[str, Any] = answer["results"][0]
    return result


def _throttled(exc: BaseException) -> bool:
    return (
        isinstance(exc, ClientError)
        and exc.response.get("Error", {}).get("Code") == "TooManyRequestsException"
    )


def _content_type(key: str) -> str:
    return "application/x-ndjson" if key.endswith(".jsonl") else "application/json"
