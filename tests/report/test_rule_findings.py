"""The report iterates the platform's rule table: each rule result the host record carries
(`rules`, from `exchange.rules` via the facts room) becomes one finding in an audit, with the
rule's controls from the control map; a failing rule can be waived by its id."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest

from relayguard.exchange.analysis import relay_exposure
from relayguard.exchange.capture import documents_from_capture, load_capture
from relayguard.exchange.facts import facts_from_documents
from relayguard.exchange.rules import MODERN_RULES
from relayguard.report.findings import host_findings, rule_findings
from relayguard.report.waivers import parse_waivers

TODAY = datetime.date(2026, 12, 4)


def e19_rules() -> list[dict[str, Any]]:
    """The rule table's results on Microsoft's capture of a real Exchange 2019 server."""
    detect, config, _ = documents_from_capture(load_capture("tests/exchange/captures/E19"))
    facts = facts_from_documents("e19", detect, config, as_of=TODAY)
    return [f.to_dict() for f in relay_exposure(facts).checks]


def host(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "host": "e19",
        "platform": "exchange2019",
        "build": None,
        "patch": {},
        "before": None,
        "after": None,
        "changes": [],
        "rules": rules,
        "status": "audit_failed",
        "timings": {"started": None, "finished": None},
        "error": None,
    }


def test_every_rule_of_the_table_is_a_finding_of_the_audit() -> None:
    found = {f["id"]: f for f in rule_findings(host(e19_rules()))}
    assert set(found) == {rule.id for rule in MODERN_RULES}
    wildcard = found["accepted-domain-public-wildcard"]
    assert wildcard["result"] == "fail" and "*.com" in wildcard["message"]
    assert found["accepted-domain-star"]["result"] == "pass"
    # the capture has no TransportAgent file: the rule could not be judged
    assert found["recipient-validation-off"]["result"] == "error"


def test_rule_findings_carry_their_controls_and_are_audit_only() -> None:
    audited = {f["id"]: f for f in host_findings(host(e19_rules()), "audit", False)}
    wildcard = audited["accepted-domain-public-wildcard"]
    assert wildcard["controls"] or wildcard["no_control"]
    enforced = {f["id"] for f in host_findings(host(e19_rules()), "enforce", False)}
    assert not enforced & {rule.id for rule in MODERN_RULES}


def test_a_failing_rule_is_waived_by_its_id() -> None:
    waivers, errors = parse_waivers(
        [
            {
                "host": "e19",
                "finding": "accepted-domain-public-wildcard",
                "justification": "partner routing until the migration ends",
                "approver": "mail-team",
                "expires": "2099-01-01",
            }
        ],
        today=TODAY,
    )
    assert not errors
    audited = {f["id"]: f for f in host_findings(host(e19_rules()), "audit", False, waivers)}
    assert audited["accepted-domain-public-wildcard"]["result"] == "waived"


@pytest.mark.parametrize("results", [["pass", "fail"], ["unknown", "pass"], ["pass", "pass"]])
def test_the_worst_subject_decides(results: list[str]) -> None:
    rules = [
        {"id": "r", "result": r, "subject": f"s{i}", "reason": r, "source": "src"}
        for i, r in enumerate(results)
    ]
    (finding,) = rule_findings(host(copy.deepcopy(rules)))
    expected = "fail" if "fail" in results else "error" if "unknown" in results else "pass"
    assert finding["result"] == expected
