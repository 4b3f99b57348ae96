"""HTML renderer: one self-contained page for people — fleet at a glance, then each host.

A view model (pure Python) is rendered by a Jinja2 template with autoescape on; every
string also passes through text.visible (control characters spelled out). CSS and JS are
inlined, and a Content-Security-Policy meta tag allows exactly those two blocks (by
SHA-256) and nothing else: no fetch, image, font or frame can leave the page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from relayguard.report.compliance import host_compliance, latest_probe
from relayguard.report.controls import ControlResult, host_controls
from relayguard.report.findings import findings_of
from relayguard.report.text import visible
from relayguard.vocabulary import HostStatus

# Worst first: the order the fleet table sorts statuses in.
STATUS_ORDER = (
    HostStatus.FAILED,
    HostStatus.ROLLED_BACK,
    HostStatus.AUDIT_FAILED,
    HostStatus.UNREACHABLE,
    HostStatus.REMEDIATED,
    HostStatus.COMPLIANT,
)
_EXIT_TEXT = {0: "Compliant", 2: "Non-compliant", 3: "Inconclusive"}


def _finalize(value: object) -> object:
    if isinstance(value, Markup):
        return value
    return "" if value is None else visible(value)


@cache  # one environment a process: it keeps its compiled templates
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("relayguard.report.render", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["label"] = lambda s: str(s).replace("_", " ")
    # Plain text JSON (autoescape then escapes it for HTML), unlike Jinja's script-safe tojson.
    env.filters["json"] = lambda v, indent=None: json.dumps(v, indent=indent, ensure_ascii=False)
    return env


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def _paired(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, key: str
) -> list[dict[str, Any]]:
    """Rows of a before/after matrix: items of both probes matched by id, in probe order."""
    rows: dict[str, dict[str, Any]] = {}
    for side, probe in (("before", before), ("after", after)):
        for item in (probe or {}).get(key, []):
            row = rows.setdefault(
                str(item["id"]), {"id": item["id"], "before": None, "after": None}
            )
            row["item"] = item
            row[side] = item
    return list(rows.values())


def _exercises(test: Mapping[str, Any]) -> str:
    value = test.get("exercises")
    return ", ".join(value) if isinstance(value, list) else str(value or "")


def host_view(index: int, host: Mapping[str, Any], doc: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the template shows about one host."""
    controls: list[ControlResult] = host_controls(host, doc["run"]["mode"])
    before, after = host.get("before"), host.get("after")
    tests = _paired(before, after, "tests")
    for row in tests:
        row["exercises"] = _exercises(row["item"])
    return {
        "anchor": f"host-{index}",
        "host": host,
        "compliance": host_compliance(host).value,
        "sort_status": STATUS_ORDER.index(HostStatus(host["status"])),
        "controls": controls,
        "problems": [c for c in controls if c.result in ("fail", "error")],
        "tests": tests,
        "findings": _paired(before, after, "rfc2505"),
        "latest": latest_probe(host),
        "probes": [(name, p) for name, p in (("before", before), ("after", after)) if p],
        "applied": sum(1 for c in host["changes"] if c["applied"]),
        # the failing and waived findings, with their controls (issue 20)
        "audit": [f for f in findings_of(doc, host) if f["result"] in ("fail", "waived")],
    }


def page_view(doc: Mapping[str, Any], drift: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything the template shows: run, counts, hosts, and the drift since the previous
    run (relayguard.report.drift) when there is one."""
    summary = doc["summary"]
    hosts = [host_view(i, h, doc) for i, h in enumerate(doc["hosts"], start=1)]
    return {
        "run": doc["run"],
        "summary": summary,
        "verdict": _EXIT_TEXT[summary["exit_status"]],
        "statuses": [(s.value, summary["by_status"][s.value]) for s in STATUS_ORDER],
        "platforms": [(p, n) for p, n in summary["by_platform"].items() if n],
        "hosts": hosts,
        "drift": drift,
    }


def render_html(doc: Mapping[str, Any], drift: Mapping[str, Any] | None = None) -> str:
    """The report as one self-contained HTML page; with `drift`, the change since the
    previous run."""
    env = _environment()
    css = env.get_template("report.css.j2").render()
    js = env.get_template("report.js.j2").render()
    csp = (
        f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    # Our own packaged CSS and JS, never data: safe to embed unescaped.
    style, script = Markup(css), Markup(js)  # noqa: S704
    return env.get_template("report.html.j2").render(
        page=page_view(doc, drift), css=style, js=script, csp=csp
    )
