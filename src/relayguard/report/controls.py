"""Controls room: the checks a report states about each host, in OpenSCAP's vocabulary.

One host yields: `relay-closed`, `patch-level`, one `rfc2505-<id>` per RFC 2505 finding, one
`sender-<id>` per sender-authentication finding (own-domain sender, issue 19),
`delivery-confirmation` when the probe confirmed delivery (issue 11), and `remediation` in
enforce mode. Each is pass / fail / error / notapplicable with a one-line message and the
evidence behind it. JUnit makes them test cases; Markdown and HTML list the failing ones.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relayguard.report.compliance import latest_probe
from relayguard.report.text import one_line, visible
from relayguard.vocabulary import FindingResult, HostStatus, Outcome, Verdict


@dataclass(frozen=True)
class ControlResult:
    """One control evaluated on one host."""

    control: str
    title: str
    result: FindingResult
    message: str
    evidence: str = ""


def describe_test(test: Mapping[str, Any]) -> str:
    """One line of evidence: which envelope, which reply, what it means."""
    label = f"nmap #{test['nmap']}" if test.get("nmap") else test["id"]
    rcpt = f" RCPT TO:{test['rcpt_to']}" if test.get("rcpt_to") else ""
    reply = f"{test['code']} {test.get('reply') or ''}".strip() if test.get("code") else "-"
    return one_line(f"[{test['outcome']}] {label}: MAIL FROM:{test['mail_from']}{rcpt} -> {reply}")


def probe_evidence(probe: Mapping[str, Any], outcomes: frozenset[str] | None = None) -> str:
    """The probe's verdict, where it spoke from, and the tests with the given outcomes
    (all when None); the others are counted, not listed."""
    address = probe.get("address") or "unresolved"
    if ":" in address:  # IPv6: bracketed, as in targets ([::1]:25)
        address = f"[{address}]"
    head = [
        f"target {probe['target']} ({address}:{probe['port']}), "
        f"vantage {probe.get('vantage') or 'default'}",
        f"banner: {probe.get('banner') or '(none)'}",
        f"verdict {probe['verdict']}: {probe['reason']}",
    ]
    shown = [t for t in probe["tests"] if outcomes is None or t["outcome"] in outcomes]
    rest = Counter(t["outcome"] for t in probe["tests"] if t not in shown)
    lines = [one_line(line) for line in head] + [describe_test(t) for t in shown]
    if rest:
        lines.append("other tests: " + ", ".join(f"{n} {o}" for o, n in sorted(rest.items())))
    return "\n".join(lines)


# What makes the point for each verdict: the accepted envelopes, or the unanswered ones.
_DECIDING = {
    Verdict.OPEN: frozenset({Outcome.RELAYED}),
    Verdict.INCONCLUSIVE: frozenset({Outcome.ERROR, Outcome.DEFERRED}),
    Verdict.CLOSED: None,
}


def relay_control(host: Mapping[str, Any]) -> ControlResult:
    title = "relay closed"
    probe = latest_probe(host)
    if probe is None:
        why = host.get("error") or "no probe result"
        return ControlResult("relay-closed", title, FindingResult.ERROR, one_line(why))
    verdict = Verdict(probe["verdict"])
    evidence = probe_evidence(probe, _DECIDING[verdict])
    if verdict is Verdict.CLOSED:
        return ControlResult(
            "relay-closed", title, FindingResult.PASS, one_line(probe["reason"]), evidence
        )
    if verdict is Verdict.INCONCLUSIVE:
        message = one_line(f"inconclusive: {probe['reason']}")
        return ControlResult("relay-closed", title, FindingResult.ERROR, message, evidence)
    relayed = [t for t in probe["tests"] if t["outcome"] == Outcome.RELAYED]
    ids = ", ".join(f"#{t['nmap']}" if t.get("nmap") else str(t["id"]) for t in relayed)
    message = one_line(f"open relay: {probe['reason']}" + (f" (relayed: {ids})" if ids else ""))
    return ControlResult("relay-closed", title, FindingResult.FAIL, message, evidence)


def patch_control(host: Mapping[str, Any]) -> ControlResult:
    patch = host["patch"]
    build = host.get("build") or {}
    evidence = one_line(build.get("explanation") or "")
    required, installed = patch.get("required"), patch.get("installed")
    if patch.get("compliant") is True:
        result, message = FindingResult.PASS, f"installed {installed}, required {required}"
    elif patch.get("compliant") is False:
        result, message = FindingResult.FAIL, f"installed {installed}, required {required} or later"
    elif required is None:
        result, message = FindingResult.NOT_APPLICABLE, "no patch requirement for this platform"
    else:
        result = FindingResult.ERROR
        message = f"installed build unknown ({installed or 'not detected'}), required {required}"
    return ControlResult("patch-level", "patch level", result, one_line(message), evidence)


def finding_controls(host: Mapping[str, Any]) -> list[ControlResult]:
    probe = latest_probe(host)
    return [
        ControlResult(
            f"rfc2505-{f['id']}",
            one_line(f"RFC 2505 {f['section']}: {f['title']}"),
            FindingResult(f["result"]),
            one_line(f.get("detail") or f["title"]),
        )
        for f in (probe or {}).get("rfc2505", [])
    ] + [
        ControlResult(
            f"sender-{f['id']}",
            one_line(f"{f['section']}: {f['title']}"),
            FindingResult(f["result"]),
            one_line(f.get("detail") or f["title"]),
        )
        for f in (probe or {}).get("sender", [])
    ]


_CONFIRMATION = {
    "relayed": (FindingResult.FAIL, "relays: the test message reached the sink"),
    "bounced": (
        FindingResult.FAIL,
        "accepts, then bounces: backscatter hazard (RFC 2505 §1.5/1.6)",
    ),
    "unconfirmed": (FindingResult.ERROR, "accepted at RCPT time; nothing reached the sink"),
}


def confirmation_control(host: Mapping[str, Any]) -> list[ControlResult]:
    probe = latest_probe(host)
    if probe is None or probe.get("confirmation") is None:
        return []
    result, message = _CONFIRMATION[probe["confirmation"]]
    evidence = json.dumps(probe.get("confirmation_evidence"), indent=2, ensure_ascii=False)
    return [
        ControlResult(
            "delivery-confirmation", "delivery confirmation", result, message, visible(evidence)
        )
    ]


def show_value(value: Any) -> str:
    """A change's before/after value: text as is, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def describe_change(change: Mapping[str, Any]) -> str:
    state = "applied" if change["applied"] else "not applied"
    return one_line(
        f"[{state}] {change['control']} on {change['target']}: "
        f"{show_value(change['before'])} -> {show_value(change['after'])}"
    )


def remediation_control(host: Mapping[str, Any]) -> ControlResult:
    status = HostStatus(host["status"])
    applied = [c for c in host["changes"] if c["applied"]]
    evidence = "\n".join(describe_change(c) for c in host["changes"])
    why = one_line(host.get("error") or status.value)
    if status is HostStatus.REMEDIATED:
        result, message = FindingResult.PASS, f"{len(applied)} change(s) applied and verified"
    elif status is HostStatus.COMPLIANT:
        result, message = FindingResult.PASS, "already compliant: nothing to change"
    elif status is HostStatus.UNREACHABLE:
        result, message = FindingResult.ERROR, f"unreachable: {why}"
    elif status is HostStatus.ROLLED_BACK:
        result, message = FindingResult.FAIL, f"rolled back: {why}"
    else:
        result, message = FindingResult.FAIL, f"{status.value}: {why}"
    return ControlResult("remediation", "remediation", result, message, evidence)


def host_controls(host: Mapping[str, Any], mode: str) -> list[ControlResult]:
    """Every control of one host, in a stable order."""
    controls = [relay_control(host), patch_control(host)]
    controls += confirmation_control(host)
    controls += finding_controls(host)
    if mode == "enforce":
        controls.append(remediation_control(host))
    return controls
