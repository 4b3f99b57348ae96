"""Probe-only reports: turn one relayguard.probe/1 document into a relayguard.report/1 document.

Used by `relayguard probe --report DIR`. With nothing but a probe, each host's status is
decided from what the probe saw (docs/report.md, "Reports from a probe alone"):

- closed                      -> compliant
- open, or a confirmed relay or bounce (issue 11) -> audit_failed  (exit 2)
- inconclusive, no greeting   -> unreachable  (never spoke SMTP; exit 3)
- inconclusive after greeting -> failed       (spoke SMTP, no verdict; exit 3)

The probe result is the host's `before` (the state observed); `after` is null, `patch` and
`build` are unknown, `changes` is empty. The platform comes from the caller's map, else a
conservative guess from the banner, else `unknown`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from relayguard.report.compliance import NONCOMPLIANT_CONFIRMATIONS
from relayguard.report.document import build_report
from relayguard.report.schema import validate_probe
from relayguard.vocabulary import HostStatus, Platform, Verdict

_POSTFIX = re.compile(r"\bpostfix\b", re.IGNORECASE)
_MS_VERSION = re.compile(r"Microsoft.*\bVersion:?\s*(\d+)\.(\d+)\.(\d+)", re.IGNORECASE)
# First Exchange Server Subscription Edition build (docs/sources.md#healthchecker-build-detection).
_SE_FIRST_BUILD = 2562


def platform_from_banner(banner: str | None) -> Platform:
    """A guess from the greeting alone (`unknown` unless it names Postfix or an Exchange
    version); the playbook's detection replaces it with facts."""
    if not banner:
        return Platform.UNKNOWN
    if _POSTFIX.search(banner):
        return Platform.POSTFIX
    version = _MS_VERSION.search(banner)
    if not version:
        return Platform.UNKNOWN
    major, minor, build = (int(part) for part in version.groups())
    if (major, minor) == (5, 5):
        return Platform.EXCHANGE55
    if major == 15:
        if minor == 2:
            return Platform.EXCHANGESE if build >= _SE_FIRST_BUILD else Platform.EXCHANGE2019
        return {0: Platform.EXCHANGE2013, 1: Platform.EXCHANGE2016}.get(minor, Platform.UNKNOWN)
    return Platform.UNKNOWN


def status_from_probe(probe_host: Mapping[str, Any]) -> HostStatus:
    """The host status a probe result alone supports (see the module docstring)."""
    verdict = Verdict(probe_host["verdict"])
    if verdict is Verdict.OPEN or probe_host.get("confirmation") in NONCOMPLIANT_CONFIRMATIONS:
        return HostStatus.AUDIT_FAILED
    if verdict is Verdict.CLOSED:
        return HostStatus.COMPLIANT
    # The probe writes "" (or null) when no 220 greeting ever arrived.
    return HostStatus.FAILED if probe_host.get("banner") else HostStatus.UNREACHABLE


def host_from_probe(
    probe_host: Mapping[str, Any], platforms: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One report host object built from one probe/1 host object."""
    status = status_from_probe(probe_host)
    target = str(probe_host["target"])
    platform = (platforms or {}).get(target) or platform_from_banner(probe_host.get("banner"))
    return {
        "host": target,
        "platform": platform,
        "before": dict(probe_host),
        "after": None,
        "status": status,
        "timings": {"duration_s": probe_host.get("duration_s")},
        "error": None if status is HostStatus.COMPLIANT else probe_host.get("reason") or None,
    }


def report_from_probe(
    probe_doc: Mapping[str, Any],
    metadata: Mapping[str, Any],
    platforms: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A mode "probe" report of a probe/1 document; `metadata` is the run object (its mode and
    probe_options are taken from the probe). Raises `ReportInvalid` on a bad document."""
    validate_probe(probe_doc)
    run = {**metadata, "mode": "probe", "probe_options": probe_doc["options"]}
    hosts = [host_from_probe(h, platforms) for h in probe_doc["hosts"]]
    seen: dict[str, int] = {}
    for host in hosts:  # the same target given twice stays two hosts, told apart
        seen[host["host"]] = seen.get(host["host"], 0) + 1
        if seen[host["host"]] > 1:
            host["host"] = f"{host['host']} #{seen[host['host']]}"
    return build_report(run, hosts)
