"""Extract the fields baton reports from an HTML page, with selectolax (Lexbor).

Text fields read as a browser shows them: the page decoded by its charset
(worker.charset), inline markup joined with exactly the spaces it holds, a break
wherever a block element or `<br>` makes one, then runs of whitespace collapsed
to one space and the ends stripped. Whitespace is the HTML Standard's ASCII
whitespace, as `document.title` has it, so a no-break space stays one.

A page too costly to parse whole is parsed up to a point (worker.parse_budget);
its fields come from that part and its `error` says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ada_url import join_url
from selectolax.lexbor import LexborDocumentOptions, LexborHTMLParser, LexborNode

from worker.charset import utf8_html
from worker.parse_budget import affordable

MAX_LINKS = 1000
MAX_FIELD_CHARS = 2000
PARSE_OPTIONS = LexborDocumentOptions.WO_EVENTS
"""No DOM mutation events: no field needs them, and with them every `<option>` of a
`<select>` revisits the others (40,000 options: 2.8 s, against 7 ms without)."""

_WHITESPACE = re.compile(r"[\t\n\f\r ]+")
_BREAK_NAMES = (
    "address article aside blockquote br caption center dd details dialog dir div dl dt "
    "fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr legend li "
    "listing main menu nav ol p plaintext pre search section summary table tbody td tfoot "
    "th thead tr ul xmp"
)
_BREAKS = frozenset(_BREAK_NAMES.split())
"""Elements a browser lays out on lines of their own (or, for cells, apart)."""
_HIDDEN = frozenset({"head", "noscript", "script", "style", "template", "title"})
"""Elements whose text a browser does not show (`noscript` when scripts run)."""


def extract(body: bytes, base_url: str, content_type: str | None = None) -> dict[str, Any]:
    """Title, description, canonical, first h1, absolute http(s) links, text length.

    `content_type` is the response's Content-Type header, for its charset.
    """
    whole = utf8_html(body, content_type)
    html, cut = affordable(whole)
    tree = LexborHTMLParser(html, options=PARSE_OPTIONS)
    base = base_url
    base_tag = tree.css_first("base[href]")
    if base_tag is not None:
        base = join(base_url, base_tag.attributes.get("href") or "") or base_url
    title = tree.css_first("title")
    description = tree.css_first('meta[name="description" i]')
    canonical = tree.css_first('link[rel="canonical" i]')
    h1 = tree.css_first("h1")
    links = absolute_links(base, (a.attributes.get("href") for a in tree.css("a[href]")))
    body_node = tree.body
    text = body_node.text(separator=" ", strip=True) if body_node is not None else ""
    canonical_href = canonical.attributes.get("href") if canonical is not None else None
    content = description.attributes.get("content") if description is not None else None
    fields: dict[str, Any] = {
        "title": _clip(normalize_space(title.text())) if title is not None else None,
        "description": _clip(normalize_space(content)) if content is not None else None,
        "canonical": _absolute(base, canonical_href) if canonical_href else None,
        "h1": _clip(shown_text(h1)) if h1 is not None else None,
        "links": links,
        "links_count": len(links),
        "text_length": len(text),
    }
    if cut is not None:
        fields["error"] = (
            f"truncated: {cut}; fields are from the first {len(html)} of {len(whole)} bytes"
        )
    return fields


def normalize_space(text: str) -> str:
    """Collapse runs of ASCII whitespace to one space and strip the ends."""
    return _WHITESPACE.sub(" ", text).strip(" ")


def shown_text(root: LexborNode) -> str:
    """The text of `root` as a browser lays it out, whitespace normalised.

    Like `innerText`: hidden elements left out, a break around blocks and at
    `<br>`, inline elements joined as written. Walks the tree without recursion,
    so no nesting depth can overflow the stack.
    """
    parts: list[str] = []
    open_blocks: list[LexborNode] = []
    node = root.first_child
    while node is not None or open_blocks:
        if node is None:
            parent = open_blocks.pop()
            if parent.tag in _BREAKS:
                parts.append(" ")
            node = parent.next
            continue
        tag = node.tag
        if tag == "-text":
            parts.append(node.text_content or "")
        elif tag is not None and tag not in _HIDDEN and not tag.startswith("-"):
            if tag in _BREAKS:
                parts.append(" ")
            child = node.first_child
            if child is not None:
                open_blocks.append(node)
                node = child
                continue
        node = node.next
    return normalize_space("".join(parts))


def absolute_links(base: str, hrefs: Iterable[str | None]) -> list[str]:
    """Absolute, fragment-free, credential-free, http(s) only, distinct, in document order.

    URLs are resolved by the WHATWG parser browsers use (`ada_url`, as Node.js does):
    hosts lowercased, default ports and dot segments gone, so one page spells a link
    one way; and it is about five times faster than `urllib.parse` here, where link
    resolution was half of extraction's CPU.
    """
    links: list[str] = []
    seen: set[str] = set()
    for raw in hrefs:
        if not raw:
            continue
        absolute = _absolute(base, raw)
        if absolute is not None and absolute not in seen:
            seen.add(absolute)
            links.append(absolute)
            if len(links) >= MAX_LINKS:
                break
    return links


def join(base: str, href: str) -> str | None:
    """`href` resolved against `base` (WHATWG), or None when it is no URL at all."""
    try:
        return str(join_url(base, href))
    except ValueError:
        return None


def _absolute(base: str, href: str) -> str | None:
    joined = join(base, href)
    if joined is None or not joined.startswith(("http://", "https://")):
        return None
    joined = joined.partition("#")[0]
    return without_userinfo(joined) if "@" in joined else joined


def without_userinfo(url: str) -> str:
    """`url` without a `user:password@` part, which must not reach the results."""
    if "@" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _clip(value: str | None) -> str | None:
    if value is None:
        return None
    return value if len(value) <= MAX_FIELD_CHARS else value[:MAX_FIELD_CHARS]
