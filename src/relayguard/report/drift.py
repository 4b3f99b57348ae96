"""Drift room: what changed between two reports, per host and finding. Pure.

`diff_reports(old, new)` compares the findings (relayguard.report.findings) of two
relayguard.report/1 documents. A finding is failing when its result is ``fail`` (a waived
finding does not fail; one whose waiver lapsed fails again). Per finding: ``fixed``
(failing, now not), ``regressed`` (not failing, now failing; also a finding new to a
known host that fails), ``still_failing``. Per host: ``new_host``, ``gone``, or the worst of
its deciding findings (regressed > still_failing > fixed > unchanged). Advisory findings
(control_map: reported beside the verdict, e.g. RFC 2505 conformance) are listed with their
drift and ``advisory: true`` and counted in ``summary.advisory_regressed``, but decide neither
a host's drift nor the exit status of ``relayguard report diff``: 0 nothing regressed, 2
something did (docs/exit-status.md).

`baseline(doc)` is an enforce run's report seen before its changes (its ``before`` probe,
its plan not applied), so the drift from the state an enforce run found to an audit after
it can be stated: ``relayguard report diff --baseline ENFORCE AUDIT``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from relayguard.report.control_map import controls_of
from relayguard.report.document import build_report
from relayguard.report.findings import FAIL, findings_of

EXIT_NO_REGRESSION = 0
EXIT_REGRESSED = 2


class Drift(StrEnum):
    FIXED = "fixed"
    REGRESSED = "regressed"
    STILL_FAILING = "still_failing"
    NEW_HOST = "new_host"
    GONE = "gone"
    UNCHANGED = "unchanged"


_WORST_FIRST = (Drift.REGRESSED, Drift.STILL_FAILING, Drift.FIXED, Drift.UNCHANGED)


def _results(doc: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """host -> finding id -> result."""
    return {
        h["host"]: {str(f["id"]): str(f["result"]) for f in findings_of(doc, h)}
        for h in doc["hosts"]
    }


def finding_drift(old: str | None, new: str | None) -> Drift:
    was, now = old == FAIL, new == FAIL
    if was and now:
        return Drift.STILL_FAILING
    if was:
        return Drift.FIXED
    if now:
        return Drift.REGRESSED
    return Drift.UNCHANGED


def host_drift(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, Any]:
    """The changed findings of a host present in both reports, and the host's drift."""
    changed = []
    for finding in list(old) + [f for f in new if f not in old]:
        drift = finding_drift(old.get(finding), new.get(finding))
        if drift is not Drift.UNCHANGED:
            changed.append(
                {
                    "id": finding,
                    "drift": drift.value,
                    "old": old.get(finding),
                    "new": new.get(finding),
                    "advisory": controls_of(finding).advisory,
                }
            )
    kinds = {c["drift"] for c in changed if not c["advisory"]}
    worst = next((d for d in _WORST_FIRST if d.value in kinds), Drift.UNCHANGED)
    return {"drift": worst.value, "findings": changed}


def _one_side(results: Mapping[str, str], drift: Drift, side: str) -> dict[str, Any]:
    failing = [f for f, r in results.items() if r == FAIL]
    return {
        "drift": drift.value,
        "findings": [
            {
                "id": f,
                "drift": drift.value,
                "old": None,
                "new": None,
                side: FAIL,
                "advisory": controls_of(f).advisory,
            }
            for f in failing
        ],
    }


def diff_reports(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Per host (in the new report's order, then the gone ones) and finding: what changed."""
    before, after = _results(old), _results(new)
    hosts: list[dict[str, Any]] = []
    for name, results in after.items():
        if name in before:
            entry = host_drift(before[name], results)
        else:
            entry = _one_side(results, Drift.NEW_HOST, "new")
        hosts.append({"host": name, **entry})
    hosts += [
        {"host": name, **_one_side(results, Drift.GONE, "old")}
        for name, results in before.items()
        if name not in after
    ]
    counts = {d.value: sum(1 for h in hosts if h["drift"] == d.value) for d in Drift}
    regressed = counts[Drift.REGRESSED.value] > 0
    counts["advisory_regressed"] = sum(
        1
        for h in hosts
        for f in h["findings"]
        if f["advisory"] and f["drift"] == Drift.REGRESSED.value
    )
    return {
        "old": old["run"]["run_id"],
        "new": new["run"]["run_id"],
        "hosts": hosts,
        "summary": counts,
        "regressed": regressed,
        "exit_status": EXIT_REGRESSED if regressed else EXIT_NO_REGRESSION,
    }


def baseline(doc: Mapping[str, Any]) -> dict[str, Any]:
    """An enforce report as its run found the fleet: the ``before`` probe of each host and
    its plan pending, findings recomputed as an audit of that state (no waivers)."""
    hosts: list[dict[str, Any]] = []
    for host in doc["hosts"]:
        base = {k: v for k, v in host.items() if k != "findings"}
        base["after"] = None
        base["changes"] = [{**c, "applied": False} for c in host["changes"]]
        hosts.append(base)
    run = {k: v for k, v in doc["run"].items() if k != "waivers"}
    return build_report({**run, "mode": "audit"}, hosts)


def drift_lines(diff: Mapping[str, Any]) -> Sequence[str]:
    """The drift as text, one line per host that changed, then the counts."""
    lines = [f"drift {diff['old']} -> {diff['new']}"]
    for host in diff["hosts"]:
        if host["drift"] == Drift.UNCHANGED and not host["findings"]:
            continue
        ids = (
            ", ".join(
                f"{f['id']} ({f['drift']}{', advisory' if f['advisory'] else ''})"
                for f in host["findings"]
            )
            or "-"
        )
        lines.append(f"{host['drift']:<14} {host['host']}: {ids}")
    counts = ", ".join(f"{n} {d}" for d, n in diff["summary"].items() if n)
    lines.append(f"hosts: {counts or 'none'}; regressed: {'yes' if diff['regressed'] else 'no'}")
    return lines
