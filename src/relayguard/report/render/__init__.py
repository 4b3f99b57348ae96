"""Renderers room: one relayguard.report/1 document in, one text format out (pure functions)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from relayguard.report.render.csv import render_csv
from relayguard.report.render.html import render_html
from relayguard.report.render.junit import render_junit
from relayguard.report.render.markdown import render_markdown
from relayguard.report.render.sarif import render_sarif


def render_json(doc: Mapping[str, Any]) -> str:
    """The document itself, indented, UTF-8 text."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


Renderer = Callable[[Mapping[str, Any]], str]

# format name -> (renderer, file name in a report directory)
FORMATS: dict[str, tuple[Renderer, str]] = {
    "json": (render_json, "report.json"),
    "junit": (render_junit, "report.xml"),
    "markdown": (render_markdown, "report.md"),
    "html": (render_html, "report.html"),
    "sarif": (render_sarif, "report.sarif"),
    "csv": (render_csv, "report.csv"),
}


def render(doc: Mapping[str, Any], fmt: str) -> str:
    """`doc` in format `fmt` (json, junit, markdown, html, sarif or csv)."""
    renderer, _ = FORMATS[fmt]
    return renderer(doc)


def render_all(
    doc: Mapping[str, Any], instead: Mapping[str, Renderer] | None = None
) -> dict[str, str]:
    """File name -> text for every format, as a report directory holds them; `instead`
    renders the files it names its own way (report.html with the drift, relayguard.report.
    writer)."""
    chosen = {name: renderer for renderer, name in FORMATS.values()} | dict(instead or {})
    return {name: renderer(doc) for name, renderer in chosen.items()}


__all__ = [
    "FORMATS",
    "render",
    "render_all",
    "render_csv",
    "render_html",
    "render_json",
    "render_junit",
    "render_markdown",
    "render_sarif",
]
