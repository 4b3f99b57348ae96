"""SARIF 2.1.0 renderer: the report as code-scanning pipelines read it (OASIS SARIF 2.1.0,
docs/sources.md#sarif).

One run; `tool.driver.rules` has one rule per finding id in the report, with its title,
help text (what passing means, the controls it evidences or why none applies) and source.
One result per failing host and finding (level ``error``; ``warning`` for an advisory one,
reported beside the verdict), and per waived one with an
accepted external suppression carrying the waiver's justification. The host is the
location: a logical location (kind ``resource``) and an artifact URI ``hosts/<host>`` for
consumers that require a physical location. `partialFingerprints` keep a finding's identity
across runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from relayguard.report.control_map import controls_of
from relayguard.report.findings import FAIL, WAIVED, findings_of
from relayguard.report.text import one_line

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
FINGERPRINT = "relayguard/host-finding/v1"


def rule_help(finding: Mapping[str, Any]) -> str:
    """The help text of a finding id: what passing means, then its controls."""
    row = controls_of(finding["id"])
    lines = [row.help or finding["title"]]
    lines += [
        f"{c['id']} ({c['framework']}): {c['title']} [{c['source']}]" for c in finding["controls"]
    ]
    if finding.get("no_control"):
        lines.append(f"No control: {finding['no_control']}")
    return "\n".join(one_line(line) for line in lines)


def sarif_rule(finding: Mapping[str, Any]) -> dict[str, Any]:
    controls = [c["id"] for c in finding["controls"]]
    sources = sorted({c["source"] for c in finding["controls"]}) or [
        "relayguard.report.control_map"
    ]
    return {
        "id": finding["id"],
        "name": finding["id"],
        "shortDescription": {"text": one_line(finding["title"]) or finding["id"]},
        "help": {"text": rule_help(finding)},
        "properties": {
            "controls": controls,
            "no_control": finding.get("no_control"),
            "source": sources,
            "tags": controls,
        },
    }


def host_location(host: str) -> dict[str, Any]:
    return {
        "physicalLocation": {"artifactLocation": {"uri": f"hosts/{quote(host, safe='')}"}},
        "logicalLocations": [{"name": host, "fullyQualifiedName": host, "kind": "resource"}],
    }


def sarif_result(host: str, finding: Mapping[str, Any], rule_index: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": finding["id"],
        "ruleIndex": rule_index,
        "kind": "fail",
        "level": "warning" if finding.get("advisory") else "error",
        "message": {"text": one_line(f"{host}: {finding['message']}")},
        "locations": [host_location(host)],
        "partialFingerprints": {FINGERPRINT: f"{host}/{finding['id']}"},
        "properties": {"controls": [c["id"] for c in finding["controls"]]},
    }
    waiver = finding.get("waiver")
    if finding["result"] == WAIVED and waiver:
        result["suppressions"] = [
            {
                "kind": "external",
                "status": "accepted",
                "justification": one_line(
                    f"{waiver['justification']} (approved by {waiver['approver']}, "
                    f"expires {waiver['expires']})"
                ),
            }
        ]
    return result


def sarif_log(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The SARIF log object of a report document."""
    rules: dict[str, dict[str, Any]] = {}
    failing: list[tuple[str, Mapping[str, Any]]] = []
    for host in doc["hosts"]:
        for finding in findings_of(doc, host):
            rules.setdefault(finding["id"], sarif_rule(finding))
            if finding["result"] in (FAIL, WAIVED):
                failing.append((host["host"], finding))
    index = {rule_id: i for i, rule_id in enumerate(rules)}
    run = doc["run"]
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "relayguard",
                        "version": run["relayguard_version"],
                        "rules": list(rules.values()),
                    }
                },
                "automationDetails": {"id": f"relayguard/{run['mode']}/{run['run_id']}"},
                "invocations": [
                    {
                        "executionSuccessful": True,
                        "exitCode": doc["summary"]["exit_status"],
                        "startTimeUtc": run["started"],
                        "endTimeUtc": run["finished"],
                    }
                ],
                "results": [sarif_result(h, f, index[f["id"]]) for h, f in failing],
            }
        ],
    }


def render_sarif(doc: Mapping[str, Any]) -> str:
    """The report as a SARIF 2.1.0 log, indented JSON text."""
    return json.dumps(sarif_log(doc), indent=2, ensure_ascii=False) + "\n"
