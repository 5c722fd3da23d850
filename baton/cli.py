"""`baton` / `python -m baton`: submit, start, resume, watch, read and cancel runs.

Works against AWS, LocalStack or the embedded local stack: boto3 picks the
endpoint from `--endpoint-url` or the usual AWS_ENDPOINT_URL* variables.

Exit codes, one rule for every command that follows a run (`worker.progress.EXIT_CODES`):
0 the run is done and no task failed; 3 done with failed tasks; 4 the run
failed; 5 cancelled; 6 superseded; 7 gave up waiting; 2 a usage error or a
request the function refused (its own message is printed); 1 an AWS error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from hashlib import md5
from pathlib import Path
from typing import Any, TextIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from worker.container import BOTO_CONFIG
from worker.events import quote_etag
from worker.exceptions import BatonError, RunNotFoundError, TaskListError, TransientError
from worker.progress import EXIT_OK, exit_code, progress_line, summary_lines, view
from worker.s3 import S3Error
from worker.store import RunStore
from worker.tasks import parse_task_list

DEFAULT_FUNCTION = "baton-worker"
EXIT_AWS = 1
EXIT_USAGE = 2
SYNC_CONFIG = Config(
    connect_timeout=5, read_timeout=900, retries={"total_max_attempts": 1, "mode": "standard"}
)
"""A synchronous start is answered in seconds (a huge list is indexed first); never retried,
since a retried start whose first answer was lost would be refused as live."""


class CliError(Exception):
    """A mistake the user can fix; printed without a traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
    except (TransientError, S3Error) as exc:
        print(f"baton: AWS error: {exc}", file=sys.stderr)
        return EXIT_AWS
    except (CliError, BatonError) as exc:
        print(f"baton: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ClientError, BotoCoreError) as exc:
        print(f"baton: AWS error: {exc}", file=sys.stderr)
        return EXIT_AWS
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`baton results RUN | head`): that is not an error. Point
        # stdout at /dev/null so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
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
    _watch_options(p)
    p.add_argument("--wait-s", type=float, default=60, help="how long to wait for the run")
    p.set_defaults(run=cmd_submit)

    p = sub.add_parser("start", help="start a run on an uploaded task list, at a position")
    p.add_argument("key", help="key of the task list in the bucket")
    p.add_argument("--position", type=_position, default=0)
    _watch_options(p)
    p.set_defaults(run=cmd_start)

    p = sub.add_parser("resume", help="resume a stopped run from its checkpoint or earlier")
    p.add_argument("run_id")
    p.add_argument("--position", type=_position, help="default: the run's checkpoint")
    _watch_options(p)
    p.set_defaults(run=cmd_resume)

    p = sub.add_parser("status", help="state, legs, position, rate and ETA of a run")
    p.add_argument("run_id")
    _watch_options(p)
    p.add_argument(
        "--wait-s", type=float, default=60, help="with --watch: how long a run may take to start"
    )
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


def _watch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--watch", action="store_true", help="follow the run until it ends")
    p.add_argument("--json", action="store_true", help="JSON instead of lines for people")


# commands
def cmd_submit(args: argparse.Namespace) -> int:
    bucket = _bucket(args)
    body = _checked_list(args.file)
    key = args.key or f"tasks/{args.file.name}"
    if not key.startswith("tasks/") or not key.endswith((".json", ".jsonl")):
        print(
            f"baton: warning: {key} is outside the trigger filter (tasks/*.json, "
            "tasks/*.jsonl); no run will start",
            file=sys.stderr,
        )
    store = _store(args)
    digest = md5(body).hexdigest()  # S3's own ETag of a single-part upload
    before = set(store.runs_for_source(key, f'"{digest}"'))
    etag = quote_etag(store.objects.put(bucket, key, body, content_type=_content_type(key)))
    print(f"uploaded s3://{bucket}/{key} ({etag})")
    if etag != f'"{digest}"':
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
    if args.watch:
        return _watch(store, run_id, sys.stdout, args.json)
    return EXIT_OK


def cmd_start(args: argparse.Namespace) -> int:
    store = _store(args)
    if store.objects.head(store.bucket, args.key) is None:
        raise CliError(f"s3://{store.bucket}/{args.key} does not exist")
    answer = _call(args, {"bucket": store.bucket, "key": args.key, "position": args.position})
    _say_started(answer)
    return _watch(store, answer["run_id"], sys.stdout, args.json) if args.watch else EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    store = _store(args)
    record = store.load_run(args.run_id)
    checkpoint = store.load_checkpoint(args.run_id).checkpoint
    position = checkpoint.position if args.position is None else args.position
    answer = _call(
        args,
        {"bucket": record.bucket, "key": record.key, "position": position, "run_id": args.run_id},
    )
    _say_started(answer)
    return _watch(store, args.run_id, sys.stdout, args.json) if args.watch else EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.watch:
        return _watch(
            store, args.run_id, sys.stdout, args.json, interval=args.interval, wait_s=args.wait_s
        )
    v = view(store.load_run(args.run_id), store.load_checkpoint(args.run_id).checkpoint)
    print(json.dumps(v.as_dict(), indent=2) if args.json else progress_line(v))
    return EXIT_OK


