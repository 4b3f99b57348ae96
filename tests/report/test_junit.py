"""JUnit output, read back with a JUnit parser: one suite per host, the right failures."""

from __future__ import annotations

import copy
from typing import Any

from junitparser import Error, Failure, JUnitXml, Skipped, TestCase

from relayguard.report import build_report
from relayguard.report.render import render_junit
from report.samples import fleet_hosts, fleet_metadata


def _suites(doc: dict[str, Any]) -> tuple[JUnitXml, dict[str, dict[str, TestCase]]]:
    xml = JUnitXml.fromstring(render_junit(doc))
    return xml, {suite.name: {case.name: case for case in suite} for suite in xml}


def _kind(case: TestCase) -> str:
    kinds = [type(r) for r in case.result]
    assert len(kinds) <= 1, "a JUnit test case carries at most one result element"
    return {Failure: "failure", Error: "error", Skipped: "skipped"}[kinds[0]] if kinds else "pass"


def test_one_suite_per_host_one_case_per_control(fleet_doc: dict[str, Any]):
    xml, suites = _suites(fleet_doc)
    assert list(suites) == [h["host"] for h in fleet_doc["hosts"]]
    for cases in suites.values():
        assert {"relay closed", "patch level", "remediation"} <= set(cases)
    assert len(suites["ex2019.corp.example"]) == 7  # relay, patch, 4 RFC 2505, remediation
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (52, 7, 2, 3)
    for suite in xml:
        results = [_kind(c) for c in suite]
        assert suite.tests == len(results)
        assert suite.failures == results.count("failure")
        assert suite.errors == results.count("error")
        assert suite.skipped == results.count("skipped")


def test_failures_are_where_the_fleet_is_wrong(fleet_doc: dict[str, Any]):
    _, suites = _suites(fleet_doc)
    failing = {
        (host, name)
        for host, cases in suites.items()
        for name, case in cases.items()
        if _kind(case) == "failure"
    }
    rfc_dialogue = (
        "RFC 2505 1.5, 1.6: Relaying is refused inside the SMTP dialogue (at RCPT), "
        "not accepted and bounced later"
    )
    rfc_routing = (
        "RFC 2505 2.1: Encapsulated and source-routed addresses (%, !, @a:, IMCEA) are not relayed"
    )
    assert failing == {
        ("ex2016-rb.corp.example", "relay closed"),
        ("ex2016-rb.corp.example", rfc_dialogue),
        ("ex2016-rb.corp.example", "remediation"),
        ("exse-fail.corp.example", "relay closed"),
        ("exse-fail.corp.example", rfc_dialogue),
        ("exse-fail.corp.example", rfc_routing),
        ("exse-fail.corp.example", "remediation"),
    }
    relay = suites["exse-fail.corp.example"]["relay closed"]
    (failure,) = relay.result
    assert failure.message.startswith("open relay: 16/16 relay tests accepted")
    assert failure.type == "noncompliant"
    assert "[relayed] nmap #5: MAIL FROM:<antispam@[192.0.2.17]>" in failure.text
    remediation = suites["ex2016-rb.corp.example"]["remediation"].result[0]
    assert remediation.message.startswith("rolled back: legitimate-flow check failed")


def test_inconclusive_is_an_error_and_not_applicable_is_skipped(fleet_doc: dict[str, Any]):
    _, suites = _suites(fleet_doc)
    dark = suites["mx-legacy.branch.example"]
    assert _kind(dark["relay closed"]) == "error"
    assert dark["relay closed"].result[0].type == "inconclusive"
    assert _kind(dark["remediation"]) == "error"
    assert _kind(suites["pf-ok.corp.example"]["patch level"]) == "skipped"
    assert _kind(suites["ex55-sp2.corp.example"]["patch level"]) == "pass"


def test_properties_and_evidence_survive(fleet_doc: dict[str, Any]):
    xml, suites = _suites(fleet_doc)
    suite = next(s for s in xml if s.name == "ex55-sp2.corp.example")
    props = {p.name: p.value for p in suite.properties()}
    assert props == {
        "platform": "exchange55",
        "status": "remediated",
        "verdict.before": "open",
        "verdict.after": "closed",
        "mode": "enforce",
        "run_id": "20250301T120000Z-3f9a0c",
    }
    hostile = suites["pf-ok.corp.example"]["relay closed"].system_out
    # Markup arrives as text; control characters arrive spelled out, never raw.
    assert "<script>alert('banner')</script>" in hostile
    assert "\\x1b[31mred" in hostile and "\\x00nul" in hostile and "\x1b" not in hostile


def test_confirmation_becomes_a_test_case():
    hosts = fleet_hosts()
    pf_open = next(h for h in hosts if h["host"] == "pf-open.corp.example")
    pf_open["after"] = copy.deepcopy(pf_open["before"])  # still relays, confirmed
    pf_open["status"], pf_open["error"] = "failed", "verification: still open"
    _, suites = _suites(build_report(fleet_metadata(), hosts))
    case = suites["pf-open.corp.example"]["delivery confirmation"]
    assert _kind(case) == "failure"
    assert case.result[0].message == "relays: the test message reached the sink"
    assert "relayguard relay test 20250301T120000Z-3f9a0c" in case.result[0].text


def test_control_characters_anywhere_still_parse():
    hosts = fleet_hosts()
    hosts[6]["error"] = "WinRM said \x00\x07\x1b[0m <![CDATA[ ]]> & \ud800 bye"
    hosts[6]["host"] = "exse\x0bfail"
    _, suites = _suites(build_report(fleet_metadata(), hosts))
    (failure,) = suites["exse\\x0bfail"]["remediation"].result
    assert failure.message == "failed: WinRM said \\x00\\x07\\x1b[0m <![CDATA[ ]]> & \ufffd bye"
