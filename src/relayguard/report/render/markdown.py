"""Markdown renderer: a summary to paste into a change ticket.

Counts by status and platform, one table row per host, then what failed and why (the
failing controls with their evidence) and the changes made. Untrusted text is escaped for
Markdown and for the HTML that GitLab/GitHub Markdown would otherwise let through; evidence
goes in fenced blocks longer than any backtick run inside them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from relayguard.report.compliance import EXIT_COMPLIANT, EXIT_NONCOMPLIANT
from relayguard.report.controls import host_controls, show_value
from relayguard.report.findings import controls_of_finding, waivers_by_finding
from relayguard.report.text import one_line, visible
from relayguard.vocabulary import FindingResult, HostStatus

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")
_VERDICT_OF_EXIT = {
    EXIT_COMPLIANT: "compliant",
    EXIT_NONCOMPLIANT: "NON-COMPLIANT",
}


def md(text: object) -> str:
    """Inline Markdown for untrusted text: one line, markup characters neutralised."""
    line = one_line(text)
    # Only & and < can start HTML (an entity or a tag) inside a line.
    line = line.replace("&", "&amp;").replace("<", "&lt;")
    return _MD_SPECIAL.sub(r"\\\1", line)


def fenced(text: str) -> str:
    """A fenced code block that no content can close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{visible(text)}\n{fence}"


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    rule = [align[i] if i < len(align) and align[i] == "r" else "-" for i in range(len(header))]
    marks = ["---:" if r == "r" else "---" for r in rule]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _verdict(probe: Mapping[str, Any] | None) -> str:
    if probe is None:
        return "—"
    confirmation = probe.get("confirmation")
    return md(probe["verdict"] + (f" ({confirmation})" if confirmation else ""))


def _patch(patch: Mapping[str, Any]) -> str:
    if patch["required"] is None and patch["compliant"] is None:
        return "n/a"
    mark = {True: "ok", False: "MISSING", None: "unknown"}[patch["compliant"]]
    return md(f"{mark} ({patch['installed'] or '?'} / {patch['required'] or '?'})")


def _changes(changes: list[Mapping[str, Any]]) -> str:
    applied = sum(1 for c in changes if c["applied"])
    return f"{applied}/{len(changes)}" if changes else "0"


def _header(doc: Mapping[str, Any]) -> list[str]:
    run, summary = doc["run"], doc["summary"]
    verdict = _VERDICT_OF_EXIT.get(summary["exit_status"], "INCONCLUSIVE")
    mode = run["mode"] + (" (check mode: nothing applied)" if run.get("check_mode") else "")
    inventory = ", ".join(run["inventory"]) or "—"
    return [
        f"# relayguard report {md(run['run_id'])}",
        "",
        f"**Result: {verdict}** (exit status {summary['exit_status']}) — "
        f"{summary['hosts']} host(s), mode {md(mode)}.",
        "",
        f"- Started {md(run['started'])}, finished {md(run['finished'])}, by {md(run['user'])}",
        f"- Inventory: {md(inventory)}",
        f"- relayguard {md(run['relayguard_version'])}, "
        f"ansible-core {md(run['ansible_version'] or 'not used')}",
        "",
    ]


def _counts(summary: Mapping[str, Any]) -> list[str]:
    statuses = [[md(s.replace("_", " ")), str(n)] for s, n in summary["by_status"].items()]
    platforms = [[md(p), str(n)] for p, n in summary["by_platform"].items() if n]
    return [
        "## Counts",
        "",
        *_table(["Status", "Hosts"], statuses, "lr"),
        "",
        *_table(["Platform", "Hosts"], platforms, "lr"),
        "",
    ]


def _hosts(hosts: list[Mapping[str, Any]]) -> list[str]:
    rows = [
        [
            md(h["host"]),
            md(h["platform"]),
            _verdict(h["before"]),
            _verdict(h["after"]),
            _patch(h["patch"]),
            _changes(h["changes"]),
            f"**{md(h['status'])}**",
        ]
        for h in hosts
    ]
    header = ["Host", "Platform", "Before", "After", "Patch", "Changes", "Status"]
    return ["## Hosts", "", *_table(header, rows), ""]


def _failures(doc: Mapping[str, Any]) -> list[str]:
    lines = ["## What failed and why", ""]
    bad = [
        h for h in doc["hosts"] if h["status"] not in (HostStatus.COMPLIANT, HostStatus.REMEDIATED)
    ]
    if not bad:
        return [*lines, "Nothing failed: every host ended compliant or remediated.", ""]
    for host in bad:
        lines += [f"### {md(host['host'])} — {md(host['status'])}", ""]
        if host.get("error"):
            lines.append(f"- **Why:** {md(host['error'])}")
        evidence: list[str] = []
        waived, ids = waivers_by_finding(host), controls_of_finding(host)
        for control in host_controls(host, doc["run"]["mode"]):
            # The remediation control repeats the host's error, stated above as "Why".
            if control.control == "remediation":
                continue
            if control.control in waived:
                lines.append(f"- {md(control.title)}: **waived** — {md(waived[control.control])}")
            elif control.result in (FindingResult.FAIL, FindingResult.ERROR):
                named = (
                    f" (controls: {md(ids[control.control])})" if ids.get(control.control) else ""
                )
                lines.append(
                    f"- {md(control.title)}: **{control.result}** — {md(control.message)}{named}"
                )
                if control.evidence:
                    evidence.append(control.evidence)
        lines.append("")
        if evidence:
            lines += ["Evidence:", "", fenced("\n\n".join(evidence)), ""]
    return lines


def _change_log(hosts: list[Mapping[str, Any]]) -> list[str]:
    rows = [
        [
            md(h["host"]),
            md(c["control"]),
            md(c["target"]),
            md(show_value(c["before"])),
            md(show_value(c["after"])),
            "yes" if c["applied"] else "**no**",
        ]
        for h in hosts
        for c in h["changes"]
    ]
    if not rows:
        return ["## Changes", "", "No changes were planned.", ""]
    header = ["Host", "Control", "Target", "Before", "After", "Applied"]
    return ["## Changes", "", *_table(header, rows), ""]


def render_markdown(doc: Mapping[str, Any]) -> str:
    """The report as a Markdown change-ticket summary."""
    hosts = list(doc["hosts"])
    parts = [
        *_header(doc),
        *_counts(doc["summary"]),
        *_hosts(hosts),
        *_failures(doc),
        *_change_log(hosts),
    ]
    return "\n".join(parts).rstrip("\n") + "\n"
