"""Issue 20 on the lab, through the playbook: an audit's SARIF validates against the SARIF
2.1.0 schema and every failing finding names its controls; a future waiver is honoured (the
host is not failed) and an expired one is not (named, its finding counts); and `relayguard
report diff --baseline` from the enforce run to the audit after it lists every host that was
failing (a deciding finding: advisory RFC 2505 conformance is beside the verdict) as fixed and
none regressed. Addresses: 127.0.39.0/24 (free inside the lab's range
127.0.30-58; this room's reserved 127.0.150.0/24 is outside what `relayguard lab up` accepts)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, FormatChecker

from playbook.fleet import BIN, Fleet, lab_fleet

FLEET = "exchange2019/anon-relay:1,exchange2016/star-domain:1,exchange2019/compliant:1,postfix:1"
SCHEMA = json.loads(
    (
        Path(__file__).resolve().parents[1] / "report" / "sarif" / "sarif-schema-2.1.0.json"
    ).read_text(encoding="utf-8")
)
FUTURE, PAST = "2999-12-31", "2001-01-01"


def failing(doc: dict[str, Any]) -> dict[str, list[str]]:
    return {
        h["host"]: [f["id"] for f in h["findings"] if f["result"] == "fail"] for h in doc["hosts"]
    }


def waiver(host: str, finding: str, expires: str) -> dict[str, str]:
    return {
        "host": host,
        "finding": finding,
        "justification": f"lab test exception for {finding}",
        "approver": "auditor@lab.example",
        "expires": expires,
    }


def latest_run(fleet: Fleet) -> Path:
    return (fleet.reports / "latest").resolve()


def diff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "relayguard"), "report", "diff", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_audit_controls_waivers_and_drift_on_the_lab() -> None:
    with lab_fleet(FLEET, "127.0.39.1") as fleet:
        # 1. An audit: SARIF validates, every failing finding names a control.
        audit = fleet.playbook(extra={"relay_mode": "audit"})
        assert audit.returncode != 0, audit.explain()
        report = fleet.report()
        sarif = json.loads((latest_run(fleet) / "report.sarif").read_text(encoding="utf-8"))
        problems = list(Draft4Validator(SCHEMA, format_checker=FormatChecker()).iter_errors(sarif))
        assert problems == [], problems[:3]
        found = failing(report)
        deciding = {
            h["host"]
            for h in report["hosts"]
            if any(f["result"] == "fail" and not f["advisory"] for f in h["findings"])
        }
        open_hosts = [h for h, ids in found.items() if h in deciding]
        assert len(open_hosts) >= 2, found
        for host in report["hosts"]:
            for f in host["findings"]:
                if f["result"] == "fail":
                    assert f["controls"], (host["host"], f)
        results = {
            (r["locations"][0]["logicalLocations"][0]["name"], r["ruleId"])
            for r in sarif["runs"][0]["results"]
        }
        assert results == {(h, i) for h, ids in found.items() for i in ids}

        # 2. Waivers: every failing finding of one host waived until far ahead; the other's
        #    relay-closed waiver expired (named, and that host still fails).
        waived_host, lapsed_host = open_hosts[0], open_hosts[1]
        entries = [waiver(waived_host, f, FUTURE) for f in found[waived_host]]
        entries += [
            waiver(lapsed_host, f, PAST if f == "relay-closed" else FUTURE)
            for f in found[lapsed_host]
        ]
        assert "relay-closed" in found[lapsed_host]
        waivers = fleet.directory / "waivers.yml"
        waivers.write_text(json.dumps({"waivers": entries}), encoding="utf-8")
        waived = fleet.playbook(extra={"relay_mode": "audit", "relay_waivers": str(waivers)})
        assert waived.recap[waived_host]["failed"] == 0, waived.explain()
        assert waived.recap[lapsed_host]["failed"] == 1, waived.explain()
        assert f"({lapsed_host}/relay-closed): expired on {PAST}" in waived.output
        report = fleet.report()
        hosts = {h["host"]: h for h in report["hosts"]}
        results_of = {f["id"]: f["result"] for f in hosts[waived_host]["findings"]}
        assert {i: results_of[i] for i in found[waived_host]} == dict.fromkeys(
            found[waived_host], "waived"
        )
        lapsed = {f["id"]: f["result"] for f in hosts[lapsed_host]["findings"]}
        assert lapsed["relay-closed"] == "fail"
        assert report["run"]["waivers"]["errors"] == [
            f"waiver #{len(found[waived_host]) + found[lapsed_host].index('relay-closed') + 1} "
            f"({lapsed_host}/relay-closed): expired on {PAST}"
        ]

        # 2b. Batches: an enforce run outside its change window (nothing changes, every host
        #     needing a change ends audit_failed) in batches of 1 then the rest, with every
        #     failing finding waived: the first batch, which does not end the run, honours the
        #     waivers without writing a report (one report for the run), no host fails and the
        #     second batch runs.
        everything = fleet.directory / "waivers-all.yml"
        everything.write_text(
            # (in enforce mode a host that was not changed also fails its `remediation`)
            json.dumps(
                {
                    "waivers": [
                        waiver(h, f, FUTURE)
                        for h, ids in found.items()
                        for f in [*ids, "remediation"]
                    ]
                }
            ),
            encoding="utf-8",
        )
        runs_before = {p.name for p in fleet.reports.iterdir() if p.name != "latest"}
        later = datetime.now(UTC) + timedelta(hours=2)
        batched = fleet.playbook(
            extra={
                "relay_serial": [1, "100%"],
                "relay_max_fail_percentage": 0,
                "relay_waivers": str(everything),
                "relay_change_window_start": later.strftime("%H:00"),
                "relay_change_window_end": (later + timedelta(hours=1)).strftime("%H:00"),
            }
        )
        assert batched.returncode == 0, batched.explain()
        statuses = {h["host"]: h["status"] for h in fleet.report()["hosts"]}
        assert set(statuses) == set(found), statuses  # both batches ran
        assert "audit_failed" in statuses.values(), statuses
        assert all(batched.recap[h]["failed"] == 0 for h in found), batched.explain()
        # the first batch evaluated the waivers without writing: one report for the run
        runs = {p.name for p in fleet.reports.iterdir() if p.name != "latest"} - runs_before
        assert len(runs) == 1, runs
        assert "Waived in this batch" in batched.output, batched.explain()

        # 3. Enforce, then the audit after it: every failing host fixed, none regressed.
        enforce = fleet.playbook()
        assert enforce.returncode == 0, enforce.explain()
        enforce_dir = latest_run(fleet)
        after = fleet.playbook(extra={"relay_mode": "audit"})
        assert after.returncode == 0, after.explain()
        audit_dir = latest_run(fleet)
        drift = diff("--baseline", "--json", str(enforce_dir), str(audit_dir))
        assert drift.returncode == 0, drift.stdout + drift.stderr
        result = json.loads(drift.stdout)
        by_host = {h["host"]: h["drift"] for h in result["hosts"]}
        assert {h: by_host[h] for h in open_hosts} == dict.fromkeys(open_hosts, "fixed"), result
        assert result["summary"]["regressed"] == 0 and result["regressed"] is False
        assert "regressed" not in by_host.values()
        page = (audit_dir / "report.html").read_text(encoding="utf-8")
        assert "Change since the previous run" in page
