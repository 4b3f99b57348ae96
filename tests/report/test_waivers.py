"""Waivers: a valid one waives the failing finding it names and the host stops failing; an
expired or malformed one is an error naming the entry and its finding counts again; a pattern
never silences a relay the probe observed."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from relayguard.report import build_report
from relayguard.report.compliance import EXIT_COMPLIANT, EXIT_NONCOMPLIANT
from relayguard.report.waivers import WaiverFileError, load_waivers, parse_waivers
from report.samples import fleet_hosts, fleet_metadata

TODAY = date(2025, 3, 1)
HOST = "pf-open.corp.example"


def entry(**fields: Any) -> dict[str, Any]:
    base = {
        "host": HOST,
        "finding": "relay-closed",
        "justification": "scanner relay until the 2025-Q2 cut-over (CHG-1234)",
        "approver": "ciso@corp.example",
        "expires": "2025-06-30",
    }
    return {**base, **fields}


def audit(waivers: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    parsed, errors = parse_waivers(waivers, TODAY)
    hosts = [h for h in fleet_hosts() if h["host"] == HOST]
    hosts[0].update(after=None, changes=[], status="audit_failed")
    return build_report(fleet_metadata("audit"), hosts, parsed, errors), errors


def finding(doc: dict[str, Any], fid: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in doc["hosts"][0]["findings"] if f["id"] == fid)
    return found


def test_without_waiver_the_open_relay_fails_the_audit():
    doc, _ = audit([])
    assert finding(doc, "relay-closed")["result"] == "fail"
    assert doc["summary"]["exit_status"] == EXIT_NONCOMPLIANT
    assert doc["run"]["waivers"] == {"applied": 0, "errors": []}


# What the probe saw on this host: each must be waived by name (no pattern silences them).
OBSERVED = (
    "relay-closed",
    "delivery-confirmation",
    "rfc2505-refused-in-dialogue",
    "rfc2505-routing-forms-stripped",
)


def test_a_future_waiver_is_honoured_with_its_justification():
    doc, errors = audit([entry(finding=f) for f in OBSERVED])
    assert errors == []
    assert {f["id"] for f in doc["hosts"][0]["findings"] if f["result"] == "waived"} == set(
        OBSERVED
    )
    relay = finding(doc, "relay-closed")
    assert relay["result"] == "waived"
    assert relay["waiver"]["justification"].startswith("scanner relay")
    assert relay["waiver"]["approver"] == "ciso@corp.example"
    assert relay["controls"]  # still says which controls it is an exception to
    assert doc["summary"]["exit_status"] == EXIT_COMPLIANT
    assert doc["run"]["waivers"]["applied"] == len(OBSERVED)


def test_waiving_one_observed_relay_finding_leaves_the_others_failing():
    doc, _ = audit([entry()])
    assert finding(doc, "relay-closed")["result"] == "waived"
    assert finding(doc, "delivery-confirmation")["result"] == "fail"
    assert doc["summary"]["exit_status"] == EXIT_NONCOMPLIANT


def test_an_expired_waiver_is_an_error_naming_it_and_the_finding_counts_again():
    doc, errors = audit([entry(expires="2025-02-28")])
    assert errors == [f"waiver #1 ({HOST}/relay-closed): expired on 2025-02-28"]
    assert finding(doc, "relay-closed")["result"] == "fail"
    assert doc["summary"]["exit_status"] == EXIT_NONCOMPLIANT
    assert doc["run"]["waivers"]["errors"] == errors


def test_a_waiver_expiring_today_still_applies():
    doc, errors = audit([entry(expires=TODAY.isoformat())])
    assert (errors, finding(doc, "relay-closed")["result"]) == ([], "waived")


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"justification": ""}, "justification must be a non-empty string"),
        ({"expires": "30/06/2025"}, "expires '30/06/2025' is not a date YYYY-MM-DD"),
        ({"expires": "2025-13-01"}, "expires '2025-13-01' is not a date YYYY-MM-DD"),
        ({"approver": None}, "approver must be a non-empty string"),
        ({"reason": "x"}, "has unknown field(s) reason"),
    ],
)
def test_a_malformed_waiver_is_an_error_naming_it(bad: dict[str, Any], problem: str):
    doc, errors = audit([entry(finding="rfc2505-vrfy-controlled"), entry(**bad)])
    assert errors == [f"waiver #2 ({HOST}/relay-closed): {problem}"]
    assert finding(doc, "relay-closed")["result"] == "fail"


def test_a_waiver_lacking_fields_names_them():
    _, errors = parse_waivers([{"host": HOST}, "not a mapping"], TODAY)
    assert errors == [
        f"waiver #1 ({HOST}/?): lacks finding, justification, approver, expires",
        "waiver #2: is not a mapping of host, finding, justification, approver, expires",
    ]


def test_a_pattern_never_silences_an_observed_relay_but_waives_other_findings():
    doc, errors = audit([entry(host="pf-*", finding="*")])
    assert errors == []
    assert finding(doc, "relay-closed")["result"] == "fail"  # only an exact waiver
    assert doc["summary"]["exit_status"] == EXIT_NONCOMPLIANT
    for fid in OBSERVED:
        assert finding(doc, fid)["result"] == "fail", fid


def test_a_waiver_for_another_host_does_not_apply():
    doc, _ = audit([entry(host="mx9.corp.example")])
    assert finding(doc, "relay-closed")["result"] == "fail"


def test_load_waivers_reads_yaml_and_names_an_unreadable_file(tmp_path: Path):
    path = tmp_path / "waivers.yml"
    path.write_text(
        "waivers:\n"
        f"  - host: {HOST}\n    finding: relay-closed\n    justification: cut-over\n"
        "    approver: ciso\n    expires: 2025-06-30\n"
        f"  - host: {HOST}\n    finding: patch-level\n    justification: old\n"
        "    approver: ciso\n    expires: 2024-01-01\n",
        encoding="utf-8",
    )
    waivers, errors = load_waivers(path, TODAY)
    assert [w.finding for w in waivers] == ["relay-closed"]
    assert errors == [f"waiver #2 ({HOST}/patch-level): expired on 2024-01-01"]
    with pytest.raises(WaiverFileError, match=r"cannot read waiver file .*missing\.yml"):
        load_waivers(tmp_path / "missing.yml", TODAY)
    path.write_text("host: [unclosed\n", encoding="utf-8")
    with pytest.raises(WaiverFileError, match="is not YAML"):
        load_waivers(path, TODAY)
    path.write_text("waivers: 3\n", encoding="utf-8")
    with pytest.raises(WaiverFileError, match="a list of entries"):
        load_waivers(path, TODAY)


def test_cli_waivers_recompute_the_findings_and_name_an_expired_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from relayguard.cli import main
    from relayguard.report import write_report

    doc, _ = audit([])
    run_dir = write_report(doc, tmp_path / "reports")
    far = "2999-12-31"  # a waiver valid whenever this test runs
    lines = ["waivers:"]
    for fid in OBSERVED:
        lines += [
            f"  - host: {HOST}",
            f"    finding: {fid}",
            "    justification: scanner relay until cut-over",
            "    approver: ciso@corp.example",
            f"    expires: {far}",
        ]
    waivers = tmp_path / "waivers.yml"
    waivers.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["report", str(run_dir), "--check", "-o", str(tmp_path / "r.md")]) == 2
    status = main(["report", str(run_dir), "--waivers", str(waivers), "--check", "--format", "csv"])
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    assert ",relay-closed," in out and ",waived," in out
    expired = waivers.read_text().replace(far, "2001-01-01", 1)
    waivers.write_text(expired, encoding="utf-8")
    status = main(
        ["report", str(run_dir), "--waivers", str(waivers), "--check", "--format", "json"]
    )
    out, err = capsys.readouterr()
    assert status == 2
    assert f"waiver #1 ({HOST}/relay-closed): expired on 2001-01-01" in err
    assert json.loads(out)["run"]["waivers"]["errors"] == [
        f"waiver #1 ({HOST}/relay-closed): expired on 2001-01-01"
    ]
    assert main(["report", str(run_dir), "--waivers", str(tmp_path / "none.yml")]) == 1


def test_every_format_states_the_waiver():
    from relayguard.report import render

    doc, _ = audit([entry(finding=f) for f in OBSERVED])
    junit = render(doc, "junit")
    assert 'failures="0"' in junit
    assert '<skipped message="waived: scanner relay until the 2025-Q2 cut-over' in junit
    markdown = render(doc, "markdown")
    assert "relay closed: **waived** — waived: scanner relay" in markdown
    html = render(doc, "html")
    assert "scanner relay until the 2025-Q2 cut-over (CHG-1234) (approved by" in html
    assert ",waived," in render(doc, "csv")
