"""CSV renderer: one row per host and finding, for spreadsheets (RFC 4180, UTF-8).

Columns: run, host, platform, status, finding, title, result, message, controls (ids, "; "
between), no_control, and the waiver's justification, approver and expiry. Text that a
spreadsheet would run as a formula (a cell starting with = + - @, tab or carriage return)
is prefixed with an apostrophe (OWASP "CSV Injection"; docs/sources.md#owasp-csv-injection):
banners and replies come from servers we do not trust.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from relayguard.report.findings import findings_of
from relayguard.report.text import one_line

COLUMNS = (
    "run_id",
    "host",
    "platform",
    "status",
    "finding",
    "title",
    "result",
    "message",
    "controls",
    "no_control",
    "waiver_justification",
    "waiver_approver",
    "waiver_expires",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object) -> str:
    """One cell: on one line, and never read as a formula."""
    text = one_line("" if value is None else value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_rows(doc: Mapping[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    for host in doc["hosts"]:
        for f in findings_of(doc, host):
            waiver = f.get("waiver") or {}
            values = (
                doc["run"]["run_id"],
                host["host"],
                host["platform"],
                host["status"],
                f["id"],
                f["title"],
                f["result"],
                f["message"],
                "; ".join(c["id"] for c in f["controls"]),
                f.get("no_control"),
                waiver.get("justification"),
                waiver.get("approver"),
                waiver.get("expires"),
            )
            rows.append([cell(v) for v in values])
    return rows


def render_csv(doc: Mapping[str, Any]) -> str:
    """The report's findings as CSV text with a header row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(csv_rows(doc))
    return out.getvalue()
