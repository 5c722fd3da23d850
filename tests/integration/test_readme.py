"""Every shell command in the README runs as written, in order, in one shell.

The commands are read from the README's ```sh blocks and run by one bash, as a
user would type them: the README starts its own stack (`baton stack up
--detach`) and stops it. `RUN` stands for the newest run's id, `list.jsonl`
is a list of pages of a site on this machine. The ones that cannot run here
are in SKIPPED with the reason; a command neither run nor skipped fails the
test, so a new README command cannot go untested.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.site import Site, SiteConfig

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = {
    "make test": "it is the suite this test runs in",
    "make bench": "minutes of benchmarks; tests/integration/test_bench_smoke.py runs them small",
    "make package": "downloads Lambda-platform wheels; tests/unit/test_layout.py builds the zip",
    "sam deploy": "a real AWS deploy",
    "docker compose": "needs a Docker engine",
    "python -m infra.deploy_localstack": "needs LocalStack (Docker)",
    "baton --endpoint-url http://localhost:4566": "needs LocalStack (Docker)",
    "pip install": "installs into the environment running this test",
    "baton crawl https://": "crawls a site on the internet; test_crawl_on_stack.py crawls a "
    "loopback site the same way",
    "aws s3 cp site.crawl.json": "starts a crawl of a site on the internet; "
    "test_crawl_on_stack.py uploads a spec of a loopback site",
}
NEWEST_RUN = (
    "$(baton runs --json | head -1 | python -c "
    "'import json, sys; print(json.loads(sys.stdin.readline())[\"run_id\"])')"
)


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def skip_reason(command: str) -> str | None:
    return next((why for start, why in SKIPPED.items() if command.startswith(start)), None)


def script(commands: list[str], venv: Path) -> str:
    """One bash script: each command echoed, then run where a user would run it."""
    lines = ["set -e -o pipefail"]
    for command in commands:
        lines.append(f"echo {shlex.quote('+ ' + command)} >&2")
        if command.startswith("make "):
            lines.append(f"(cd {shlex.quote(str(ROOT))} && {command})")
        elif command == ". .venv/bin/activate":
            lines.append(f". {shlex.quote(str(venv / 'bin' / 'activate'))}")
        else:
            lines.append(command.replace("RUN", NEWEST_RUN))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with Site(SiteConfig(pages=12, page_bytes=(1_000, 3_000))) as running:
        yield running


def test_readme_commands_all_run_or_are_listed_as_skipped() -> None:
    commands = readme_commands()
    assert len(commands) >= 12
    assert any(c.startswith("aws lambda invoke") for c in commands)
    assert "--cli-binary-format" not in " ".join(commands)  # AWS CLI v1 refuses it
    assert commands.index("baton stack down") > commands.index(
        "baton stack up --detach --allow-loopback"
    )


def test_readme_commands_run_as_written(site: Site, tmp_path: Path) -> None:
    (tmp_path / "list.jsonl").write_text("".join(json.dumps(u) + "\n" for u in site.urls()))
    venv = Path(sys.executable).parent.parent
    env = {
        name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "BATON_"))
    }
    env["PYTHONPATH"] = str(ROOT)  # the checkout under test, whatever the venv was installed from
    commands = [c for c in readme_commands() if not skip_reason(c)]
    try:
        done = subprocess.run(
            ["bash", "-c", script(commands, venv)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        subprocess.run(
            [sys.executable, "-m", "baton", "stack", "down"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
    ran = [line[2:] for line in done.stderr.splitlines() if line.startswith("+ ")]
    assert done.returncode == 0, f"{ran[-1] if ran else '?'} failed:\n{done.stderr[-3000:]}"
    assert ran == commands
    assert "Traceback" not in done.stderr
    assert "done: 12 tasks, 12 ok, 0 failed" in done.stdout
