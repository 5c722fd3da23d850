"""`baton stack up`: the embedded stack kept running, until Ctrl-C or `baton stack down`.

It listens on fixed ports (so the exported environment stays valid across
restarts), sends the sweep tick as the template's EventBridge rule does, and
records where it is in `.baton/stack.json` for the CLI to find.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TextIO

from devstack.lambda_runtime import FunctionConfig
from devstack.stack import EmbeddedStack, default_function
from devstack.statefile import STATE_FILE, StackState, load

DEFAULT_S3_PORT = 4571
DEFAULT_LAMBDA_PORT = 4572


@dataclass(frozen=True)
class ServeOptions:
    s3_port: int = DEFAULT_S3_PORT
    lambda_port: int = DEFAULT_LAMBDA_PORT
    bucket: str = "baton-local"
    timeout_s: float = 30.0
    allow_loopback: bool = False
    sweep_interval_s: float = 10.0
    """The template ticks every minute; locally a stalled chain is resumed sooner."""
    state_file: Path = STATE_FILE

    def function(self) -> FunctionConfig:
        base = default_function(self.bucket)
        environment = {**base.environment, "BATON_LOG_FORMAT": "json"}
        if self.allow_loopback:
            environment["BATON_ALLOW_NETS"] = "127.0.0.0/8"
        return replace(base, timeout_s=self.timeout_s, environment=environment, max_concurrency=8)


def serve(options: ServeOptions, out: TextIO = sys.stdout) -> int:
    """Run the stack in this process until SIGINT or SIGTERM; 2 if one already runs here."""
    running = load(options.state_file)
    if running is not None:
        out.write(
            f"a stack is already running here (pid {running.pid}, S3 "
            f"{running.s3_endpoint_url}); `baton stack down` stops it\n"
        )
        return 2
    log_file = options.state_file.parent / "containers.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    stack = EmbeddedStack(
        options.function(),
        bucket=options.bucket,
        log_file=log_file,
        sweep_interval_s=options.sweep_interval_s,
        s3_port=options.s3_port,
        lambda_port=options.lambda_port,
    )
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with stack:
            state = StackState(
                s3_endpoint_url=stack.s3_endpoint_url,
                lambda_endpoint_url=stack.lambda_endpoint_url,
                bucket=stack.bucket,
                function=stack.function.name,
                pid=os.getpid(),
                log_file=str(log_file),
            )
            state.save(options.state_file)
            out.write(_banner(stack, state, options))
            out.flush()
            try:
                while not stopping.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
            finally:
                options.state_file.unlink(missing_ok=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    out.write("stack stopped\n")
    return 0


def _banner(stack: EmbeddedStack, state: StackState, options: ServeOptions) -> str:
    fn = stack.function
    guard = "loopback allowed" if options.allow_loopback else "private addresses refused"
    return (
        f"S3      {state.s3_endpoint_url}  bucket {state.bucket}\n"
        f"Lambda  {state.lambda_endpoint_url}  function {fn.name} "
        f"(timeout {fn.timeout_s:g} s, {guard}, sweep every {options.sweep_interval_s:g} s)\n"
        f"logs    {state.log_file}\n"
        f"state   {options.state_file} (baton commands here find the stack without flags)\n"
        "\nFor other tools (aws, boto3), export:\n" + state.exports()
    )
