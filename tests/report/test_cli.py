"""`relayguard report PATH --format ...`: validate, render, and one clear line on error."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from relayguard.cli import main
from relayguard.report import write_report


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["report", *argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    ("fmt", "start"),
    [
        ("json", "{"),
        ("junit", "<?xml"),
        ("markdown", "# relayguard report"),
        ("html", "<!DOCTYPE html>"),
    ],
)
def test_renders_every_format(
    tmp_path: Path,
    fleet_doc: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    fmt: str,
    start: str,
) -> None:
    run_dir = write_report(fleet_doc, tmp_path)
    status, out, err = _run(capsys, str(run_dir / "report.json"), "--format", fmt)
    assert (status, err) == (0, "")
    assert out.startswith(start)
    assert (
        out
        == (
            run_dir
            / {
                "json": "report.json",
                "junit": "report.xml",
                "markdown": "report.md",
                "html": "report.html",
            }[fmt]
        ).read_text()
    )


def test_directory_output_file_and_check(
    tmp_path: Path, fleet_doc: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    write_report(fleet_doc, tmp_path)
    target = tmp_path / "out.xml"
    status, out, _ = _run(capsys, str(tmp_path / "latest"), "--format", "junit", "-o", str(target))
    assert (status, out) == (0, "")
    assert target.read_text().startswith("<?xml")
    status, _, _ = _run(capsys, str(tmp_path / "latest"), "--check", "-o", str(tmp_path / "x.md"))
    assert status == 2  # the fleet sample is non-compliant


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read {path}: No such file or directory"),
        ("{not json", "{path} is not JSON: line 1 column 2: Expecting property name"),
        (
            '{"schema": "relayguard.probe/1", "options": {}, "hosts": []}',
            "{path} is a relayguard.probe/1 document, not a report",
        ),
        (
            "BROKEN_STATUS",
            "{path}: invalid relayguard.report/1 document: $.hosts[2].status: 'lost' is not one of",
        ),
        (
            "SECRET",
            "{path}: invalid relayguard.report/1 document: "
            "$.run.probe_options.password: secret material in a report (refused)",
        ),
    ],
)
def test_errors_are_one_clear_line(
    tmp_path: Path,
    fleet_doc: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / "report.json"
    if content == "BROKEN_STATUS":
        doc = copy.deepcopy(fleet_doc)
        doc["hosts"][2]["status"] = "lost"
        content = json.dumps(doc)
    elif content == "SECRET":
        doc = copy.deepcopy(fleet_doc)
        doc["run"]["probe_options"]["password"] = "hunter2"
        content = json.dumps(doc)
    if content is not None:
        path.write_text(content)
    status, out, err = _run(capsys, str(path), "--format", "html")
    assert (status, out) == (1, "")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("relayguard report: " + message.format(path=path))
    assert "hunter2" not in err


def test_unwritable_output_is_one_line(
    tmp_path: Path, fleet_doc: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    write_report(fleet_doc, tmp_path)
    status, _, err = _run(capsys, str(tmp_path / "latest"), "-o", str(tmp_path / "no" / "x.md"))
    assert status == 1
    missing = tmp_path / "no" / "x.md"
    assert err == f"relayguard report: cannot write {missing}: No such file or directory\n"


def test_the_installed_command(tmp_path: Path, fleet_doc: dict[str, Any]) -> None:
    write_report(fleet_doc, tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "relayguard.cli",
            "report",
            str(tmp_path / "latest"),
            "--check",
            "--format",
            "markdown",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "**Result: NON-COMPLIANT** (exit status 2)" in done.stdout
