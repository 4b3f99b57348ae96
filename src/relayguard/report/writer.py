"""Writer room: put a report on disk as ``<reports>/<run-id>/`` and point ``latest`` at it.

The run directory is assembled under a hidden temporary name and renamed into place, so a
reader never sees a half-written report; ``latest`` is a relative symlink replaced
atomically (rename over the old link) and always names the newest run (run ids sort by
time). A run directory is never overwritten.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relayguard.report.render import render_all
from relayguard.report.run import RUN_ID_PATTERN
from relayguard.report.schema import validate_report
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


def write_report(doc: Mapping[str, Any], reports_dir: Path | str) -> Path:
    """Write report.json, report.xml, report.md and report.html of `doc` into
    ``reports_dir/<run-id>/`` and update ``latest``; returns the run directory.

    The document is scrubbed of secrets and validated first (`ReportInvalid`)."""
    clean = scrub(dict(doc))
    validate_report(clean)
    run_id: str = clean["run"]["run_id"]
    if not RUN_ID_PATTERN.match(run_id):  # the schema checks it too; it becomes a path
        raise ReportWriteError(f"run id {run_id!r} is not a safe directory name")
    root = Path(reports_dir)
    target = root / run_id
    files = render_all(clean)
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
