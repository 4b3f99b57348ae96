"""Writer room: put a report on disk as ``<reports>/<run-id>/`` and point ``latest`` at it.

The run directory is assembled under a hidden temporary name and renamed into place, so a
reader never sees a half-written report; ``latest`` is a relative symlink replaced
atomically (rename over the old link) and always names the newest run (run ids sort by
time). A run directory is never overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relayguard.report.drift import diff_reports
from relayguard.report.render import render_all
from relayguard.report.render.html import render_html
from relayguard.report.run import RUN_ID_PATTERN
from relayguard.report.schema import ReportInvalid, report_problems, validate_report
from relayguard.report.scrub import scrub

LATEST = "latest"


class ReportWriteError(OSError):
    """The report could not be written where asked (one line, names the path)."""


def run_directories(reports_dir: Path) -> list[Path]:
    """The run directories under `reports_dir`, oldest first."""
    if not reports_dir.is_dir():
        return []
    found = [p for p in reports_dir.iterdir() if RUN_ID_PATTERN.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: p.name)


def point_latest(reports_dir: Path) -> Path | None:
    """Make `reports_dir/latest` name the newest run directory; returns that directory."""
    runs = run_directories(reports_dir)
    if not runs:
        return None
    link = reports_dir / LATEST
    if link.exists() and not link.is_symlink():
        raise ReportWriteError(f"{link} exists and is not a symlink; move it away")
    staging = reports_dir / f".{LATEST}.{os.getpid()}.tmp"
    staging.unlink(missing_ok=True)
    staging.symlink_to(runs[-1].name, target_is_directory=True)
    os.replace(staging, link)
    return runs[-1]


def previous_report(reports_dir: Path, run_id: str) -> dict[str, Any] | None:
    """The newest valid report.json under `reports_dir` older than `run_id` (None: none)."""
    for run_dir in reversed(run_directories(reports_dir)):
        if run_dir.name >= run_id:
            continue
        try:
            doc = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
            validate_report(doc)
        except (OSError, UnicodeDecodeError, ValueError, ReportInvalid):
            continue  # a damaged or foreign run does not stop this one being written
        found: dict[str, Any] = doc
        return found
    return None


def write_report(doc: Mapping[str, Any], reports_dir: Path | str) -> Path:
    """Write report.json, report.xml, report.md, report.html, report.sarif and report.csv of
    `doc` into ``reports_dir/<run-id>/`` and update ``latest``; returns the run directory.
    When an older run is there, report.html also shows the drift since it.

    The document is scrubbed of secrets and validated first (`ReportInvalid`)."""
    clean = scrub(dict(doc))
    # scrubbed just now, so no secret is left to find: the schema and semantic checks only
    problems = report_problems(clean, secrets=False)
    if problems:
        raise ReportInvalid("relayguard.report/1 document", problems)
    run_id: str = clean["run"]["run_id"]
    if not RUN_ID_PATTERN.match(run_id):  # the schema checks it too; it becomes a path
        raise ReportWriteError(f"run id {run_id!r} is not a safe directory name")
    root = Path(reports_dir)
    target = root / run_id
    previous = previous_report(root, run_id)
    # the HTML page shows the change since the previous run (rendered once, with it)
    drift = None if previous is None else diff_reports(previous, clean)
    files = render_all(clean, {"report.html": lambda d: render_html(d, drift)})
    try:
        root.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise ReportWriteError(f"{target} already exists: a run is never overwritten")
        staging = Path(tempfile.mkdtemp(prefix=f".{run_id}.", dir=root))
        try:
            for name, text in files.items():
                (staging / name).write_text(text, encoding="utf-8")
            staging.chmod(0o755)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        point_latest(root)
    except ReportWriteError:
        raise
    except OSError as exc:
        raise ReportWriteError(f"cannot write report under {root}: {exc.strerror or exc}") from exc
    return target
