"""Builder room: assemble a relayguard.report/1 document from run metadata and host records.

`build_report` is pure: it fills the optional parts of each host with their empty values,
turns enums and tuples into plain JSON, redacts secrets, computes the summary, and
validates the result against report-1.json (raising `ReportInvalid`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from relayguard.report.compliance import summarize
from relayguard.report.findings import WAIVED, host_findings
from relayguard.report.schema import validate_report
from relayguard.report.scrub import scrub
from relayguard.report.waivers import Waiver
from relayguard.vocabulary import REPORT_SCHEMA

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
EMPTY_PATCH: Mapping[str, Any] = {"required": None, "installed": None, "compliant": None}
EMPTY_TIMINGS: Mapping[str, Any] = {"started": None, "finished": None, "duration_s": None}


def plain_json(value: Any) -> Any:
    """`value` as plain JSON types: str subclasses (enums) to str, tuples to lists,
    undecodable characters (lone surrogates) to U+FFFD."""
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", str(value))
    return value


def host_entry(host: Mapping[str, Any]) -> dict[str, Any]:
    """One host object with every optional part present (empty when not given)."""
    return {
        "host": host["host"],
        "platform": host.get("platform", "unknown"),
        "build": host.get("build"),
        "patch": {**EMPTY_PATCH, **host.get("patch", {})},
        "before": host.get("before"),
        "after": host.get("after"),
        "changes": list(host.get("changes", [])),
        "rules": list(host.get("rules") or []),
        "status": host["status"],
        "timings": {**EMPTY_TIMINGS, **host.get("timings", {})},
        "error": host.get("error"),
    }


def with_findings(
    entry: Mapping[str, Any], mode: str, check_mode: bool, waivers: Sequence[Waiver]
) -> dict[str, Any]:
    """A host entry with its findings (re)computed, secrets scrubbed: the entry first, so a
    finding's message never quotes a secret its key would have named (a change's
    ``{"password": ...}`` shown as text), then the findings."""
    base = scrub({k: v for k, v in entry.items() if k != "findings"})
    found = host_findings(base, mode, check_mode, waivers)
    # scrub is idempotent: the entry is clean already, only the findings are new
    return {**base, "findings": scrub(found)}


def waiver_summary(hosts: Sequence[Mapping[str, Any]], errors: Sequence[str]) -> dict[str, Any]:
    waived = sum(1 for h in hosts for f in h.get("findings", []) if f["result"] == WAIVED)
    return {"applied": waived, "errors": [str(e) for e in errors]}


def build_report(
    metadata: Mapping[str, Any],
    hosts: Sequence[Mapping[str, Any]],
    waivers: Sequence[Waiver] = (),
    waiver_errors: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The report document for one run; raises `ReportInvalid` if the parts do not fit.

    `waivers` waive the failing findings they name; `waiver_errors` (the entries of the
    waiver file that were expired or malformed) are recorded in ``run.waivers``. Without a
    waiver file (`waiver_errors` None) the run has no ``waivers`` object."""
    mode = str(metadata.get("mode", "enforce"))
    check_mode = bool(metadata.get("check_mode", False))
    entries = [with_findings(plain_json(host_entry(h)), mode, check_mode, waivers) for h in hosts]
    run = scrub(plain_json(dict(metadata)))
    if waiver_errors is not None or waivers:
        run["waivers"] = waiver_summary(entries, waiver_errors or ())
    doc = {
        "schema": REPORT_SCHEMA,
        "run": run,
        "summary": summarize(entries),
        "hosts": entries,
    }
    validate_report(doc)
    return doc


def apply_waivers(
    doc: Mapping[str, Any], waivers: Sequence[Waiver], waiver_errors: Sequence[str]
) -> dict[str, Any]:
    """`doc` (a valid report) with its findings recomputed under `waivers`: the waivers of a
    file given later (``relayguard report --waivers``) replace any the run had."""
    run = {k: v for k, v in doc["run"].items() if k != "waivers"}
    hosts = [{k: v for k, v in h.items() if k != "findings"} for h in doc["hosts"]]
    return build_report(run, hosts, waivers, waiver_errors)
