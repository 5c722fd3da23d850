"""Extract the fields baton reports from an HTML page, with selectolax (Lexbor)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser

MAX_LINKS = 1000
MAX_FIELD_CHARS = 2000


def extract(body: bytes, base_url: str) -> dict[str, Any]:
    """Title, description, canonical, first h1, absolute http(s) links, text length."""
    tree = LexborHTMLParser(body)
    base = base_url
    base_tag = tree.css_first("base[href]")
    if base_tag is not None:
        base = urljoin(base_url, base_tag.attributes.get("href") or "")
    title = tree.css_first("title")
    description = tree.css_first('meta[name="description" i]')
    canonical = tree.css_first('link[rel="canonical" i]')
    h1 = tree.css_first("h1")
    links = absolute_links(base, (a.attributes.get("href") for a in tree.css("a[href]")))
    body_node = tree.body
    text = body_node.text(separator=" ", strip=True) if body_node is not None else ""
    canonical_href = canonical.attributes.get("href") if canonical is not None else None
    return {
        "title": _clip(title.text(strip=True)) if title is not None else None,
        "description": _clip(description.attributes.get("content")) if description else None,
        "canonical": urljoin(base, canonical_href) if canonical_href else None,
        "h1": _clip(h1.text(strip=True)) if h1 is not None else None,
        "links": links,
        "links_count": len(links),
        "text_length": len(text),
    }


def absolute_links(base: str, hrefs: Iterable[str | None]) -> list[str]:
    """Absolute, fragment-free, http(s) only, distinct, in document order, capped."""
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
            if len(links) >= MAX_LINKS:
                break
    return links


def _clip(value: str | None) -> str | None:
    if value is None:
        return None
    return value if len(value) <= MAX_FIELD_CHARS else value[:MAX_FIELD_CHARS]
