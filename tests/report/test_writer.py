"""Writing reports/<run-id>/ with every format, and the `latest` symlink."""

from __future__ import annotations

import copy
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from relayguard.report import ReportInvalid, ReportWriteError, new_run_id, write_report
from relayguard.report.run import RUN_ID_PATTERN, utc_timestamp


def test_run_ids_sort_by_time_and_are_unique():
    early = new_run_id(datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC))
    late = new_run_id(datetime(2025, 3, 1, 12, 0, 6, tzinfo=UTC))
    assert early.startswith("20250301T120005Z-") and RUN_ID_PATTERN.match(early)
    assert sorted([late, early]) == [early, late]
    same_second = {new_run_id(datetime(2025, 3, 1, tzinfo=UTC)) for _ in range(50)}
    assert len(same_second) > 1
    assert utc_timestamp(datetime(2025, 3, 1, 13, 0, tzinfo=UTC)) == "2025-03-01T13:00:00Z"


def test_writes_every_format_and_points_latest(tmp_path: Path, fleet_doc: dict[str, Any]):
    run_dir = write_report(fleet_doc, tmp_path / "reports")
    assert run_dir == tmp_path / "reports" / "20250301T120000Z-3f9a0c"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "report.csv",
        "report.html",
        "report.json",
        "report.md",
        "report.sarif",
        "report.xml",
    ]
    assert json.loads((run_dir / "report.json").read_text()) == fleet_doc
    latest = tmp_path / "reports" / "latest"
    assert latest.is_symlink() and os.readlink(latest) == run_dir.name
    assert (latest / "report.md").read_text().startswith("# relayguard report")
    assert [p.name for p in (tmp_path / "reports").iterdir() if p.name.startswith(".")] == []


def test_latest_follows_the_newest_run(tmp_path: Path, fleet_doc: dict[str, Any]):
    newer = copy.deepcopy(fleet_doc)
    newer["run"]["run_id"] = "20250302T080000Z-beef01"
    older = copy.deepcopy(fleet_doc)
    older["run"]["run_id"] = "20250228T080000Z-0ld001"
    write_report(newer, tmp_path)
    write_report(older, tmp_path)  # written later, but an older run
    assert os.readlink(tmp_path / "latest") == "20250302T080000Z-beef01"


def test_never_overwrites_a_run(tmp_path: Path, fleet_doc: dict[str, Any]):
    write_report(fleet_doc, tmp_path)
    before = (tmp_path / "20250301T120000Z-3f9a0c" / "report.json").read_text()
    changed = copy.deepcopy(fleet_doc)
    changed["run"]["user"] = "someone-else"
    with pytest.raises(ReportWriteError, match="already exists"):
        write_report(changed, tmp_path)
    assert (tmp_path / "20250301T120000Z-3f9a0c" / "report.json").read_text() == before


def test_refuses_invalid_documents_and_unsafe_run_ids(tmp_path: Path, fleet_doc: dict[str, Any]):
    bad = copy.deepcopy(fleet_doc)
    bad["run"]["run_id"] = "../escape"
    with pytest.raises(ReportInvalid, match=r"\$\.run\.run_id"):
        write_report(bad, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_secrets_are_redacted_on_write(tmp_path: Path, fleet_doc: dict[str, Any]):
    leaky = copy.deepcopy(fleet_doc)
    leaky["run"]["probe_options"]["auth_password"] = "hunter2"
    run_dir = write_report(leaky, tmp_path)
    for path in run_dir.iterdir():
        assert "hunter2" not in path.read_text()


def test_latest_that_is_a_directory_is_not_clobbered(tmp_path: Path, fleet_doc: dict[str, Any]):
    (tmp_path / "latest").mkdir()
    with pytest.raises(ReportWriteError, match="not a symlink"):
        write_report(fleet_doc, tmp_path)
    assert (tmp_path / "latest").is_dir() and not (tmp_path / "latest").is_symlink()
