"""`relayguard report PATH`: validate a report.json and render it again in any format.

Exit status (docs/exit-status.md): 0 rendered; 1 unreadable or invalid report, or the
output cannot be written. With ``--check`` a rendered report exits with its compliance
instead: 0 compliant, 2 non-compliant, 3 inconclusive.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from relayguard.report import FORMATS, ReportInvalid, render, validate_report
from relayguard.vocabulary import PROBE_SCHEMA

EXIT_ERROR = 1
REPORT_FILE = "report.json"


class ReportCommandError(Exception):
    """One line for the user; the command exits 1."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="validate a report.json and render it (json, junit, markdown, html)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "path", metavar="PATH", help="a report.json, or a run directory holding one"
    )
    parser.add_argument(
        "--format",
        choices=list(FORMATS),
        default="markdown",
        help="output format (default: markdown)",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument(
        "--check", action="store_true", help="exit 0/2/3 by the report's compliance after rendering"
    )
    parser.set_defaults(func=run)


def load_report(path: Path) -> dict[str, Any]:
    """The validated report at `path` (a file, or a directory holding report.json)."""
    try:
        if path.is_dir():
            path = path / REPORT_FILE
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ReportCommandError(f"cannot read {path}: {reason}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportCommandError(
            f"{path} is not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    if isinstance(doc, dict) and doc.get("schema") == PROBE_SCHEMA:
        raise ReportCommandError(
            f"{path} is a {PROBE_SCHEMA} document, not a report: "
            "make one with `relayguard probe --report DIR`"
        )
    try:
        validate_report(doc)
    except ReportInvalid as exc:
        raise ReportCommandError(f"{path}: {exc}") from exc
    report: dict[str, Any] = doc
    return report


def write_output(text: str, output: str | None) -> None:
    """`text` to stdout, or atomically to the file `output`."""
    if output is None:
        sys.stdout.write(text)
        return
    target = Path(output)
    try:
        handle, staging = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise ReportCommandError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(staging, 0o644)
        os.replace(staging, target)
    except OSError as exc:
        Path(staging).unlink(missing_ok=True)
        raise ReportCommandError(f"cannot write {target}: {exc.strerror or exc}") from exc


def run(args: argparse.Namespace) -> int:
    try:
        doc = load_report(Path(args.path))
        write_output(render(doc, args.format), args.output)
    except ReportCommandError as exc:
        print(f"relayguard report: {exc}", file=sys.stderr)
        return EXIT_ERROR
    status: int = doc["summary"]["exit_status"] if args.check else 0
    return status
