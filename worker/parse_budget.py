"""Bound what a page can cost the parser, with byte scans cheaper than the parse.

Lexbor's tree builder is superlinear on three shapes of page (measured on this
machine, before this module; see the commit that added it):

- nesting: start tags such as `<div>` or `<li>` walk the stack of open elements,
  so N nested tags cost N**2 / 2 steps of about 3 ns (40,000 nested `<div>`,
  200 KB: 2.3 s);
- formatting elements (`<b>`, `<font>`, ...) left open when their container
  closes are rebuilt at every later tag or text, up to three alike and any
  number that differ in attributes (1,000 distinct `<b id=N>` then 4,000
  `<p>x</p>`, 42 KB: four million elements, 3.5 s, 1.4 GB);
- attributes: each new attribute name is compared with the element's others
  (one tag with 40,000 distinct attributes, 270 KB: 2.4 s).

(A fourth, `<option>` after `<option>` in a `<select>`, comes from DOM mutation
events; the parser runs without them, see worker.extract.)

Each shape needs many tags or one very long tag. `bytes.count` and two simple
regular expressions find those at memory speed, and a page that has them is
cut, at a tag, to the prefix whose worst case fits the budget: about half a
second and a hundred megabytes, whatever the page. The bounds assume the worst
arrangement of the tags they count, so an ordinary page is never cut by them,
while a page built for the parser (or a huge one) is.

`>` inside a quoted attribute value hides part of a long tag from the attribute
scan; a page built on that can still cost more, and the leg's strike limit (a
task that kills its leg is skipped) is the backstop for it.
"""

from __future__ import annotations

import re

__all__ = ["MAX_TAGS", "affordable"]

MAX_TAGS = 20_000
"""N tags nest at most N deep: 20,000 cost at most 2e8 stack steps, about 0.6 s."""
FEW_TAGS = 1_500
"""So few tags rebuild at most (FEW_TAGS / 2) ** 2 / 2 formatting elements (0.25 s, 100 MB)."""
REBUILD_UNITS = 1_250_000
"""Formatting-element rebuilds allowed, in units of a plain one (0.2 us, 200 bytes)."""
ATTRIBUTED_UNITS = 5
"""One with attributes costs about five times a plain one."""
PLAIN_ALIKE = 13 * 3 + 1
"""Entries the formatting list can hold without attributes: three of each name, one <a>."""
LONG_TAG = 1_024
"""Tags up to this long hold at most ~300 attribute names (0.15 ms each): not worth a look."""
ATTRIBUTE_PAIRS = 160_000_000
"""Attribute-name comparisons allowed in long tags, about 1.6 ns each (0.25 s)."""

_ATTRIBUTED_FORMATTING = re.compile(
    rb"<(?=[bBiIuUsScCeEfFnNtT])"
    rb"(?:[bB](?:[iI][gG])?|[iIuU]|[sS](?:[mM][aA][lL][lL]|[tT][rR](?:[iI][kK][eE]|[oO][nN][gG]))?"
    rb"|[cC][oO][dD][eE]|[eE][mM]|[fF][oO][nN][tT]|[nN][oO][bB][rR]|[tT][tT])"
    rb"[\t\n\f\r /][^>]*"
)
"""Start tags of formatting elements (bar <a>) with attributes: these escape the cap of three."""
_ATTRIBUTE_NAME = re.compile(rb"[\t\n\f\r /]+([^\t\n\f\r />=]+)")
_QUOTED = re.compile(rb"\"[^\"]*\"|'[^']*'")


def affordable(html: bytes) -> tuple[bytes, str | None]:
    """The prefix of `html` the parser can afford, and why it is not all of it."""
    tags = html.count(b"<")
    cuts: list[tuple[int, str]] = []
    if tags > MAX_TAGS:
        cuts.append((_nth_tag(html, MAX_TAGS), f"more than {MAX_TAGS} tags"))
    if tags > FEW_TAGS:
        allowed = _rebuild_tag_allowance(html)
        if tags > allowed:
            reason = f"formatting tags the parser could rebuild at each of {tags} tags"
            cuts.append((_nth_tag(html, allowed), reason))
    if len(html) > 2 * LONG_TAG:
        cut = _attribute_cut(html)
        if cut is not None:
            cuts.append((cut, "a tag with more attributes than the parser can afford"))
    if not cuts:
        return html, None
    cut, reason = min(cuts)
    return html[:cut], reason


def _rebuild_tag_allowance(html: bytes) -> int:
    """How many tags the page may have, if each rebuilt every formatting element it could.

    Entries alike (same name and attributes) count three times at most, as the
    parser keeps at most three; those without attributes are all alike per name.
    """
    seen: dict[bytes, int] = {}
    for tag in _ATTRIBUTED_FORMATTING.findall(html):
        seen[tag] = seen.get(tag, 0) + 1
    attributed = sum(min(count, 3) for count in seen.values())
    return REBUILD_UNITS // (PLAIN_ALIKE + ATTRIBUTED_UNITS * attributed)


def _attribute_cut(html: bytes) -> int | None:
    """Where the long tags' distinct attribute names pass the budget, if they do.

    A tag longer than 2 * LONG_TAG covers a whole LONG_TAG window with no ">" in
    it, so one `find` per window finds every such tag at memory speed.
    """
    pairs = 0
    window = 0
    size = len(html)
    while window < size:
        if html.find(b">", window, window + LONG_TAG) >= 0:
            window += LONG_TAG
            continue
        start = html.rfind(b"<", 0, window)
        if start < 0 or html.rfind(b">", 0, window) > start:  # text, not a tag
            window += LONG_TAG
            continue
        end = html.find(b">", window)
        end = size if end < 0 else end
        names = set(_ATTRIBUTE_NAME.findall(_QUOTED.sub(b" ", html[start:end])))
        pairs += len(names) ** 2
        if pairs > ATTRIBUTE_PAIRS:
            return start
        window = end
    return None


def _nth_tag(html: bytes, n: int) -> int:
    """Offset of the `n`-th "<" (0-based), counting a block at a time."""
    block = 1 << 16
    start = 0
    while (found := html.count(b"<", start, start + block)) <= n:
        n -= found
        start += block
    at = start - 1
    for _ in range(n + 1):
        at = html.find(b"<", at + 1)
    return at
