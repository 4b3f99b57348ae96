"""The Markdown summary, read back with a CommonMark+GFM parser (as GitLab/GitHub show it)."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from markdown_it import MarkdownIt

from relayguard.report import build_report
from relayguard.report.render import render_markdown
from report.samples import fleet_hosts, fleet_metadata


class _Tree(HTMLParser):
    """Collects headings, table rows (as cell texts) and every tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.headings: list[tuple[str, str]] = []
        self.tables: list[list[list[str]]] = []
        self._text: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th", "h1", "h2", "h3"):
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._text is not None:
            self._row.append("".join(self._text).strip())
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
        elif tag in ("h1", "h2", "h3") and self._text is not None:
            self.headings.append((tag, "".join(self._text).strip()))
        if tag in ("td", "th", "h1", "h2", "h3"):
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def _parse(markdown: str) -> _Tree:
    tree = _Tree()
    tree.feed(MarkdownIt("commonmark").enable("table").render(markdown))
    return tree


def _table(tree: _Tree, first_header: str) -> list[list[str]]:
    return next(t for t in tree.tables if t[0][0] == first_header)


def test_counts_hosts_and_failures(fleet_doc: dict[str, Any]):
    tree = _parse(render_markdown(fleet_doc))
    assert tree.headings[0] == ("h1", "relayguard report 20250301T120000Z-3f9a0c")
    statuses = dict(map(tuple, _table(tree, "Status")[1:]))
    assert statuses == {
        "compliant": "2",
        "remediated": "3",
        "rolled back": "1",
        "failed": "1",
        "unreachable": "1",
        "audit failed": "0",
    }
    assert dict(map(tuple, _table(tree, "Platform")[1:]))["postfix"] == "2"
    hosts = _table(tree, "Host")
    assert hosts[0] == ["Host", "Platform", "Before", "After", "Patch", "Changes", "Status"]
    assert [row[0] for row in hosts[1:]] == [h["host"] for h in fleet_doc["hosts"]]
    assert hosts[2][2:4] == ["open (bounced)", "closed"]
    assert hosts[4][6] == "rolled_back"
    failed = [text for tag, text in tree.headings if tag == "h3"]
    assert failed == [
        "ex2016-rb.corp.example — rolled_back",
        "exse-fail.corp.example — failed",
        "mx-legacy.branch.example — unreachable",
    ]
    changes = _table(tree, "Host")  # first table starting with Host is the fleet table
    assert changes is hosts
    change_rows = next(t for t in tree.tables if t[0][:2] == ["Host", "Control"])[1:]
    assert [
        "exse-fail.corp.example",
        "accepted-domain-type",
        "Accepted domain *",
        "ExternalRelay",
        "removed",
        "no",
    ] in change_rows


def test_why_and_evidence_are_given(fleet_doc: dict[str, Any]):
    text = render_markdown(fleet_doc)
    section = text.split("### exse-fail.corp.example")[1].split("###")[0]
    assert "**Why:** Remove-AcceptedDomain '\\*': Access is denied" in section
    assert "relay closed: **fail** — open relay: 16/16" in section
    assert "[relayed] nmap #16: MAIL FROM:<antispam@[192.0.2.17]>" in section  # fenced evidence


def test_everything_compliant_says_so(audit_doc: dict[str, Any]):
    hosts = [h for h in fleet_hosts() if h["status"] == "compliant"]
    tree = _parse(render_markdown(build_report(fleet_metadata(), hosts)))
    assert ("h2", "What failed and why") in tree.headings
    assert "h3" not in {tag for tag, _ in tree.headings}


def test_hostile_text_neither_breaks_tables_nor_injects_html():
    hosts = fleet_hosts()
    hosts[6]["error"] = "a | b <script>alert(1)</script> ``` `x` **y** [z](javascript:alert(1))"
    hosts[6]["host"] = "evil|<img src=x onerror=alert(1)>"
    hosts[6]["changes"][0]["target"] = "t|u\nnewline"
    tree = _parse(render_markdown(build_report(fleet_metadata(), hosts)))
    assert not {"script", "img", "a"} & set(tree.tags)
    for table in tree.tables:
        assert len({len(row) for row in table}) == 1, "every row keeps its column count"
    fleet = _table(tree, "Host")
    assert fleet[7][0] == "evil|<img src=x onerror=alert(1)>"
    why = next(t for tag, t in tree.headings if tag == "h3" and t.startswith("evil"))
    assert why == "evil|<img src=x onerror=alert(1)> — failed"
