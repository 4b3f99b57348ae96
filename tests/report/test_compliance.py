"""Host standing and exit statuses (docs/exit-status.md)."""

from __future__ import annotations

from typing import Any

import pytest

from relayguard.report import exit_status, host_compliance
from relayguard.report.compliance import Compliance
from report.conftest import host


def _host(status: str, verdict: str | None = "closed", compliant: bool | None = True) -> dict:
    probe = None if verdict is None else {"verdict": verdict}
    return {"status": status, "after": probe, "before": None, "patch": {"compliant": compliant}}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (_host("compliant"), Compliance.PASS),
        (_host("remediated"), Compliance.PASS),
        (_host("audit_failed", "open"), Compliance.FAIL),
        (_host("rolled_back", "open"), Compliance.FAIL),
        (_host("failed", "open"), Compliance.FAIL),
        (_host("failed", "closed", compliant=False), Compliance.FAIL),
        (_host("failed", "inconclusive"), Compliance.INCONCLUSIVE),
        (_host("unreachable", None, None), Compliance.INCONCLUSIVE),
    ],
)
def test_host_compliance(record: dict, expected: Compliance):
    assert host_compliance(record) is expected


def test_a_bounce_is_noncompliant_even_without_an_open_verdict():
    record = _host("failed", "inconclusive")
    record["after"]["confirmation"] = "bounced"
    assert host_compliance(record) is Compliance.FAIL


def test_exit_statuses():
    assert exit_status([_host("compliant"), _host("remediated")]) == 0
    assert exit_status([_host("compliant"), _host("unreachable", None)]) == 3
    assert exit_status([_host("audit_failed", "open"), _host("unreachable", None)]) == 2
    assert exit_status([]) == 3  # nothing verified is not a pass


def test_fleet_summary(fleet_doc: dict[str, Any]):
    assert fleet_doc["summary"]["exit_status"] == 2
    assert fleet_doc["summary"]["by_platform"]["postfix"] == 2
    assert host_compliance(host(fleet_doc, "mx-legacy.branch.example")) is Compliance.INCONCLUSIVE
