"""Text fields as a browser shows them: decoded by the page's charset, spaced as laid out."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import lxml.html
import pytest

from tests.functional.loopback import LoopbackServer, static
from worker.fetch import Fetcher, FetchPolicy
from worker.netguard import NetPolicy
from worker.processor import TaskContext, process
from worker.tasks import Task

SAMPLES = {
    "shift_jis": ("日本語のタイトル", "ページの説明です", "見出し　その一"),
    "euc-kr": ("한국어 제목", "페이지 설명입니다", "첫 번째 제목"),
    "windows-1251": ("Заголовок страницы", "Описание страницы", "Первый заголовок"),
    "iso-8859-1": ("Café crème", "À la carte, s'il vous plaît", "Déjà vu"),
}


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


@pytest.fixture(scope="module")
def fetcher() -> Iterator[Fetcher]:
    f = Fetcher(FetchPolicy(attempts=1), NetPolicy.from_cidrs(("127.0.0.0/8",)))
    yield f
    f.close()


def fetch(
    server: LoopbackServer, fetcher: Fetcher, body: bytes, content_type: str = "text/html"
) -> dict[str, Any]:
    path = f"/page/{len(server.routes)}"
    server.routes[path] = static(body, content_type)
    return process(Task(0, server.url(path)), TaskContext(fetcher, time.monotonic() + 5))


def page(title: str, description: str, h1: str, head: str = "") -> str:
    return (
        f"<!doctype html><html><head>{head}<title>{title}</title>"
        f'<meta name="description" content="{description}"></head>'
        f"<body><h1>{h1}</h1><p>body</p></body></html>"
    )


def fields(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["title"], row["description"], row["h1"]


@pytest.mark.parametrize("charset", sorted(SAMPLES))
def test_extract_decodes_a_charset_declared_in_the_header(
    server: LoopbackServer, fetcher: Fetcher, charset: str
) -> None:
    body = page(*SAMPLES[charset]).encode(charset)
    row = fetch(server, fetcher, body, f"text/html; charset={charset}")
    assert fields(row) == SAMPLES[charset]


@pytest.mark.parametrize("charset", sorted(SAMPLES))
def test_extract_decodes_a_charset_declared_by_meta_charset(
    server: LoopbackServer, fetcher: Fetcher, charset: str
) -> None:
    body = page(*SAMPLES[charset], head=f'<meta charset="{charset}">').encode(charset)
    assert fields(fetch(server, fetcher, body)) == SAMPLES[charset]


@pytest.mark.parametrize("charset", sorted(SAMPLES))
def test_extract_decodes_a_charset_declared_by_http_equiv(
    server: LoopbackServer, fetcher: Fetcher, charset: str
) -> None:
    meta = f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">'
    body = page(*SAMPLES[charset], head=meta).encode(charset)
    assert fields(fetch(server, fetcher, body)) == SAMPLES[charset]


def test_extract_header_charset_wins_over_meta(server: LoopbackServer, fetcher: Fetcher) -> None:
    sample = SAMPLES["windows-1251"]
    body = page(*sample, head='<meta charset="utf-8">').encode("windows-1251")
    assert fields(fetch(server, fetcher, body, "text/html; charset=windows-1251")) == sample


def test_extract_byte_order_mark_wins_over_the_header(
    server: LoopbackServer, fetcher: Fetcher
) -> None:
    sample = SAMPLES["shift_jis"]
    body = b"\xef\xbb\xbf" + page(*sample).encode("utf-8")
    assert fields(fetch(server, fetcher, body, "text/html; charset=iso-8859-1")) == sample


def test_extract_undeclared_non_utf8_page_reads_as_windows_1252(
    server: LoopbackServer, fetcher: Fetcher
) -> None:
    sample = ("Price: 10 €", "“Quoted” — dashes", "Naïve café")
    body = page(*sample).encode("windows-1252")
    assert fields(fetch(server, fetcher, body)) == sample


def test_extract_undeclared_utf8_page_reads_as_utf8(
    server: LoopbackServer, fetcher: Fetcher
) -> None:
    sample = SAMPLES["euc-kr"]
    assert fields(fetch(server, fetcher, page(*sample).encode("utf-8"))) == sample


TRICKY_PAGES = {
    "inline code": page("Metadata", "d", "Metadata on <code>io.files</code> documents"),
    "newlines in title": page("A\n   multi-line\r\n\ttitle  ", "d", "h"),
    "nested inline": page(
        "t", "d", '<a href="/x"><span>Deep<i>ly</i></span> <em>nested</em></a><b>in</b>line'
    ),
    "br": page("t", "d", "Line one<br>Line two<br/>three"),
    "blocks in h1": page("t", "d", "<div>Block</div><div>split</div>tail"),
    "entities": page(
        "Fish &amp; Chips &mdash; menu", "&quot;Quoted&quot;\n  and\tspaced", "5 &lt; 6 &#62; 4"
    ),
    "nbsp": page("Fish&nbsp;&amp;&nbsp;Chips", "a&nbsp; b", "5&nbsp;km&#160; away"),
    "hidden parts": page("t", "d", "Shown<script>var hidden = 1;</script> text<style>p{}</style>"),
    "empty": page("", "", ""),
}


def shown_text(element: Any) -> str:
    """The oracle: lxml's text, with a break at <br> and around blocks, whitespace normalised."""
    element = lxml.html.fromstring(lxml.html.tostring(element))  # a copy to edit
    for hidden in element.xpath(".//script|.//style"):
        hidden.drop_tree()
    for node in element.iter():
        if node.tag == "br":
            node.tail = "\n" + (node.tail or "")
        elif node is not element and node.tag in ("div", "p"):
            node.text = "\n" + (node.text or "")
            node.tail = "\n" + (node.tail or "")
    return normalised(element.text_content())


def normalised(text: str) -> str:
    """The HTML Standard's rule for `document.title`: collapse ASCII whitespace, strip."""
    return re.sub(r"[\t\n\f\r ]+", " ", text).strip(" ")


@pytest.mark.parametrize("name", sorted(TRICKY_PAGES))
def test_extract_text_fields_equal_an_independent_parse(
    server: LoopbackServer, fetcher: Fetcher, name: str
) -> None:
    body = TRICKY_PAGES[name].encode()
    tree = lxml.html.fromstring(body)
    expected = (
        normalised(tree.find(".//title").text_content()),
        normalised(tree.xpath("//meta[@name='description']/@content")[0]),
        shown_text(tree.find(".//h1")),
    )
    assert fields(fetch(server, fetcher, body, "text/html; charset=utf-8")) == expected


def test_extract_inline_code_keeps_its_spaces(server: LoopbackServer, fetcher: Fetcher) -> None:
    row = fetch(server, fetcher, TRICKY_PAGES["inline code"].encode())
    assert row["h1"] == "Metadata on io.files documents"


def test_extract_no_break_space_stays_as_in_document_title(
    server: LoopbackServer, fetcher: Fetcher
) -> None:
    row = fetch(server, fetcher, TRICKY_PAGES["nbsp"].encode())
    assert row["title"] == "Fish\xa0&\xa0Chips"
