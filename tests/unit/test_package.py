"""The Lambda zip: baton's code at the root, nothing from the dev tree."""

from __future__ import annotations

import zipfile
from pathlib import Path

from infra.package import LAMBDA_PLATFORMS, LAMBDA_PYTHON, build_zip, pip_command


def names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def test_build_zip_puts_the_handler_at_the_root(tmp_path: Path) -> None:
    assert "handler.py" in names(build_zip(tmp_path / "lambda.zip", install_deps=False))


def test_build_zip_includes_the_worker_and_cache_packages(tmp_path: Path) -> None:
    contents = names(build_zip(tmp_path / "lambda.zip", install_deps=False))
    assert {"worker/__init__.py", "worker/leg.py", "cache/__init__.py"} <= set(contents)
    assert {name.split("/")[0] for name in contents} == {"handler.py", "worker", "cache"}


def test_build_zip_leaves_out_tests_venv_and_bytecode(tmp_path: Path) -> None:
    contents = names(build_zip(tmp_path / "lambda.zip", install_deps=False))
    assert not [n for n in contents if n.startswith(("tests/", ".venv/", "infra/"))]
    assert not [n for n in contents if "__pycache__" in n or n.endswith(".pyc")]


def test_build_zip_is_reproducible(tmp_path: Path) -> None:
    first = build_zip(tmp_path / "a.zip", install_deps=False).read_bytes()
    assert build_zip(tmp_path / "b.zip", install_deps=False).read_bytes() == first


def test_build_zip_creates_the_output_directory(tmp_path: Path) -> None:
    out = build_zip(tmp_path / "build" / "nested" / "lambda.zip", install_deps=False)
    assert out.is_file()


def test_pip_command_targets_the_lambda_runtime(tmp_path: Path) -> None:
    command = pip_command(tmp_path / "requirements.txt", tmp_path / "deps")
    joined = " ".join(command)
    assert all(f"--platform {platform}" in joined for platform in LAMBDA_PLATFORMS)
    assert f"--python-version {LAMBDA_PYTHON}" in joined
    assert LAMBDA_PYTHON == "3.12"
    assert "--only-binary=:all:" in command
    assert f"--target {tmp_path / 'deps'}" in joined
