"""Where a kept-running embedded stack says it is: `.baton/stack.json` in the working directory.

`baton stack up` writes it and removes it when the stack stops; the CLI reads it
when no endpoint is named, so every `baton` command in that directory finds the
stack without flags. Standard library only: the CLI reads it without the
`local` extra installed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = Path(".baton") / "stack.json"
FAKE_CREDENTIAL = "testing"
REGION = "us-east-1"


@dataclass(frozen=True)
class StackState:
    s3_endpoint_url: str
    lambda_endpoint_url: str
    bucket: str
    function: str
    pid: int
    log_file: str

    def environment(self) -> dict[str, str]:
        """What boto3, the AWS CLI and `baton` need to talk to this stack."""
        return {
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint_url,
            "AWS_ENDPOINT_URL_EVENTBRIDGE": self.s3_endpoint_url,
            "AWS_ENDPOINT_URL_LAMBDA": self.lambda_endpoint_url,
            "AWS_ACCESS_KEY_ID": FAKE_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIAL,
            "AWS_SESSION_TOKEN": FAKE_CREDENTIAL,
            "AWS_DEFAULT_REGION": REGION,
            "BATON_BUCKET": self.bucket,
            "BATON_FUNCTION": self.function,
        }

    def exports(self) -> str:
        """Shell lines for `eval "$(baton stack env)"`."""
        return "".join(f"export {name}={value}\n" for name, value in self.environment().items())

    def save(self, path: Path = STATE_FILE) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(asdict(self), indent=2) + "\n")
        scratch.replace(path)


def load(path: Path = STATE_FILE) -> StackState | None:
    """The running stack's state, or None (no file, or its process is gone)."""
    try:
        state = StackState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return state if _alive(state.pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
