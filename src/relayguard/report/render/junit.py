"""JUnit XML renderer: the fleet as test results for Jenkins, GitLab and other CI.

One <testsuite> per host (name = host), one <testcase> per control (controls.py): relay
closed, patch level, delivery confirmation, each RFC 2505 finding, remediation. fail is a
<failure>, error (inconclusive) an <error>, notapplicable <skipped/> (a waived finding too,
its waiver as the message); the evidence goes in the failure text or <system-out>. Built
with ElementTree, so markup in banners is escaped; characters XML 1.0 cannot carry are
spelled out first (text.visible).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from relayguard.report.compliance import latest_probe
from relayguard.report.controls import ControlResult, host_controls
from relayguard.report.findings import waivers_by_finding
from relayguard.report.text import visible
from relayguard.vocabulary import FindingResult

_CHILD = {
    FindingResult.FAIL: ("failure", "noncompliant"),
    FindingResult.ERROR: ("error", "inconclusive"),
}


def _el(parent: ET.Element, tag: str, text: str | None = None, /, **attrs: object) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: visible(v) for k, v in attrs.items()})
    if text:
        element.text = visible(text)
    return element


def _testcase(suite: ET.Element, host: str, control: ControlResult, seconds: float) -> None:
    case = _el(suite, "testcase", name=control.title, classname=host, time=f"{seconds:.3f}")
    if control.result in _CHILD:
        tag, kind = _CHILD[control.result]
        _el(case, tag, control.evidence or control.message, message=control.message, type=kind)
    elif control.result is FindingResult.NOT_APPLICABLE:
        _el(case, "skipped", message=control.message)
    elif control.evidence:
        _el(case, "system-out", f"{control.message}\n{control.evidence}")


def _counts(controls: list[ControlResult]) -> dict[str, int]:
    results = [c.result for c in controls]
    return {
        "tests": len(results),
        "failures": results.count(FindingResult.FAIL),
        "errors": results.count(FindingResult.ERROR),
        "skipped": results.count(FindingResult.NOT_APPLICABLE),
    }


def _waived(host: Mapping[str, Any], controls: list[ControlResult]) -> list[ControlResult]:
    """A waived finding (issue 20) is a skipped test case that says whose waiver it is."""
    notes = waivers_by_finding(host)
    return [
        replace(c, result=FindingResult.NOT_APPLICABLE, message=notes[c.control])
        if c.control in notes
        else c
        for c in controls
    ]


def _suite(root: ET.Element, host: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, int]:
    controls = _waived(host, host_controls(host, run["mode"]))
    counts = _counts(controls)
    duration = float(host["timings"].get("duration_s") or 0.0)
    suite = _el(
        root,
        "testsuite",
        name=host["host"],
        hostname=host["host"],
        timestamp=host["timings"].get("started") or run["started"],
        time=f"{duration:.3f}",
        **counts,
    )
    props = _el(suite, "properties")
    before, after = host.get("before"), host.get("after")
    for name, value in (
        ("platform", host["platform"]),
        ("status", host["status"]),
        ("verdict.before", before["verdict"] if before else "not probed"),
        ("verdict.after", after["verdict"] if after else "not probed"),
        ("mode", run["mode"]),
        ("run_id", run["run_id"]),
    ):
        _el(props, "property", name=name, value=value)
    probe = latest_probe(host)
    probe_seconds = float(probe.get("duration_s") or 0.0) if probe else 0.0
    for control in controls:
        seconds = probe_seconds if control.control == "relay-closed" else 0.0
        _testcase(suite, host["host"], control, seconds)
    if host.get("error"):
        _el(suite, "system-err", host["error"])
    return counts


def render_junit(doc: Mapping[str, Any]) -> str:
    """The report as a JUnit XML document (UTF-8 text with an XML declaration)."""
    run = doc["run"]
    root = ET.Element("testsuites")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for host in doc["hosts"]:
        for key, value in _suite(root, host, run).items():
            totals[key] += value
    duration = sum(float(h["timings"].get("duration_s") or 0.0) for h in doc["hosts"])
    root.attrib.update(
        {"name": visible(f"relayguard {run['mode']} {run['run_id']}"), "time": f"{duration:.3f}"}
    )
    root.attrib.update({k: str(v) for k, v in totals.items()})
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'
