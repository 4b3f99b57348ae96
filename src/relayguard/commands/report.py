"""`relayguard report PATH`: validate a report.json and render it again in any format;
`relayguard report diff OLD NEW`: what changed between two reports.

Exit status (docs/exit-status.md): 0 rendered; 1 unreadable or invalid report, unreadable
waiver file, or the output cannot be written. With ``--check`` a rendered report exits with
its compliance instead: 0 compliant, 2 non-compliant, 3 inconclusive. ``--waivers FILE``
recomputes the findings under that waiver file first (an expired or malformed entry is
reported on stderr, naming it, and its finding counts). ``diff``: 0 nothing regressed, 1
usage or unreadable report, 2 something regressed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relayguard.report import FORMATS, ReportInvalid, render, validate_report
from relayguard.report.document import apply_waivers
from relayguard.report.drift import baseline, diff_reports, drift_lines
from relayguard.report.waivers import WaiverFileError, load_waivers
from relayguard.vocabulary import PROBE_SCHEMA

EXIT_ERROR = 1
REPORT_FILE = "report.json"


class ReportCommandError(Exception):
    """One line for the user; the command exits 1."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="validate a report.json and render it (json, junit, markdown, html, sarif, csv), "
        "or `report diff OLD NEW`",
        description=__doc__.splitlines()[0],
        usage="%(prog)s [options] PATH\n       %(prog)s diff [--json] [--baseline] OLD NEW",
    )
    parser.add_argument(
        "path",
        metavar="PATH",
        nargs="*",
        help="a report.json, or a run directory holding one; or: diff OLD NEW",
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
    parser.add_argument(
        "--waivers",
        metavar="FILE",
        help="YAML waiver file: {host, finding, justification, approver, expires} entries",
    )
    parser.add_argument("--json", action="store_true", help="diff: the drift as JSON")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="diff: compare OLD as its run found the fleet (an enforce run's before state)",
    )
    parser.set_defaults(func=run)
    paths_anywhere(parser)


def paths_anywhere(parser: argparse.ArgumentParser) -> None:
    """Let PATHs follow options (`report diff --json OLD NEW`): argparse takes one run of
    positionals and leaves later ones unrecognised; they are PATHs here."""
    parse = parser.parse_known_args

    def parse_known_args(
        args: Any = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = parse(args, namespace)
        parsed.path = list(parsed.path or []) + [e for e in extras if not e.startswith("-")]
        return parsed, [e for e in extras if e.startswith("-")]

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign, assignment]


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


def with_waivers(doc: dict[str, Any], path: str) -> dict[str, Any]:
    """`doc` with its findings recomputed under the waiver file; errors go to stderr."""
    try:
        waivers, errors = load_waivers(path, datetime.now(UTC).date())
    except WaiverFileError as exc:
        raise ReportCommandError(str(exc)) from exc
    for error in errors:
        print(f"relayguard report: {path}: {error}", file=sys.stderr)
    return apply_waivers(doc, waivers, errors)


def run_diff(args: argparse.Namespace) -> int:
    if len(args.path) != 3:
        raise ReportCommandError("usage: relayguard report diff [--json] [--baseline] OLD NEW")
    old, new = (load_report(Path(p)) for p in args.path[1:])
    if args.baseline:
        old = baseline(old)
    diff = diff_reports(old, new)
    text = json.dumps(diff, indent=2) + "\n" if args.json else "\n".join(drift_lines(diff)) + "\n"
    write_output(text, args.output)
    status: int = diff["exit_status"]
    return status


def run_render(args: argparse.Namespace) -> int:
    if len(args.path) != 1:  # none, or more than one
        raise ReportCommandError("one report PATH (or: report diff OLD NEW)")
    if args.json or args.baseline:
        raise ReportCommandError("--json and --baseline go with `report diff`")
    doc = load_report(Path(args.path[0]))
    if args.waivers:
        doc = with_waivers(doc, args.waivers)
    write_output(render(doc, args.format), args.output)
    status: int = doc["summary"]["exit_status"] if args.check else 0
    return status


def run(args: argparse.Namespace) -> int:
    try:
        return run_diff(args) if args.path[:1] == ["diff"] else run_render(args)
    except ReportCommandError as exc:
        print(f"relayguard report: {exc}", file=sys.stderr)
        return EXIT_ERROR
