"""The HTML page, parsed: self-contained, escaped, and locked down by its own CSP."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from typing import Any

from relayguard.report.render import render_html
from report.samples import HOSTILE_BANNER, HOSTILE_REPLY

ASSET_ATTRIBUTES = {"src", "href", "srcset", "action", "formaction", "data", "poster", "xlink:href"}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.blocks: dict[str, list[str]] = {"script": [], "style": []}
        self.text: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag in self.blocks:
            self._in = tag
            self.blocks[tag].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.blocks[self._in][-1] += data
        else:
            self.text.append(data)


def _page(doc: dict[str, Any]) -> tuple[str, _Page]:
    html = render_html(doc)
    page = _Page()
    page.feed(html)
    return html, page


def _sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def test_self_contained(fleet_doc: dict[str, Any]):
    _, page = _page(fleet_doc)
    tags = [tag for tag, _ in page.elements]
    assert tags.count("script") == 1 and tags.count("style") == 1
    assert not {"link", "img", "iframe", "object", "embed", "base", "form", "svg"} & set(tags)
    for tag, attrs in page.elements:
        for name, value in attrs.items():
            assert not name.startswith("on"), f"inline handler on <{tag}>"
            assert name != "style", f"inline style on <{tag}> (the CSP would block it)"
            if name in ASSET_ATTRIBUTES:
                assert value is not None and value.startswith("#"), f"<{tag} {name}={value}>"
    (css,) = page.blocks["style"]
    (js,) = page.blocks["script"]
    assert "url(" not in css and "@import" not in css and "@font-face" not in css
    assert not re.search(r"\b(fetch|XMLHttpRequest|WebSocket|EventSource|import\()", js)


def test_csp_allows_exactly_the_inline_blocks(fleet_doc: dict[str, Any]):
    _, page = _page(fleet_doc)
    (meta,) = [a for t, a in page.elements if t == "meta" and a.get("http-equiv")]
    policy = dict((part.split()[0], part.split()[1:]) for part in str(meta["content"]).split("; "))
    assert policy["default-src"] == ["'none'"]
    assert policy["style-src"] == [_sha256(page.blocks["style"][0])]
    assert policy["script-src"] == [_sha256(page.blocks["script"][0])]


def test_hostile_strings_are_text(fleet_doc: dict[str, Any]):
    html, page = _page(fleet_doc)
    text = "".join(page.text)
    assert "<script>alert('banner')</script>" in text  # shown, as text
    assert "<script>alert('banner')" not in html  # never as markup
    assert HOSTILE_REPLY in text and "<img src=x" not in html
    assert "\\x1b[31mred\\x1b[0m" in text and "\x1b" not in html and "\x00" not in html
    assert HOSTILE_BANNER.split("<")[0] in text


def test_one_row_and_one_detail_per_host(fleet_doc: dict[str, Any]):
    _, page = _page(fleet_doc)
    rows = [a for t, a in page.elements if t == "tr" and a.get("data-host")]
    articles = [a for t, a in page.elements if t == "article"]
    assert [r["data-status"] for r in rows] == [h["status"] for h in fleet_doc["hosts"]]
    assert [r["data-detail"] for r in rows] == [a["id"] for a in articles]
