"""Findings room: each host's findings as auditors read them, with controls and waivers. Pure.

A host's findings are its evaluated checks (`relayguard.report.controls`: relay-closed,
patch-level, rfc2505-*, ...) plus, in an audit or a --check run, one finding per control the
plan would change (the changes not applied: ``postfix-smtpd_relay_restrictions``,
``exchange-no-anonymous-relay``, ...). Each carries the published controls it evidences
(`control_map`) or says why none applies (`no_control`). A failing finding that a valid
waiver covers becomes ``waived`` with the waiver beside it; it no longer fails the host
(`relayguard.report.compliance.host_compliance`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from relayguard.report.control_map import control_fields
from relayguard.report.controls import describe_change, host_controls
from relayguard.report.text import one_line
from relayguard.report.waivers import Waiver, waiver_for
from relayguard.vocabulary import AuditResult

WAIVED = AuditResult.WAIVED.value
FAIL = AuditResult.FAIL.value


def check_findings(host: Mapping[str, Any], mode: str) -> list[dict[str, Any]]:
    """The evaluated checks of one host, as finding objects."""
    return [
        {
            "id": c.control,
            "title": c.title,
            "result": c.result.value,
            "message": c.message,
        }
        for c in host_controls(host, mode)
    ]


def pending_change_findings(host: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One failing finding per control with changes planned and not applied."""
    by_control: dict[str, list[Mapping[str, Any]]] = {}
    for change in host.get("changes", []):
        if not change["applied"]:
            by_control.setdefault(change["control"], []).append(change)
    return [
        {
            "id": control,
            "title": f"configuration: {control}",
            "result": FAIL,
            "message": one_line(
                f"{len(changes)} change(s) planned, not applied: "
                + "; ".join(describe_change(c) for c in changes)
            ),
        }
        for control, changes in by_control.items()
    ]


_RULE_RESULTS = {"fail": FAIL, "unknown": AuditResult.ERROR.value, "pass": AuditResult.PASS.value}


def rule_findings(host: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One finding per rule of the platform's rule table (the host record's `rules`, in the
    table's order): fail when it fails on any subject, else error when a fact it needs could
    not be read, else pass; the message names the subjects and why."""
    by_rule: dict[str, list[Mapping[str, Any]]] = {}
    for result in host.get("rules") or []:
        by_rule.setdefault(result["id"], []).append(result)
    out = []
    for rule, results in by_rule.items():
        worst = next(
            (r for r in ("fail", "unknown", "pass") if any(x["result"] == r for x in results)),
            "pass",
        )
        shown = [x for x in results if x["result"] == worst]
        out.append(
            {
                "id": rule,
                "title": f"rule {rule} ({shown[0]['source']})",
                "result": _RULE_RESULTS[worst],
                "message": one_line(
                    "; ".join(f"{x['subject']}: {x['reason']}" for x in shown[:5])
                    + (f"; and {len(shown) - 5} more" if len(shown) > 5 else "")
                ),
            }
        )
    return out


def host_findings(
    host: Mapping[str, Any], mode: str, check_mode: bool, waivers: Sequence[Waiver] = ()
) -> list[dict[str, Any]]:
    """Every finding of one host, each with its controls, waived where a waiver applies."""
    found = check_findings(host, mode)
    if mode == "audit" or check_mode:
        # the configuration as read: in an enforce run it is the state before the changes,
        # which the remediation finding accounts for
        found += rule_findings(host)
        found += pending_change_findings(host)
    out = []
    for finding in found:
        finding.update(control_fields(finding["id"]))
        finding["waiver"] = None
        waiver = waiver_for(waivers, host["host"], finding["id"])
        if finding["result"] == FAIL and waiver is not None:
            finding["result"] = WAIVED
            finding["waiver"] = waiver.as_dict()
        out.append(finding)
    return out


def failing(findings: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [f for f in findings if f["result"] == FAIL]


def findings_of(doc: Mapping[str, Any], host: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A report host's findings: as recorded, or (a report written before findings existed)
    computed now from its checks, without waivers."""
    if "findings" in host:
        recorded: list[Mapping[str, Any]] = host["findings"]
        return recorded
    run = doc["run"]
    return list(host_findings(host, run["mode"], bool(run.get("check_mode")), ()))


def waiver_note(waiver: Mapping[str, Any]) -> str:
    """A waiver in one line, as every format states it."""
    return one_line(
        f"waived: {waiver['justification']} (approved by {waiver['approver']}, "
        f"expires {waiver['expires']})"
    )


def waivers_by_finding(host: Mapping[str, Any]) -> dict[str, str]:
    """finding id -> its waiver note, for the host's waived findings."""
    return {
        f["id"]: waiver_note(f["waiver"])
        for f in host.get("findings", [])
        if f["result"] == WAIVED and f.get("waiver")
    }


def controls_of_finding(host: Mapping[str, Any]) -> dict[str, str]:
    """finding id -> its control ids ("EX19-MB-000135, RFC2505-2.1"), for the renderers."""
    return {f["id"]: ", ".join(c["id"] for c in f["controls"]) for f in host.get("findings", [])}
