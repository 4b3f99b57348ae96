"""SARIF 2.1.0 and CSV: the same document as the other formats, validated, scrubbed.

The SARIF output is validated against the OASIS SARIF 2.1.0 schema shipped beside this test
(tests/report/sarif/README.md says where it comes from), with format checking on.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator, FormatChecker

from relayguard.report import build_report, render, write_report
from relayguard.report.render.csv import COLUMNS
from relayguard.report.waivers import parse_waivers
from report.samples import fleet_hosts, fleet_metadata

SCHEMA = json.loads(
    (Path(__file__).parent / "sarif" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8")
)
TODAY = date(2025, 3, 1)


def sarif_problems(log: Any) -> list[str]:
    validator = Draft4Validator(SCHEMA, format_checker=FormatChecker())
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]


def test_the_schema_is_the_sarif_2_1_0_schema_and_rejects_a_broken_log():
    assert SCHEMA["properties"]["version"]["enum"] == ["2.1.0"]
    assert sarif_problems({"version": "2.1.0", "runs": [{"tool": {}}]})  # driver missing


def test_fleet_sarif_validates_one_rule_per_finding_id_one_result_per_failing_host_finding(
    fleet_doc: dict[str, Any],
):
    log = json.loads(render(fleet_doc, "sarif"))
    assert sarif_problems(log) == []
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    rule_ids = [r["id"] for r in rules]
    assert len(rule_ids) == len(set(rule_ids))
    failing = {
        (h["host"], f["id"])
        for h in fleet_doc["hosts"]
        for f in h["findings"]
        if f["result"] == "fail"
    }
    assert failing  # the sample fleet has open relays and a roll-back
    got = {(r["locations"][0]["logicalLocations"][0]["name"], r["ruleId"]) for r in run["results"]}
    assert got == failing
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    relay = next(r for r in rules if r["id"] == "relay-closed")
    assert "EX19-MB-000135" in relay["help"]["text"]
    assert "RHEL-09-252050" in relay["properties"]["controls"]
    assert relay["properties"]["source"]
    remediation = next(r for r in rules if r["id"] == "remediation")
    assert "No control:" in remediation["help"]["text"]


def test_a_waived_finding_is_a_suppressed_result_with_its_justification():
    waivers, errors = parse_waivers(
        [
            {
                "host": "pf-open.corp.example",
                "finding": "relay-closed",
                "justification": "legacy scanner relay until cut-over",
                "approver": "ciso@corp.example",
                "expires": "2025-06-30",
            }
        ],
        TODAY,
    )
    meta = fleet_metadata("audit")
    hosts = [h for h in fleet_hosts() if h["host"] == "pf-open.corp.example"]
    for h in hosts:
        h["after"], h["changes"], h["status"] = None, [], "audit_failed"
    doc = build_report(meta, hosts, waivers, errors)
    log = json.loads(render(doc, "sarif"))
    assert sarif_problems(log) == []
    (result,) = [r for r in log["runs"][0]["results"] if r["ruleId"] == "relay-closed"]
    (suppression,) = result["suppressions"]
    assert suppression["status"] == "accepted"
    assert "legacy scanner relay" in suppression["justification"]


def test_csv_has_one_row_per_host_and_finding_with_controls(fleet_doc: dict[str, Any]):
    rows = list(csv.reader(io.StringIO(render(fleet_doc, "csv"))))
    assert tuple(rows[0]) == COLUMNS
    body = [dict(zip(COLUMNS, r, strict=True)) for r in rows[1:]]
    expected = [(h["host"], f["id"]) for h in fleet_doc["hosts"] for f in h["findings"]]
    assert [(r["host"], r["finding"]) for r in body] == expected
    for row in body:
        if row["result"] == "fail":
            assert row["controls"] or row["no_control"], row


def test_csv_cells_are_never_spreadsheet_formulas():
    hosts = fleet_hosts()
    hosts[0]["error"] = '=HYPERLINK("http://x","y")'
    hosts[0]["status"] = "failed"
    doc = build_report(fleet_metadata(), hosts)
    text = render(doc, "csv")
    for row in csv.reader(io.StringIO(text)):
        for value in row:
            assert not value.startswith(("=", "+", "-", "@")), value


@pytest.mark.parametrize("fmt", ["sarif", "csv"])
def test_secrets_are_scrubbed_in_sarif_and_csv(fmt: str):
    """Secrets placed where SARIF and CSV copy text from (a finding's message: the host's
    pending changes in an audit) are redacted there as in every other format."""
    password = "wr0ngh0rse"
    hosts = [h for h in fleet_hosts() if h["host"] == "pf-open.corp.example"]
    hosts[0]["after"], hosts[0]["status"] = None, "audit_failed"
    hosts[0]["changes"] = [
        {
            "control": "postfix-relay_domains",
            "target": f"https://ops:{password}@cmdb.corp.example/api",
            "before": {"password": password},
            "after": "",
            "applied": False,
        }
    ]
    doc = build_report(fleet_metadata("audit"), hosts)
    text = render(doc, fmt)
    assert "postfix-relay_domains" in text  # the finding is there ...
    assert "[redacted]" in text  # ... with the secret redacted
    assert password not in text


def test_the_report_directory_holds_sarif_and_csv(fleet_doc: dict[str, Any], tmp_path: Path):
    run_dir = write_report(fleet_doc, tmp_path)
    assert sarif_problems(json.loads((run_dir / "report.sarif").read_text())) == []
    assert (run_dir / "report.csv").read_text().startswith("run_id,host,")
