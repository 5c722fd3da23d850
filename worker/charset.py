"""Decode a page the way a browser does, without paying for it on UTF-8 pages.

The order is the HTML Standard's: a byte order mark, then the charset of the
Content-Type header, then a `<meta charset>` or `http-equiv` declaration in the
first 1024 bytes (the Standard's prescan), then a sniff: UTF-8 if the bytes are
valid UTF-8, else windows-1252, a browser's default for an undeclared page.
Labels resolve to the supersets browsers really use (latin-1 is windows-1252,
Shift_JIS is cp932, EUC-KR is cp949), as w3lib maps them.

Lexbor parses bytes as UTF-8, so a UTF-8 page goes in as its own bytes (no copy,
no decode); any other page is decoded and encoded again as UTF-8 (what Lexbor
would do with a `str` anyway).
"""

from __future__ import annotations

from w3lib.encoding import (
    html_body_declared_encoding,
    http_content_type_encoding,
    read_bom,
    to_unicode,
)

__all__ = ["PRESCAN_BYTES", "page_encoding", "utf8_html"]

PRESCAN_BYTES = 1024
UNDECLARED_NON_UTF8 = "cp1252"


def page_encoding(body: bytes, content_type: str | None) -> tuple[str, int]:
    """The page's encoding (a Python codec name) and the length of its BOM."""
    bom_encoding, bom = read_bom(body)
    if bom_encoding is not None and bom is not None:
        return bom_encoding, len(bom)
    declared = http_content_type_encoding(content_type)
    if declared is None:
        declared = html_body_declared_encoding(body[:PRESCAN_BYTES])
        if declared is not None and declared.startswith(("utf-16", "utf-32")):
            declared = "utf-8"  # the Standard's rule: a meta the prescan could read is not UTF-16
    if declared is not None:
        return declared, 0
    if body.isascii():
        return "utf-8", 0
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return UNDECLARED_NON_UTF8, 0
    return "utf-8", 0


def utf8_html(body: bytes, content_type: str | None) -> bytes:
    """The page as UTF-8 bytes: the body itself when it already is (the common case)."""
    encoding, bom = page_encoding(body, content_type)
    if encoding == "utf-8":
        return body[bom:] if bom else body
    return to_unicode(body[bom:], encoding).encode("utf-8", "surrogatepass")
