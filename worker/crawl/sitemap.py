"""sitemap.xml, sitemap indexes and text sitemaps, read defensively as a seed source.

A sitemap is whatever a server sends, so `parse_sitemap` never raises: garbage
gives an empty Sitemap, and a file cut short gives the URLs before the cut.
Bounds: gzip (by its magic bytes) is inflated to at most MAX_SITEMAP_BYTES, the
protocol's own limit, and at most MAX_SITEMAP_URLS locations are kept per list.
XML is read by expat directly, streaming, with any DOCTYPE refused, so no
entity can be declared, let alone expanded (billion laughs, external entities);
that is the defusedxml approach without the dependency.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from xml.parsers import expat

MAX_SITEMAP_BYTES = 50 * 1024 * 1024
"""The sitemaps.org limit on an uncompressed sitemap."""
MAX_SITEMAP_URLS = 50_000
"""The sitemaps.org limit on the URLs of one sitemap (and the sitemaps of one index)."""
_GZIP = b"\x1f\x8b"
_FEED = 1024 * 1024
_LOC_PARENTS = {("urlset", "url"): "urls", ("sitemapindex", "sitemap"): "sitemaps"}


@dataclass(frozen=True)
class Sitemap:
    urls: list[str] = field(default_factory=list)
    """`<urlset><url><loc>`: pages (or a text sitemap's lines)."""
    sitemaps: list[str] = field(default_factory=list)
    """`<sitemapindex><sitemap><loc>`: more sitemaps to read."""


def parse_sitemap(body: bytes) -> Sitemap:
    """The locations a sitemap lists; an empty Sitemap for anything else."""
    if body.startswith(_GZIP):
        body = _gunzip(body)
    body = body[:MAX_SITEMAP_BYTES]
    head = body[:1024].removeprefix(b"\xef\xbb\xbf").lstrip()
    return _parse_xml(body) if head.startswith(b"<") else _parse_text(body)


def _gunzip(body: bytes) -> bytes:
    """At most MAX_SITEMAP_BYTES of the inflated data (a gzip bomb stops there)."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        return inflate.decompress(body, MAX_SITEMAP_BYTES)
    except zlib.error:
        return b""


def _parse_text(body: bytes) -> Sitemap:
    """A text sitemap: one absolute http(s) URL a line; other lines are skipped."""
    urls = []
    for line in body.decode("utf-8-sig", errors="replace").splitlines():
        url = line.strip()
        if url[:8].lower().startswith(("http://", "https://")):
            urls.append(url)
            if len(urls) == MAX_SITEMAP_URLS:
                break
    return Sitemap(urls=urls)


class _Refused(Exception):
    """A DOCTYPE or entity declaration: the document is refused whole."""


class _Full(Exception):
    """Both lists reached MAX_SITEMAP_URLS: nothing more to read."""


class _Collector:
    """Collects `<loc>` text under `<urlset><url>` and `<sitemapindex><sitemap>` exactly,
    by local name (any namespace), so `<image:loc>` and friends are left out."""

    def __init__(self) -> None:
        self.path: list[str] = []
        self.text: list[str] = []
        self.found: dict[str, list[str]] = {"urls": [], "sitemaps": []}

    def start(self, name: str, _attrs: object) -> None:
        self.path.append(name.rpartition(" ")[2])
        self.text = []

    def end(self, _name: str) -> None:
        if len(self.path) == 3 and self.path[2] == "loc":
            kind = _LOC_PARENTS.get((self.path[0], self.path[1]))
            loc = "".join(self.text).strip()
            if kind and loc and len(self.found[kind]) < MAX_SITEMAP_URLS:
                self.found[kind].append(loc)
                if all(len(v) >= MAX_SITEMAP_URLS for v in self.found.values()):
                    raise _Full
        self.path.pop()

    def data(self, text: str) -> None:
        if self.path and self.path[-1] == "loc":
            self.text.append(text)


def _refuse(*_args: object) -> None:
    raise _Refused


def _parse_xml(body: bytes) -> Sitemap:
    collector = _Collector()
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.data
    try:
        for start in range(0, len(body), _FEED):
            parser.Parse(body[start : start + _FEED], False)
        parser.Parse(b"", True)
    except _Refused:
        return Sitemap()
    except (_Full, expat.ExpatError):
        pass  # what was read before the cut or the error still counts
    return Sitemap(collector.found["urls"], collector.found["sitemaps"])