def cmd_results(args: argparse.Namespace) -> int:
    store = _store(args)
    store.load_run(args.run_id)
    if not args.presign:
        for _, _, key in store.result_keys(args.run_id):
            sys.stdout.buffer.write(store.read_bytes(key))
        sys.stdout.flush()
        return EXIT_OK
    manifest = f"{store.run_prefix(args.run_id)}results.jsonl"
    body = b"".join(store.read_bytes(key) for _, _, key in store.result_keys(args.run_id))
    store.objects.put(store.bucket, manifest, body, content_type="application/x-ndjson")
    print(store.objects.presign(store.bucket, manifest, args.expires))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    store = _store(args)
    checkpoint = store.load_checkpoint(args.run_id).checkpoint
    if checkpoint.finished:
        raise CliError(f"run {args.run_id} already ended: {checkpoint.status}")
    store.request_cancel(args.run_id)
    print(f"run {args.run_id}: cancel requested; it stops at its next batch")
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    store = _store(args)
    views = []
    for run_id in store.run_ids():
        try:
            views.append(view(store.load_run(run_id), store.load_checkpoint(run_id).checkpoint))
        except BatonError:
            continue
    views.sort(key=lambda v: v.record.created_ms, reverse=True)
    for v in views:
        print(json.dumps(v.as_dict()) if args.json else progress_line(v))
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    answer = _call(args, {"action": "sweep"})
    print(
        f"sweep: {answer['checked']} active runs checked, resumed {answer['resumed'] or 'none'}, "
        f"tidied {len(answer['tidied'])}"
    )
    for error in answer["errors"]:
        print(f"baton: warning: {error}", file=sys.stderr)
    return EXIT_OK


def cmd_local(args: argparse.Namespace) -> int:
    from devstack.demo import run_local

    body = _checked_list(args.file)
    return run_local(
        args.file.name, body, timeout_s=args.timeout_s, allow_loopback=args.allow_loopback
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from devstack.demo import run_demo, run_remote_demo

    if args.endpoint_url:
        return run_remote_demo(args.endpoint_url, _bucket(args), pages=args.pages)
    return run_demo(pages=args.pages, timeout_s=args.timeout_s)


# helpers
def _checked_list(path: Path) -> bytes:
    """The file's bytes, once it reads as a task list; its bad entries are only warned of."""
    if not path.is_file():
        raise CliError(f"{path} is not a file")
    body = path.read_bytes()
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


def _watch(
    store: RunStore,
    run_id: str,
    out: TextIO,
    as_json: bool = False,
    *,
    interval: float = 1.0,
    wait_s: float = 60.0,
) -> int:
    """Follow the run to its end; the exit code follows `exit_code`.

    On a terminal the bar is redrawn in place; piped, a line is written only when
    the run moves (position, leg or state), so a log of it stays readable.
    """
    store.load_run(run_id)  # a run that does not exist fails here, like `status`
    tty = out.isatty()
    started = time.monotonic()
    last = None
    while True:
        try:
            v = view(store.load_run(run_id), store.load_checkpoint(run_id).checkpoint)
        except RunNotFoundError:
            if time.monotonic() - started > wait_s:
                raise CliError(f"run {run_id} has not started within {wait_s:.0f}s") from None
            time.sleep(interval)
            continue
        cp = v.checkpoint
        line = progress_line(v)
        if tty:
            out.write("\r" + line + "\x1b[K")
        elif (cp.position, cp.leg, v.state) != last:
            out.write(line + "\n")
        last = (cp.position, cp.leg, v.state)
        out.flush()
        if cp.finished:
            if tty:
                out.write("\n")
            summary = store.load_summary(run_id)
            if summary is not None:
                text = (
                    json.dumps(summary, indent=2) if as_json else "\n".join(summary_lines(summary))
                )
                out.write(text + "\n")
            return exit_code(cp.status, cp.failed)
        time.sleep(interval)


def _say_started(answer: dict[str, Any]) -> None:
    verb = {"started": "starting", "resumed": "resuming"}.get(answer["outcome"], answer["outcome"])
    print(f"run {answer['run_id']} {verb} at position {answer['position']} of {answer['total']}")
    if answer.get("note"):
        print(f"note: {answer['note']}")


def _store(args: argparse.Namespace) -> RunStore:
    client = boto3.client("s3", endpoint_url=args.endpoint_url, config=BOTO_CONFIG)
    return RunStore.over(client, _bucket(args), args.prefix)


def _content_type(key: str) -> str:
    return "application/x-ndjson" if key.endswith(".jsonl") else "application/json"


def _call(args: argparse.Namespace, payload: dict[str, Any]) -> dict[str, Any]:
    """Invoke the function synchronously and return its answer, or raise its refusal."""
    client = boto3.client("lambda", endpoint_url=args.endpoint_url, config=SYNC_CONFIG)
    response = client.invoke(
        FunctionName=args.function,
        InvocationType="RequestResponse",
        Payload=json.dumps(payload).encode(),
    )
    raw = response["Payload"].read()
    answer = json.loads(raw) if raw else None
    if response.get("FunctionError"):
        detail = answer if not isinstance(answer, dict) else answer.get("errorMessage", answer)
        raise CliError(f"the function {args.function} failed: {detail}")
    if not isinstance(answer, dict) or "ok" not in answer:
        raise CliError(f"the function {args.function} answered {raw[:200]!r}: is it baton?")
    if not answer["ok"]:
        raise CliError(f"the function refused: {answer['error']}")
    result: dict[str, Any] = answer["results"][0]
    return result


def _bucket(args: argparse.Namespace) -> str:
    if not args.bucket:
        raise CliError("no bucket: pass --bucket or set BATON_BUCKET")
    return str(args.bucket)


def _position(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative: positions start at 0")
    return value
