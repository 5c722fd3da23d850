"""Build the Lambda zip: handler.py, worker/ and cache/ at the root, plus the pinned deps.

The SAM template's CodeUri and the LocalStack deploy script both use the zip this writes.
Dependencies are installed as wheels for the Lambda runtime (python3.12, x86_64), not for
the interpreter running the build: selectolax ships compiled code. The zip is
reproducible (sorted entries, fixed timestamps), so an unchanged build keeps its hash.

    python -m infra.package [OUT] [--no-deps]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("handler.py", "worker", "cache")
DEFAULT_OUT = ROOT / "build" / "lambda.zip"
LAMBDA_PYTHON = "3.12"
LAMBDA_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
"""The python3.12 runtime is Amazon Linux 2023 (glibc 2.34): both tags run there, and pip
takes only the tags named (ada-url ships manylinux_2_28 wheels, cffi manylinux2014 ones)."""
_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


def pip_command(requirements: Path, target: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-compile",
        "--requirement",
        str(requirements),
        "--target",
        str(target),
        *(arg for platform in LAMBDA_PLATFORMS for arg in ("--platform", platform)),
        "--python-version",
        LAMBDA_PYTHON,
        "--implementation",
        "cp",
        "--only-binary=:all:",
    ]


def build_zip(out_path: Path, install_deps: bool = True, root: Path = ROOT) -> Path:
    """Write the deployment zip to `out_path`; without deps it holds only baton's own code."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="baton-deps-") as deps:
        entries: dict[str, Path] = {}
        if install_deps:
            subprocess.run(pip_command(root / "requirements.txt", Path(deps)), check=True)
            entries.update(_files(Path(deps), Path(deps)))
        for name in SOURCES:
            entries.update(_files(root / name, root))
        with zipfile.ZipFile(out_path, "w", zipfile.ZIP_DEFLATED) as archive:
            for arcname in sorted(entries):
                info = zipfile.ZipInfo(arcname, date_time=_TIMESTAMP)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, entries[arcname].read_bytes())
    return out_path


def _files(path: Path, base: Path) -> Iterator[tuple[str, Path]]:
    """(name in the zip, file) for every file under `path`, minus caches and pip's bin/."""
    candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
    for file in candidates:
        parts = file.relative_to(base).parts
        skipped = "__pycache__" in parts or parts[0] == "bin" or file.suffix == ".pyc"
        if file.is_file() and not skipped:
            yield "/".join(parts), file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.package", description=__doc__)
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-deps", action="store_true", help="baton's code only")
    args = parser.parse_args(argv)
    out = build_zip(args.out, install_deps=not args.no_deps)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
