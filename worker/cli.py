"""`baton` / `python -m worker`: submit, start, resume, watch, read and cancel runs.

Works against AWS, LocalStack or the embedded local stack: boto3 picks the
endpoint from `--endpoint-url` or the usual AWS_ENDPOINT_URL* variables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from worker.container import BOTO_CONFIG
from worker.events import derive_run_id, quote_etag
from worker.exceptions import BatonError
from worker.progress import progress_line, view
from worker.state import TERMINAL, RunStore

DEFAULT_FUNCTION = "baton-worker"


class CliError(Exception):
    """A mistake the user can fix; printed without a traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
    except (CliError, BatonError) as exc:
        print(f"baton: error: {exc}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as exc:
        print(f"baton: AWS error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="baton", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--endpoint-url",
        default=os.environ.get("BATON_ENDPOINT_URL"),
        help="S3 and Lambda endpoint (LocalStack, the embedded stack)",
    )
    parser.add_argument(
        "--bucket",
        default=os.environ.get("BATON_BUCKET"),
        help="the run bucket (default: $BATON_BUCKET)",
    )
    parser.add_argument(
        "--function",
        default=os.environ.get("BATON_FUNCTION", DEFAULT_FUNCTION),
        help="the worker function name or ARN (default: baton-worker)",
    )
    parser.add_argument(
        "--prefix", default=os.environ.get("BATON_RESULTS_PREFIX", "runs/"), help=argparse.SUPPRESS
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("submit", help="upload a task list; the upload starts a run")
    p.add_argument("file", type=Path)
    p.add_argument("--key", help="object key (default: tasks/<file name>)")
    p.add_argument("--watch", action="store_true", help="follow the run until it ends")
    p.add_argument("--wait-s", type=float, default=60, help="how long to wait for the run")
    p.set_defaults(run=cmd_submit)

    p = sub.add_parser("start", help="start a run on an uploaded task list, at a position")
    p.add_argument("key", help="key of the task list in the bucket")
    p.add_argument("--position", type=int, default=0)
    p.add_argument("--watch", action="store_true")
    p.set_defaults(run=cmd_start)

    p = sub.add_parser("resume", help="resume a stopped run from its checkpoint or earlier")
    p.add_argument("run_id")
    p.add_argument("--position", type=int, help="default: the run's checkpoint")
    p.add_argument("--watch", action="store_true")
    p.set_defaults(run=cmd_resume)

    p = sub.add_parser("status", help="state, legs, position, rate and ETA of a run")
    p.add_argument("run_id")
    p.add_argument("--watch", action="store_true", help="a live progress bar until the end")
    p.add_argument("--json", action="store_true")
    p.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    p.set_defaults(run=cmd_status)

    p = sub.add_parser("results", help="stream a run's results as JSONL, in task order")
    p.add_argument("run_id")
    p.add_argument(
        "--presign",
        action="store_true",
        help="merge into one manifest object and print a presigned URL",
    )
    p.add_argument("--expires", type=int, default=3600, help="presigned URL lifetime, s")
    p.set_defaults(run=cmd_results)

    p = sub.add_parser("cancel", help="stop a run at its next batch")
    p.add_argument("run_id")
    p.set_defaults(run=cmd_cancel)

    p = sub.add_parser("runs", help="list runs, newest first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_runs)

    p = sub.add_parser("sweep", help="send the sweep tick now (resumes stalled runs)")
    p.set_defaults(run=cmd_sweep)

    p = sub.add_parser("local", help="run a task list on the embedded local stack")
    p.add_argument("file", type=Path)
    p.add_argument("--timeout-s", type=float, default=5.0, help="invocation timeout")
    p.add_argument(
        "--allow-loopback",
        action="store_true",
        help="let tasks fetch 127.0.0.0/8 (off by default, like production)",
    )
    p.set_defaults(run=cmd_local)

    p = sub.add_parser(
        "demo", help="a real multi-leg run on the embedded stack (or --endpoint-url: LocalStack)"
    )
    p.add_argument("--pages", type=int, default=300)
    p.add_argument("--timeout-s", type=float, default=4.0)
    p.set_defaults(run=cmd_demo)
    return parser


# commands
def cmd_submit(args: argparse.Namespace) -> int:
    s3 = _s3(args)
    bucket = _bucket(args)
    if not args.file.is_file():
        raise CliError(f"{args.file} is not a file")
    key = args.key or f"tasks/{args.file.name}"
    if not key.startswith("tasks/") or not key.endswith((".json", ".jsonl")):
        print(
            f"baton: warning: {key} is outside the trigger filter (tasks/*.json, "
            "tasks/*.jsonl); no run will start",
            file=sys.stderr,
        )
    etag = quote_etag(s3.put_object(Bucket=bucket, Key=key, Body=args.file.read_bytes())["ETag"])
    print(f"uploaded s3://{bucket}/{key} ({etag})")
    store = RunStore(s3, bucket, args.prefix)
    deadline = time.monotonic() + args.wait_s
    while not (runs := store.runs_for_source(key, etag)):
        if time.monotonic() > deadline:
            raise CliError(f"no run started within {args.wait_s:.0f}s: is the S3 trigger set up?")
        time.sleep(0.5)
    print(f"run {runs[-1]}")
    return _watch(store, runs[-1], sys.stdout) if args.watch else 0


def cmd_start(args: argparse.Namespace) -> int:
    s3, bucket = _s3(args), _bucket(args)
    try:
        etag = quote_etag(s3.head_object(Bucket=bucket, Key=args.key)["ETag"])
    except ClientError as exc:
        raise CliError(f"s3://{bucket}/{args.key} cannot be read: {exc}") from exc
    _invoke(args, {"bucket": bucket, "key": args.key, "position": args.position})
    run_id = derive_run_id(bucket, args.key, etag)
    print(f"run {run_id} starting at position {args.position}")
    return _watch(RunStore(s3, bucket, args.prefix), run_id, sys.stdout) if args.watch else 0


def cmd_resume(args: argparse.Namespace) -> int:
    store = RunStore(_s3(args), _bucket(args), args.prefix)
    record = store.load_run(args.run_id)
    checkpoint = store.load_checkpoint(args.run_id).checkpoint
    position = checkpoint.position if args.position is None else args.position
    _invoke(
        args,
        {"bucket": record.bucket, "key": record.key, "position": position, "run_id": args.run_id},
    )
    print(f"run {args.run_id} resuming at position {position}")
    return _watch(store, args.run_id, sys.stdout) if args.watch else 0


def cmd_status(args: argparse.Namespace) -> int:
    store = RunStore(_s3(args), _bucket(args), args.prefix)
    if args.watch:
        return _watch(store, args.run_id, sys.stdout, args.interval)
    v = view(store.load_run(args.run_id), store.load_checkpoint(args.run_id).checkpoint)
    print(json.dumps(v.as_dict(), indent=2) if args.json else progress_line(v))
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    s3, bucket = _s3(args), _bucket(args)
    store = RunStore(s3, bucket, args.prefix)
    store.load_run(args.run_id)
    if not args.presign:
        for _, _, key in store.result_keys(args.run_id):
            sys.stdout.write(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
        return 0
    manifest = f"{store.run_prefix(args.run_id)}results.jsonl"
    body = b"".join(
        s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        for _, _, key in store.result_keys(args.run_id)
    )
    s3.put_object(Bucket=bucket, Key=manifest, Body=body, ContentType="application/x-ndjson")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": manifest}, ExpiresIn=args.expires
    )
    print(url)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    store = RunStore(_s3(args), _bucket(args), args.prefix)
    checkpoint = store.load_checkpoint(args.run_id).checkpoint
    if checkpoint.status in TERMINAL:
        raise CliError(f"run {args.run_id} already ended: {checkpoint.status}")
    store.request_cancel(args.run_id)
    print(f"run {args.run_id}: cancel requested; it stops at its next batch")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    store = RunStore(_s3(args), _bucket(args), args.prefix)
    views = []
    for run_id in store.run_ids():
        try:
            views.append(view(store.load_run(run_id), store.load_checkpoint(run_id).checkpoint))
        except BatonError:
            continue
    views.sort(key=lambda v: v.record.created_ms, reverse=True)
    for v in views:
        print(json.dumps(v.as_dict()) if args.json else progress_line(v))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    _invoke(args, {"action": "sweep"})
    print("sweep tick sent")
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    from worker.local.demo import run_local

    if not args.file.is_file():
        raise CliError(f"{args.file} is not a file")
    return run_local(args.file, timeout_s=args.timeout_s, allow_loopback=args.allow_loopback)


def cmd_demo(args: argparse.Namespace) -> int:
    from worker.local.demo import run_demo, run_remote_demo

    if args.endpoint_url:
        return run_remote_demo(args.endpoint_url, _bucket(args), pages=args.pages)
    return run_demo(pages=args.pages, timeout_s=args.timeout_s)


# helpers
def _watch(store: RunStore, run_id: str, out: TextIO, interval: float = 1.0) -> int:
    """Redraw the progress line until the run ends; exit 0 only if it is done."""
    while True:
        try:
            v = view(store.load_run(run_id), store.load_checkpoint(run_id).checkpoint)
        except BatonError:
            time.sleep(interval)
            continue
        out.write("\r" + progress_line(v) + "\x1b[K" if out.isatty() else progress_line(v) + "\n")
        out.flush()
        if v.checkpoint.status in TERMINAL:
            if out.isatty():
                out.write("\n")
            summary = store.load_summary(run_id)
            if summary is not None:
                out.write(json.dumps(summary, indent=2) + "\n")
            return 0 if v.checkpoint.status == "done" else 1
        time.sleep(interval)


def _s3(args: argparse.Namespace) -> Any:
    return boto3.client("s3", endpoint_url=args.endpoint_url, config=BOTO_CONFIG)


def _invoke(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    client = boto3.client("lambda", endpoint_url=args.endpoint_url, config=BOTO_CONFIG)
    response = client.invoke(
        FunctionName=args.function, InvocationType="Event", Payload=json.dumps(payload).encode()
    )
    if response.get("StatusCode") != 202:
        raise CliError(f"invoke {args.function} answered {response.get('StatusCode')}")


def _bucket(args: argparse.Namespace) -> str:
    if not args.bucket:
        raise CliError("no bucket: pass --bucket or set BATON_BUCKET")
    return str(args.bucket)
