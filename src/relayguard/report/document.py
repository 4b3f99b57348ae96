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
from relayguard.report.schema import validate_report
from relayguard.report.scrub import scrub
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
        "status": host["status"],
        "timings": {**EMPTY_TIMINGS, **host.get("timings", {})},
        "error": host.get("error"),
    }


def build_report(metadata: Mapping[str, Any], hosts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The report document for one run; raises `ReportInvalid` if the parts do not fit."""
    entries = [scrub(plain_json(host_entry(h))) for h in hosts]
    doc = {
        "schema": REPORT_SCHEMA,
        "run": scrub(plain_json(dict(metadata))),
        "summary": summarize(entries),
        "hosts": entries,
    }
    validate_report(doc)
    return doc
