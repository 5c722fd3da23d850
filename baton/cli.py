"""`baton` / `python -m baton`: submit, start, resume, watch, read and cancel runs.

Works against AWS, LocalStack or the embedded local stack (`baton.target` says
how it finds them). Exit codes, one rule for every command that follows a run
(`worker.progress.EXIT_CODES`): 0 the run is done and no task failed; 3 done
with failed tasks; 4 the run failed; 5 cancelled; 6 superseded; 7 gave up
waiting; 2 a usage error or a request the function refused (its own message is
printed); 1 an AWS error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from baton import estimate, local, runs, schedules
from baton.target import CliError, Target
from worker.clock import SYSTEM_CLOCK, Clock
from worker.exceptions import BatonError, TransientError
from worker.progress import EXIT_OK
from worker.s3 import S3Error

EXIT_AWS = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None, *, clock: Clock = SYSTEM_CLOCK) -> int:
    """`clock` is what "now" means to commands that read it (`schedule --at +1m`)."""
    args = build_parser().parse_args(argv)
    args.clock = clock
    try:
        target = Target.resolve(args.endpoint_url, args.bucket, args.function, args.prefix)
        result: int = args.run(args, target)
    except (TransientError, S3Error, ClientError, BotoCoreError) as exc:
        print(f"baton: AWS error: {exc}", file=sys.stderr)
        return EXIT_AWS
    except (CliError, BatonError) as exc:
        print(f"baton: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
        help="one endpoint for S3 and Lambda (LocalStack); default: AWS_ENDPOINT_URL_S3 and "
        "AWS_ENDPOINT_URL_LAMBDA, else a `baton stack up` stack in this directory, else AWS",
    )
    parser.add_argument("--bucket", help="the run bucket (default: $BATON_BUCKET)")
    parser.add_argument(
        "--function", help="the worker function name or ARN (default: baton-worker)"
    )
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_commands(sub)
    _local_commands(sub)
    return parser


def _run_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:

    p = sub.add_parser("submit", help="check a task list and upload it; the upload starts a run")
    p.add_argument("file", type=Path)
    p.add_argument("--key", help="object key (default: tasks/<file name>)")
    _chains_option(p)
    _watch_options(p)
    p.add_argument("--wait-s", type=float, default=60, help="how long to wait for the run")
    p.set_defaults(run=runs.cmd_submit)

    p = sub.add_parser(
        "start", help="start a run on an uploaded task list (or on every object under a prefix)"
    )
    p.add_argument("key", nargs="?", help="key of the task list in the bucket")
    p.add_argument("--position", type=_position, default=0)
    p.add_argument(
        "--prefix",
        dest="listing_prefix",
        metavar="S3_URL",
        help="instead of a list: every object under s3://BUCKET/PREFIX is a task",
    )
    p.add_argument("--suffix", help="with --prefix: only keys ending with this (.pdf)")
    p.add_argument(
        "--processor",
        choices=["presign", "sha256"],
        help="with --prefix: what to do per object (default: the function's, else presign)",
    )
    p.add_argument(
        "--presign-s", type=int, help="with --prefix: presigned URLs' lifetime (at most 7 days)"
    )
    _chains_option(p)
    _watch_options(p)
    p.set_defaults(run=runs.cmd_start)

    _crawl_command(sub)

    p = sub.add_parser("resume", help="resume a stopped run from its checkpoint or earlier")
    p.add_argument("run_id")
    p.add_argument("--position", type=_position, help="default: the checkpoint (of each chain)")
    _watch_options(p)
    p.set_defaults(run=runs.cmd_resume)

    p = sub.add_parser("status", help="state, legs, position, rate and ETA of a run")
    p.add_argument("run_id")
    _watch_options(p)
    p.add_argument(
        "--wait-s", type=float, default=60, help="with --watch: how long a run may take to start"
    )
    p.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    p.set_defaults(run=runs.cmd_status)

    p = sub.add_parser("results", help="stream a run's results as JSONL, in task order")
    p.add_argument("run_id")
    p.add_argument(
        "--presign",
        action="store_true",
        help="merge into one object and print a presigned URL of it",
    )
    p.add_argument("--expires", type=int, default=3600, help="presigned URL lifetime, s")
    p.set_defaults(run=runs.cmd_results)
    p.epilog = (
        "For a prefix run with the presign processor, --presign prints a URL of its "
        "presigned.jsonl (a {key, url, size, etag} line per object)."
    )

    p = sub.add_parser("cancel", help="stop a run at its next batch")
    p.add_argument("run_id")
    p.set_defaults(run=runs.cmd_cancel)

    p = sub.add_parser("runs", help="list runs, newest first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=runs.cmd_runs)

    p = sub.add_parser("sweep", help="run the sweep tick now (resumes stalled runs)")
    p.set_defaults(run=runs.cmd_sweep)
    _schedule_commands(sub)


def _crawl_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("crawl", help="crawl from seed URLs, following links to a depth")
    p.add_argument("seeds", nargs="+", metavar="URL", help="where the crawl starts")
    p.add_argument("--max-depth", type=int, help="links followed from a seed (default 3)")
    p.add_argument("--max-pages", type=int, help="pages in all (default 10000)")
    p.add_argument(
        "--scope",
        choices=["host", "domain", "hosts"],
        help="follow links to the seeds' hosts (default), their registrable domains, or --host",
    )
    p.add_argument("--host", action="append", dest="hosts", help="with --scope hosts; repeat")
    p.add_argument("--allow", action="append", help="a URL must match one such regex; repeat")
    p.add_argument("--deny", action="append", help="a URL must match none of these; repeat")
    p.add_argument("--no-robots", action="store_true", help="ignore robots.txt (default: obey)")
    p.add_argument("--per-host-concurrency", type=int, help="requests in flight per host (8)")
    p.add_argument("--per-host-delay-ms", type=int, help="least gap between requests to a host")
    p.add_argument("--user-agent", help="sent with every request, and matched in robots.txt")
    p.add_argument("--query", choices=["sort", "keep"], help="URL query parameters: sort or keep")
    p.add_argument("--sitemaps", action="store_true", help="also seed from the sites' sitemaps")
    p.add_argument("--processor", help="per-page work (module:function); default: extract")
    _chains_option(p)
    _watch_options(p)
    p.set_defaults(run=runs.cmd_crawl)


def _schedule_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("schedule", help="start a task list later: once, at a given time")
    p.add_argument("file", type=Path)
    p.add_argument(
        "--at",
        required=True,
        help="ISO 8601 with an offset (2026-11-29T14:05:00+01:00, ...Z) or +30s, +5m, +2h, +1d",
    )
    p.add_argument("--name", help="target name under tasks/ (default: the file's name)")
    _chains_option(p)
    p.add_argument(
        "--now-if-past",
        action="store_true",
        help="a time in the past starts at the next tick (default: refused)",
    )
    p.set_defaults(run=schedules.cmd_schedule)

    p = sub.add_parser(
        "estimate", help="run a few tasks here; predict legs, time and cost on Lambda"
    )
    p.add_argument("file", type=Path)
    p.add_argument("--memory", type=_memory, default=1024, help="function memory, MB")
    _chains_option(p)
    p.add_argument("--timeout-s", type=float, default=900.0, help="the function's timeout")
    p.add_argument(
        "--concurrency", type=_position, help="tasks in flight per chain (default: found)"
    )
    p.add_argument("--sample", type=_sample, default=20, help="tasks to run here")
    _allow_loopback(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=estimate.cmd_estimate)

    p = sub.add_parser("schedules", help="list schedules, due times in your zone and UTC")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=schedules.cmd_schedules)

    p = sub.add_parser("unschedule", help="cancel a schedule before it is due")
    p.add_argument("schedule_id")
    p.set_defaults(run=schedules.cmd_unschedule)


def _local_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:

    p = sub.add_parser("local", help="run a task list on a fresh embedded local stack")
    p.add_argument("file", type=Path)
    p.add_argument("--timeout-s", type=float, default=5.0, help="invocation timeout")
    _allow_loopback(p)
    p.set_defaults(run=local.cmd_local)

    p = sub.add_parser(
        "demo", help="a real multi-leg run on the embedded stack (or --endpoint-url: LocalStack)"
    )
    p.add_argument("--pages", type=int, default=300)
    p.add_argument("--timeout-s", type=float, default=4.0)
    p.add_argument("--chains", type=_chains, default=1, help="chains working the run at once")
    p.set_defaults(run=local.cmd_demo)

    p = sub.add_parser("stack", help="keep an embedded local stack running: up, down, env")
    stack = p.add_subparsers(dest="stack_command", required=True, metavar="ACTION")
    up = stack.add_parser("up", help="start it (Ctrl-C stops it), or --detach")
    up.add_argument("--detach", action="store_true", help="run in the background")
    up.add_argument("--s3-port", type=int, default=4571, help="0 picks a free port")
    up.add_argument("--lambda-port", type=int, default=4572, help="0 picks a free port")
    up.add_argument("--bucket", dest="stack_bucket", default="baton-local")
    up.add_argument("--timeout-s", type=float, default=30.0, help="the function's timeout")
    up.add_argument("--sweep-s", type=float, default=10.0, help="sweep tick interval")
    _allow_loopback(up)
    up.set_defaults(run=local.cmd_stack_up)
    stack.add_parser("down", help="stop the stack started here").set_defaults(
        run=local.cmd_stack_down
    )
    stack.add_parser("env", help="print its environment as export lines").set_defaults(
        run=local.cmd_stack_env
    )


def _watch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--watch", action="store_true", help="follow the run until it ends")
    p.add_argument("--json", action="store_true", help="JSON instead of lines for people")


def _chains_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--chains",
        type=_chains,
        help="chains working the run at once (default: the function's BATON_CHAINS)",
    )


def _chains(text: str) -> int:
    value = _position(text)
    if value < 1:
        raise argparse.ArgumentTypeError("a run needs at least one chain")
    return value


def _sample(text: str) -> int:
    value = _position(text)
    if value < 1:
        raise argparse.ArgumentTypeError("sample at least one task")
    return value


def _memory(text: str) -> int:
    value = _position(text)
    if not 128 <= value <= 10_240:
        raise argparse.ArgumentTypeError("Lambda memory is 128 to 10,240 MB")
    return value


def _allow_loopback(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-loopback",
        action="store_true",
        help="let tasks fetch 127.0.0.0/8 (refused by default, as in production)",
    )


def _position(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative: positions start at 0")
    return value
