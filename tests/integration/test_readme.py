"""Every shell command in the README runs as written against the embedded stack.

The commands are read from the README's ```sh blocks, in order, and run by bash
with the environment a user gets from the embedded stack. `BUCKET` is the
stack's bucket and `RUN` the newest run. The ones that cannot run here are
listed in SKIPPED with the reason; a command that is neither run nor skipped
fails the test, so a new README command cannot go untested.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.site import Site, SiteConfig
from devstack.stack import EmbeddedStack
from tests.integration.test_baton_on_stack import start_stack
from worker.store import RunStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = {
    "make test": "it is the suite this test runs in",
    "make bench": "minutes of benchmarks; tests/integration/test_bench_smoke.py runs them small",
    "make package": "downloads Lambda-platform wheels; tests/unit/test_package.py builds the zip",
    "sam deploy": "a real AWS deploy",
    "docker compose": "needs a Docker engine",
    "python -m infra.deploy_localstack": "needs LocalStack (Docker)",
    "baton --endpoint-url http://localhost:4566": "needs LocalStack (Docker)",
}


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


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with Site(SiteConfig(pages=12, page_bytes=(1_000, 3_000))) as running:
        yield running


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbeddedStack]:
    running = start_stack(tmp_path)
    yield running
    running.stop()


def newest_run(stack: EmbeddedStack) -> str:
    s3 = stack.s3_client()
    try:
        store = RunStore.over(s3, stack.bucket, "runs/")
        runs = sorted(store.run_ids(), key=lambda r: store.load_run(r).created_ms)
    finally:
        s3.close()
    assert runs, "a README command names RUN before any run exists"
    return runs[-1]


def test_readme_commands_all_run_or_are_listed_as_skipped() -> None:
    commands = readme_commands()
    assert len(commands) >= 10
    assert any(c.startswith("aws lambda invoke") for c in commands)
    assert "--cli-binary-format" not in " ".join(commands)  # AWS CLI v1 refuses it


def test_readme_commands_run_as_written_on_the_embedded_stack(
    stack: EmbeddedStack, site: Site, tmp_path: Path
) -> None:
    (tmp_path / "list.jsonl").write_text("".join(json.dumps(u) + "\n" for u in site.urls()))
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        **stack.client_environment(),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),  # the checkout under test, whatever the venv was installed from
    }
    ran = []
    for written in readme_commands():
        if skip_reason(written):
            continue
        command = written.replace("BUCKET", stack.bucket)
        if "RUN" in command:
            command = command.replace("RUN", newest_run(stack))
        cwd = ROOT if command.startswith("make ") else tmp_path
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{done.stderr}"
        assert "Traceback" not in done.stderr, f"{command!r}:\n{done.stderr}"
        assert stack.runtime.wait_idle(60)
        ran.append(command)
    assert any(c.startswith("make demo") for c in ran)
    assert any(c.startswith("aws s3 cp") for c in ran)
