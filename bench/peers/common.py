"""What every peer shares: the fields, the link rule, the summary it prints (stdlib only)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

SAMPLE_SUFFIX = "/page/0"
"""The row whose fields every contender reports back, to show they extract the same."""
_SPACE = re.compile(r"\s+")


def absolute_links(base: str, hrefs: Iterable[str | None]) -> list[str]:
    """Absolute, fragment-free, http(s) only, distinct, in document order (as baton's)."""
    links: list[str] = []
    seen: set[str] = set()
    for raw in hrefs:
        href = (raw or "").strip()
        if not href:
            continue
        absolute = urldefrag(urljoin(base, href))[0]
        if urlsplit(absolute).scheme in ("http", "https") and absolute not in seen:
            seen.add(absolute)
            links.append(absolute)
    return links


def squash(text: str | None) -> str | None:
    return None if text is None else _SPACE.sub(" ", text).strip()


def selectolax_row(url: str, body: bytes) -> dict[str, Any]:
    """The fields, with selectolax's Lexbor parser (the plain loop and aiohttp)."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(body)
    title = tree.css_first("title")
    description = tree.css_first('meta[name="description" i]')
    h1 = tree.css_first("h1")
    return {
        "url": url,
        "title": squash(title.text()) if title is not None else None,
        "description": squash(description.attributes.get("content"))
        if description is not None
        else None,
        "h1": squash(h1.text(separator=" ")) if h1 is not None else None,
        "links": absolute_links(url, (a.attributes.get("href") for a in tree.css("a[href]"))),
    }


@dataclass
class Summary:
    """What a peer prints: counts, its working time and CPU, a sample row, its versions."""

    peer: str
    concurrency: str
    pages: int = 0
    ok: int = 0
    failed: int = 0
    links: int = 0
    elapsed_s: float = 0.0
    """From just before the crawl starts to the last row written (imports excluded)."""
    cpu_s: float = 0.0
    """This process's CPU over the same span (all threads)."""
    sample: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    peak_rss_mb: float | None = None
    """This process's high-water RSS (VmHWM) when it emits, start-up and imports included."""

    def count(self, row: dict[str, Any]) -> None:
        self.pages += 1
        if row.get("error"):
            self.failed += 1
            return
        self.ok += 1
        self.links += len(row.get("links") or ())
        if str(row.get("url", "")).endswith(SAMPLE_SUFFIX):
            self.sample = {
                "title": row.get("title"),
                "description": row.get("description"),
                "h1": row.get("h1"),
                "links": len(row.get("links") or ()),
            }

    def emit(self) -> None:
        self.peak_rss_mb = _peak_rss_mb()
        json.dump(asdict(self), sys.stdout)
        sys.stdout.write("\n")
        sys.stdout.flush()


class Clock:
    """Wall and CPU time from start() to stop()."""

    def start(self) -> None:
        self._wall, self._cpu = time.monotonic(), time.process_time()

    def stop(self, summary: Summary) -> None:
        summary.elapsed_s = round(time.monotonic() - self._wall, 3)
        summary.cpu_s = round(time.process_time() - self._cpu, 3)


def arguments(prog: str, doc: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    parser.add_argument("--urls", type=Path, required=True, help="one URL a line")
    parser.add_argument("--concurrency", default="default", help="'default' or a number")
    parser.add_argument("--out", type=Path, help="write the rows here (JSONL)")
    parser.add_argument("--workdir", type=Path, help="for the peer's own storage")
    return parser.parse_args()


def read_urls(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def write_rows(path: Path | None, rows: list[dict[str, Any]]) -> None:
    body = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
    if path is not None:
        path.write_text(body)


def version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(distribution)
    except PackageNotFoundError:
        return "?"


def _peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None
