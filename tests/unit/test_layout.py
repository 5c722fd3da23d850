"""The layout is the architecture: imports point one way, and the zip holds the runtime only.

    runtime (handler.py, worker/, cache/)  <-  dev stack (devstack/)  <-  CLI (baton/)
                                          <-  bench/, tests/, infra/

`cache/` is below `worker/`: it imports nothing of baton's. The rules are read
from every import statement in every module, function-level imports included.
"""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path

import pytest

from infra.package import build_zip

ROOT = Path(__file__).resolve().parents[2]
OURS = frozenset({"handler", "worker", "cache", "devstack", "baton", "bench", "tests", "infra"})
MAY_IMPORT = {
    "cache": {"cache"},
    "worker": {"worker", "cache"},
    "handler": {"worker", "cache"},
    "devstack": {"devstack", "worker", "cache"},
    "baton": {"baton", "devstack", "worker", "cache"},
    "infra": {"infra", "worker"},
}
DEV_ONLY = frozenset({"moto", "werkzeug", "localstack_client", "lxml", "bs4", "hypothesis"})
"""Third-party packages the Lambda zip does not carry: the runtime must never import them."""


def modules(package: str) -> list[Path]:
    path = ROOT / package
    return [path.with_suffix(".py")] if not path.is_dir() else sorted(path.rglob("*.py"))


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_layout_imports_point_one_way(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules(package)
        for name in imported(path) & OURS
        if name not in MAY_IMPORT[package]
    }
    assert sorted(wrong) == []


@pytest.mark.parametrize("package", ["handler", "worker", "cache"])
def test_layout_runtime_imports_no_dev_dependency(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules(package)
        for name in imported(path) & DEV_ONLY
    }
    assert sorted(wrong) == []


def test_layout_zip_holds_exactly_the_runtime(tmp_path: Path) -> None:
    with zipfile.ZipFile(build_zip(tmp_path / "lambda.zip", install_deps=False)) as archive:
        names = set(archive.namelist())
    expected = {"handler.py"} | {
        str(path.relative_to(ROOT))
        for package in ("worker", "cache")
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix == ".py"
    }
    assert names == expected
    assert {name.split("/")[0] for name in names} == {"handler.py", "worker", "cache"}
