"""The commands that run the dev stack: `demo`, `local`, and `stack up|down|env`.

They import `devstack` only when run, so `pip install .` gives a working CLI
for AWS and LocalStack, and `pip install .[local]` adds these.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from baton.runs import checked_list
from baton.target import CliError, Target
from devstack.statefile import STATE_FILE, load
from worker.progress import EXIT_OK

DETACH_WAIT_S = 60.0


def cmd_local(args: argparse.Namespace, target: Target) -> int:
    body = checked_list(args.file)
    demo: Any = _devstack("devstack.demo")
    code: int = demo.run_local(
        args.file.name, body, timeout_s=args.timeout_s, allow_loopback=args.allow_loopback
    )
    return code


def cmd_demo(args: argparse.Namespace, target: Target) -> int:
    demo: Any = _devstack("devstack.demo")
    if args.endpoint_url:
        code: int = demo.run_remote_demo(
            args.endpoint_url, target.require_bucket(), pages=args.pages
        )
        return code
    code = demo.run_demo(pages=args.pages, timeout_s=args.timeout_s, chains=args.chains)
    return code


def cmd_stack_up(args: argparse.Namespace, target: Target) -> int:
    running = load()
    if running is not None:
        raise CliError(
            f"a stack is already running here (pid {running.pid}); `baton stack down` stops it"
        )
    if args.detach:
        return _detach(args)
    serving: Any = _devstack("devstack.serve")
    options = serving.ServeOptions(
        s3_port=args.s3_port,
        lambda_port=args.lambda_port,
        bucket=args.stack_bucket,
        timeout_s=args.timeout_s,
        allow_loopback=args.allow_loopback,
        sweep_interval_s=args.sweep_s,
    )
    print("stack starting; Ctrl-C stops it", flush=True)
    code: int = serving.serve(options)
    return code


def cmd_stack_down(args: argparse.Namespace, target: Target) -> int:
    running = load()
    if running is None:
        print("no stack is running here")
        return EXIT_OK
    os.kill(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while load() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if load() is not None:
        raise CliError(f"the stack (pid {running.pid}) did not stop within 30 s")
    print(f"stack stopped (pid {running.pid})")
    return EXIT_OK


def cmd_stack_env(args: argparse.Namespace, target: Target) -> int:
    running = load()
    if running is None:
        raise CliError("no stack is running here: `baton stack up --detach` starts one")
    sys.stdout.write(running.exports())
    return EXIT_OK


def _detach(args: argparse.Namespace) -> int:
    """Start `baton stack up` in the background and return once it is serving."""
    log = STATE_FILE.parent / "stack.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "baton",
        "stack",
        "up",
        "--s3-port",
        str(args.s3_port),
        "--lambda-port",
        str(args.lambda_port),
        "--bucket",
        args.stack_bucket,
        "--timeout-s",
        str(args.timeout_s),
        "--sweep-s",
        str(args.sweep_s),
        *(["--allow-loopback"] if args.allow_loopback else []),
    ]
    with log.open("ab") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + DETACH_WAIT_S
    while (running := load()) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            tail = _tail(log)
            raise CliError(f"the stack did not start (see {log}):\n{tail}")
        time.sleep(0.1)
    print(
        f"stack up in the background (pid {running.pid}): S3 {running.s3_endpoint_url}, "
        f"Lambda {running.lambda_endpoint_url}, bucket {running.bucket}; "
        f"logs {running.log_file}; `baton stack down` stops it"
    )
    print('baton commands here find it; for other tools, `eval "$(baton stack env)"`')
    return EXIT_OK


def _devstack(module: str) -> ModuleType:
    """Import a dev-stack module, or say how to install what it needs."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise CliError(
            f"this command runs the embedded local stack, which needs {exc.name!r}: "
            "pip install 'baton[local]' (from a checkout: pip install '.[local]', or make setup)"
        ) from exc


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
