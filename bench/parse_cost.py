"""Parse cost: selectolax (Lexbor) against lxml and BeautifulSoup on the same pages.

The pages come from the loopback test site (`devstack.site`, 20-80 KB each),
fetched once over HTTP; then each parser extracts the fields baton reports
(title, meta description, canonical, first h1, absolute http(s) links, body text
length) from every page, `--repeat` times. `selectolax` is the production code
(`worker.extract.extract`); the others reproduce it with their own APIs and the
same link rules, and their fields are checked against it, so the race is fair.
Figures are milliseconds per page (median over pages of the best of the repeats)
for the parse alone and for parse + extraction, with ratios to selectolax.

    python -m bench.parse_cost [--quick] [--pages N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import lxml.html
from bs4 import BeautifulSoup
from selectolax.lexbor import LexborHTMLParser

from devstack.site import Site, SiteConfig
from worker.extract import absolute_links, extract

RESULTS = Path(__file__).resolve().parent / "results" / "parse_cost.json"
FIELDS = ("title", "description", "canonical", "h1", "links")
Extractor = Callable[[bytes, str], dict[str, Any]]


def _links(base: str, hrefs: Iterable[str | None]) -> list[str]:
    """The rule of `worker.extract`, shared so every parser is held to the same output."""
    return absolute_links(base, hrefs)


def extract_lxml(body: bytes, url: str) -> dict[str, Any]:
    tree = lxml.html.fromstring(body)
    base = urljoin(url, (tree.xpath("//base/@href") or [""])[0])
    lower = "translate(@{0}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
    title = tree.xpath("//title")
    description = tree.xpath(f"//meta[{lower.format('name')}='description']/@content")
    canonical = tree.xpath(f"//link[{lower.format('rel')}='canonical']/@href")
    h1 = tree.xpath("//h1")
    body_node = tree.find("body")
    text = (
        ""
        if body_node is None
        else " ".join(part.strip() for part in body_node.itertext() if part.strip())
    )
    links = _links(base, tree.xpath("//a/@href"))
    return {
        "title": title[0].text_content().strip() if title else None,
        "description": description[0] if description else None,
        "canonical": urljoin(base, canonical[0]) if canonical else None,
        "h1": h1[0].text_content().strip() if h1 else None,
        "links": links,
        "links_count": len(links),
        "text_length": len(text),
    }


def bs4_extractor(builder: str) -> Extractor:
    def extract_bs4(body: bytes, url: str) -> dict[str, Any]:
        soup = BeautifulSoup(body, builder)
        base_tag = soup.find("base", href=True)
        base = urljoin(url, str(base_tag["href"])) if base_tag else url
        title = soup.find("title")
        description = soup.find(
            "meta", attrs={"name": lambda v: v is not None and v.lower() == "description"}
        )
        canonical = soup.find("link", rel=lambda v: v is not None and "canonical" in str(v).lower())
        h1 = soup.find("h1")
        links = _links(base, (str(a["href"]) for a in soup.find_all("a", href=True)))
        text = soup.body.get_text(" ", strip=True) if soup.body else ""
        return {
            "title": title.get_text(strip=True) if title else None,
            "description": description.get("content") if description else None,
            "canonical": urljoin(base, str(canonical["href"])) if canonical else None,
            "h1": h1.get_text(strip=True) if h1 else None,
            "links": links,
            "links_count": len(links),
            "text_length": len(text),
        }

    return extract_bs4


PARSERS: dict[str, tuple[Callable[[bytes], Any], Extractor]] = {
    "selectolax": (LexborHTMLParser, extract),
    "lxml": (lxml.html.fromstring, extract_lxml),
    "bs4+lxml": (lambda body: BeautifulSoup(body, "lxml"), bs4_extractor("lxml")),
    "bs4+html.parser": (
        lambda body: BeautifulSoup(body, "html.parser"),
        bs4_extractor("html.parser"),
    ),
}


def fetch_pages(count: int, seed: int) -> list[tuple[str, bytes]]:
    with Site(SiteConfig(pages=count, seed=seed)) as site:
        pages = []
        for url in site.urls():
            with urllib.request.urlopen(url, timeout=10) as response:
                pages.append((url, response.read()))
    return pages


def per_page_ms(work: Callable[..., object], args: tuple[Any, ...], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work(*args)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def measure(pages: list[tuple[str, bytes]], repeat: int) -> dict[str, Any]:
    reference = [extract(body, url) for url, body in pages]
    rows = {}
    for name, (parse, extractor) in PARSERS.items():
        parse_ms = [per_page_ms(parse, (body,), repeat) for _, body in pages]
        extract_ms = [per_page_ms(extractor, (body, url), repeat) for url, body in pages]
        got = [extractor(body, url) for url, body in pages]
        rows[name] = {
            "parse_ms": statistics.median(parse_ms),
            "extract_ms": statistics.median(extract_ms),
            "extract_ms_mean": statistics.fmean(extract_ms),
            "fields_agree": all(
                g[f] == r[f] for g, r in zip(got, reference, strict=True) for f in FIELDS
            ),
            "text_length_ratio": sum(g["text_length"] for g in got)
            / sum(r["text_length"] for r in reference),
        }
    base = rows["selectolax"]
    for row in rows.values():
        row["parse_ratio"] = row["parse_ms"] / base["parse_ms"]
        row["extract_ratio"] = row["extract_ms"] / base["extract_ms"]
    sizes = [len(body) for _, body in pages]
    return {
        "python": sys.version.split()[0],
        "pages": len(pages),
        "repeat": repeat,
        "page_kb_median": statistics.median(sizes) / 1000,
        "page_kb_range": [min(sizes) / 1000, max(sizes) / 1000],
        "parsers": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.parse_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="20 pages, one pass each")
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    count, repeat = (20, 1) if args.quick else (args.pages, args.repeat)
    figures = measure(fetch_pages(count, args.seed), repeat)
    print(
        f"{figures['pages']} pages, median {figures['page_kb_median']:.0f} KB, "
        f"best of {repeat}; ms per page (median over pages)"
    )
    print(
        f"{'parser':>16} {'parse ms':>9} {'x':>6} {'extract ms':>11} {'x':>6} "
        f"{'fields agree':>13} {'text len':>9}"
    )
    for name, row in figures["parsers"].items():
        print(
            f"{name:>16} {row['parse_ms']:>9.2f} {row['parse_ratio']:>6.1f} "
            f"{row['extract_ms']:>11.2f} {row['extract_ratio']:>6.1f} "
            f"{'yes' if row['fields_agree'] else 'NO':>13} {row['text_length_ratio']:>9.3f}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
