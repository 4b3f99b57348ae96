"""Decision room: is a host (and so the run) compliant, non-compliant or inconclusive?

Pure functions over report host objects. The same answer feeds the report's summary, the
exit status of `relayguard report --check` and of `relayguard probe --report` (see
docs/exit-status.md), the JUnit failures and the colours of the HTML page.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from relayguard.vocabulary import HostStatus, Platform, Verdict

EXIT_COMPLIANT = 0
EXIT_NONCOMPLIANT = 2
EXIT_INCONCLUSIVE = 3


class Compliance(StrEnum):
    """A host's standing at the end of a run."""

    PASS = "pass"  # noqa: S105 (a compliance result, not a password)
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


# Issue 11: both "relays" and "accepts, then bounces" are hazards (RFC 2505 §1.5/1.6).
NONCOMPLIANT_CONFIRMATIONS = frozenset({"relayed", "bounced"})
# Finding results (relayguard.report.findings) that decide whether waivers clear a host.
WAIVED, FAILED = "waived", "fail"


def latest_probe(host: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The most recent probe result of a host: `after` when verified, else `before`."""
    probe: Mapping[str, Any] | None = host.get("after") or host.get("before")
    return probe


def shows_noncompliance(host: Mapping[str, Any]) -> bool:
    """True when the evidence itself says the host is not compliant."""
    probe = latest_probe(host)
    if probe is not None and (
        probe.get("verdict") == Verdict.OPEN
        or probe.get("confirmation") in NONCOMPLIANT_CONFIRMATIONS
    ):
        return True
    return host.get("patch", {}).get("compliant") is False


def host_compliance(host: Mapping[str, Any]) -> Compliance:
    """compliant/remediated pass; audit_failed/rolled_back fail; unreachable is inconclusive;
    failed fails when the evidence shows an open relay or a missing patch, else inconclusive.
    A failing host whose every failing finding is waived passes (issue 20)."""
    standing = status_compliance(host)
    if standing is Compliance.FAIL and all_waived(host):
        return Compliance.PASS
    return standing


def all_waived(host: Mapping[str, Any]) -> bool:
    """True when the host's findings (issue 20) fail only where a waiver covers them (advisory
    findings, reported beside the verdict, do not count)."""
    deciding = [f for f in host.get("findings", []) if not f.get("advisory")]
    results = {f["result"] for f in deciding}
    return WAIVED in results and FAILED not in results


def waived_hosts(hosts: Sequence[Mapping[str, Any]]) -> list[str]:
    """The hosts that pass only because waivers cover every failing finding."""
    return [h["host"] for h in hosts if status_compliance(h) is Compliance.FAIL and all_waived(h)]


def status_compliance(host: Mapping[str, Any]) -> Compliance:
    """The standing the host's status and evidence give, before waivers."""
    status = HostStatus(host["status"])
    if status in (HostStatus.COMPLIANT, HostStatus.REMEDIATED):
        return Compliance.PASS
    if status in (HostStatus.AUDIT_FAILED, HostStatus.ROLLED_BACK):
        return Compliance.FAIL
    if status is HostStatus.FAILED and shows_noncompliance(host):
        return Compliance.FAIL
    return Compliance.INCONCLUSIVE


def exit_status(hosts: Sequence[Mapping[str, Any]]) -> int:
    """2 if any host fails, else 3 if any is inconclusive or there are none, else 0."""
    standings = {host_compliance(h) for h in hosts}
    if Compliance.FAIL in standings:
        return EXIT_NONCOMPLIANT
    if Compliance.INCONCLUSIVE in standings or not hosts:
        return EXIT_INCONCLUSIVE
    return EXIT_COMPLIANT


def summarize(hosts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The report's `summary`: counts by status and platform (every value listed) and exit."""
    statuses = Counter(h["status"] for h in hosts)
    platforms = Counter(h["platform"] for h in hosts)
    return {
        "hosts": len(hosts),
        "by_status": {s.value: statuses[s.value] for s in HostStatus},
        "by_platform": {p.value: platforms[p.value] for p in Platform},
        "exit_status": exit_status(hosts),
    }
