"""Drift between two reports: fixed / regressed / still failing / new host / gone, the exit
status of `relayguard report diff`, and the HTML page's change since the previous run."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from relayguard.cli import main
from relayguard.report import build_report, write_report
from relayguard.report.drift import baseline, diff_reports
from report.samples import fleet_hosts, fleet_metadata


def by_host(diff: dict[str, Any]) -> dict[str, str]:
    return {h["host"]: h["drift"] for h in diff["hosts"]}


def test_enforce_baseline_to_the_audit_after_it_is_every_open_host_fixed(
    fleet_doc: dict[str, Any],
):
    """The enforce run's before state against an audit of the verified state after it."""
    after_hosts = []
    for host in fleet_hosts():
        host["before"], host["after"], host["changes"] = host["after"], None, []
        after_hosts.append(host)
    meta = fleet_metadata("audit")
    meta["run_id"] = "20250301T130000Z-dd00ee"
    audit_after = build_report(meta, after_hosts)
    diff = diff_reports(baseline(fleet_doc), audit_after)
    drift = by_host(diff)
    open_before = {
        h["host"] for h in fleet_doc["hosts"] if (h["before"] or {}).get("verdict") == "open"
    }
    remediated = {h["host"] for h in fleet_doc["hosts"] if h["status"] == "remediated"}
    assert remediated and remediated <= open_before
    for name in remediated:
        assert drift[name] == "fixed", (name, diff)
    assert "regressed" not in drift.values()
    assert diff["exit_status"] == 0
    # the enforce report as written (its verified after state) shows no failing relay
    assert by_host(diff_reports(fleet_doc, audit_after))["pf-open.corp.example"] == "unchanged"


def test_regressed_still_failing_new_host_and_gone(audit_doc: dict[str, Any]):
    new = copy.deepcopy(audit_doc)
    new["run"]["run_id"] = "20250302T110000Z-ffff00"
    names = [h["host"] for h in new["hosts"]]
    ex2019 = next(h for h in new["hosts"] if h["host"] == "ex2019.corp.example")
    relay = next(f for f in ex2019["findings"] if f["id"] == "relay-closed")
    assert relay["result"] == "pass"
    relay["result"] = "fail"  # what was closed is open again
    gone = new["hosts"].pop(names.index("mx-legacy.branch.example"))
    extra = copy.deepcopy(next(h for h in new["hosts"] if h["host"] == "pf-open.corp.example"))
    extra["host"] = "pf-new.corp.example"
    new["hosts"].append(extra)
    diff = diff_reports(audit_doc, new)
    assert by_host(diff) == {
        "pf-open.corp.example": "still_failing",
        "ex2019.corp.example": "regressed",
        "pf-new.corp.example": "new_host",
        gone["host"]: "gone",
    }
    regressed = next(h for h in diff["hosts"] if h["host"] == "ex2019.corp.example")
    assert regressed["findings"] == [
        {
            "id": "relay-closed",
            "drift": "regressed",
            "old": "pass",
            "new": "fail",
            "advisory": False,
        }
    ]
    assert diff["regressed"] and diff["exit_status"] == 2


def test_an_advisory_regression_is_listed_but_regresses_no_host(audit_doc: dict[str, Any]):
    """RFC 2505 conformance is reported beside the verdict: its regression is shown and
    counted, and neither the host nor the exit status regresses."""
    new = copy.deepcopy(audit_doc)
    new["run"]["run_id"] = "20250302T110000Z-ffff01"
    host = next(h for h in new["hosts"] if h["host"] == "ex2019.corp.example")
    vrfy = next(f for f in host["findings"] if f["id"] == "rfc2505-null-sender-accepted")
    assert (vrfy["result"], vrfy["advisory"]) == ("pass", True)
    vrfy["result"] = "fail"
    diff = diff_reports(audit_doc, new)
    entry = next(h for h in diff["hosts"] if h["host"] == "ex2019.corp.example")
    assert entry["drift"] == "unchanged"
    assert entry["findings"] == [
        {
            "id": "rfc2505-null-sender-accepted",
            "drift": "regressed",
            "old": "pass",
            "new": "fail",
            "advisory": True,
        }
    ]
    assert diff["summary"]["advisory_regressed"] == 1
    assert (diff["regressed"], diff["exit_status"]) == (False, 0)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["report", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_report_diff_cli_exit_statuses(
    tmp_path: Path, audit_doc: dict[str, Any], capsys: pytest.CaptureFixture[str]
):
    old = tmp_path / "old.json"
    old.write_text(json.dumps(audit_doc))
    status, out, err = _cli(capsys, "diff", str(old), str(old))
    assert (status, err) == (0, "")
    assert "regressed: no" in out
    fixed = copy.deepcopy(audit_doc)
    for host in fixed["hosts"]:
        host["before"] = None
    new = tmp_path / "new.json"
    new.write_text(json.dumps(build_report(fixed["run"], fixed["hosts"])))
    status, out, _ = _cli(capsys, "diff", "--json", str(new), str(old))
    assert status == 2
    assert json.loads(out)["regressed"] is True
    status, _, err = _cli(capsys, "diff", str(old))
    assert status == 1 and "usage: relayguard report diff" in err
    status, _, err = _cli(capsys, "diff", str(old), str(tmp_path / "missing.json"))
    assert status == 1 and "cannot read" in err


def test_html_shows_the_change_since_the_previous_run(
    tmp_path: Path, audit_doc: dict[str, Any], fleet_doc: dict[str, Any]
):
    first = write_report(audit_doc, tmp_path)
    assert "Change since the previous run" not in (first / "report.html").read_text()
    second = write_report(fleet_doc, tmp_path)  # later run id, same reports dir
    page = (second / "report.html").read_text()
    assert f"Change since the previous run ({audit_doc['run']['run_id']})" in page
    assert "new host" in page
