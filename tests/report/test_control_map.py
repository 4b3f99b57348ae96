"""Every finding id relayguard can report has a row in the control map (or says it has none),
and every failing finding of a report carries its controls."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import relayguard.exchange.plan
import relayguard.exchange.rules55
import relayguard.probe.judge
from relayguard.exchange.plan_modern import MODERN_FIXES
from relayguard.exchange.rules import MODERN_RULES
from relayguard.lab import module_utils
from relayguard.probe.catalog import CONFORMANCE_CHECKS
from relayguard.report.control_map import CONTROL_MAP, ROWS, UNMAPPED, control_fields
from relayguard.report.controls import host_controls
from report.samples import fleet_hosts

SENDER_FINDINGS = ("own-domain-sender-refused",)  # relayguard.probe.judge (issue 19)
CHECK_IDS = ("relay-closed", "patch-level", "delivery-confirmation", "remediation")


def judge_finding_ids() -> list[str]:
    """The RFC 2505 findings probe.judge makes beside the catalog's checks, read from it."""
    source = Path(relayguard.probe.judge.__file__).read_text(encoding="utf-8")
    ids = re.findall(r'Finding\(\s*"([a-z0-9-]+)"', source)
    assert "refused-in-dialogue" in ids  # the pattern still finds them
    return [i for i in ids if i not in SENDER_FINDINGS]


def exchange55_plan_ids() -> list[str]:
    """The control ids of the Exchange 5.5 plan's changes, read from it."""
    source = Path(relayguard.exchange.plan.__file__).read_text(encoding="utf-8")
    ids = sorted(set(re.findall(r'Change\(\s*"([a-z0-9-]+)"', source)))
    assert "ims-relay-flags" in ids  # the pattern still finds them
    return ids


def mta_rules(plan: str, table: str) -> Any:
    """A target-side rule table, loaded as the modules load it (its dependencies first)."""
    for name in ("relay_backend", "exim_config", "sendmail_facts"):
        module_utils.load(name)
    return getattr(module_utils.load(plan), table)


def mta_role_controls(role: str, plan: str, table: str) -> list[str]:
    """The control ids an MTA role records its changes under, read from its detect tasks:
    each change's rule id (`'control': item.rule`), so the rule table's ids."""
    root = Path(__file__).resolve().parents[2]
    tasks = (root / "roles" / role / "tasks" / "detect.yml").read_text(encoding="utf-8")
    naming = re.findall(r"'control':\s*([^,]+),", tasks)
    assert naming == ["item.rule"], f"{role}: changes recorded under {naming}: update this test"
    return [r.id for r in mta_rules(plan, table)]


def postfix_rules() -> Any:
    """Postfix's rule table (its ids are the host record's `rules`, a finding each)."""
    module_utils.load("command_runner")
    for name in ("relay_backend", "postfix_validate", "postfix_facts", "postfix_change"):
        module_utils.load(name)
    return module_utils.load("postfix_plan").RULES


def exchange55_rule_finding_ids() -> list[str]:
    """Every finding id the 5.5 rule table can give (its rules name them as string literals)."""
    source = Path(relayguard.exchange.rules55.__file__).read_text(encoding="utf-8")
    return sorted(set(re.findall(r'"(ims-[a-z-]+)"', source)))


def known_finding_ids() -> list[str]:
    module_utils.load("command_runner")  # the backend's import of it, outside Ansible
    postfix = module_utils.load("postfix_facts")  # MANAGED_PARAMETERS: main.cf or -o overrides
    return [
        *CHECK_IDS,
        *(r.id for r in MODERN_RULES),
        *exchange55_rule_finding_ids(),
        *(r.id for r in mta_rules("exim_plan", "EXIM_RULES")),
        *(r.id for r in mta_rules("sendmail_plan", "RULES")),
        *(r.id for r in postfix_rules()),
        *(f"rfc2505-{c.id}" for c in CONFORMANCE_CHECKS),
        *(f"rfc2505-{i}" for i in judge_finding_ids()),
        *(f"sender-{s}" for s in SENDER_FINDINGS),
        *(f"postfix-{p}" for p in postfix.MANAGED_PARAMETERS),
        # roles/exim_remediate, roles/sendmail_remediate: a change per rule edit, by rule id
        *mta_role_controls("exim_remediate", "exim_plan", "EXIM_RULES"),
        *mta_role_controls("sendmail_remediate", "sendmail_plan", "RULES"),
        # the remediation plans' change controls: a finding each in an audit
        # roles/exchange_detect/tasks/plan.yml records each as exchange-<control>
        *(f"exchange-{c}" for fix in MODERN_FIXES for c in fix.controls),
        *(f"exchange-{c}" for c in exchange55_plan_ids()),
        "exchange-patch",  # roles/exchange_detect/tasks/plan.yml
    ]


@pytest.mark.parametrize("finding", known_finding_ids())
def test_every_known_finding_id_has_a_row(finding: str):
    row = CONTROL_MAP.get(finding)
    assert row is not None, f"{finding}: add a row to relayguard.report.control_map.ROWS"
    assert row.help
    # a row either names controls, each with its source, or says why there is none
    assert bool(row.controls) != bool(row.no_control)
    for control in row.controls:
        assert control.id and control.framework and control.title
        assert control.source.startswith("docs/sources.md#")


def test_rows_are_unique_and_the_sources_exist_in_docs_sources():
    assert len({r.finding for r in ROWS}) == len(ROWS)
    sources = (Path(__file__).resolve().parents[2] / "docs" / "sources.md").read_text()
    anchors = {c.source.split("#", 1)[1] for r in ROWS for c in r.controls}
    for anchor in anchors:
        assert f"\n### {anchor}\n" in sources, anchor


def test_the_exchange_and_rhel_stig_items_are_mapped():
    relay = {c.id for c in CONTROL_MAP["relay-closed"].controls}
    assert {"EX19-MB-000135", "RHEL-08-040290", "RHEL-09-252050", "RFC2505-2.1"} <= relay
    anonymous = CONTROL_MAP["anonymous-accept-any-recipient"].controls
    assert any("V-259687" in c.framework for c in anonymous)


def test_an_unknown_id_says_explicitly_that_no_control_is_mapped():
    assert control_fields("exim-some-future-rule") == {
        "controls": [],
        "no_control": UNMAPPED,
        "advisory": False,
    }


def test_every_failing_finding_of_a_report_carries_controls_or_says_why_not(
    fleet_doc: dict[str, Any], audit_doc: dict[str, Any]
):
    failing = [
        f
        for doc in (fleet_doc, audit_doc)
        for h in doc["hosts"]
        for f in h["findings"]
        if f["result"] == "fail"
    ]
    assert failing
    for finding in failing:
        assert finding["controls"] or finding["no_control"], finding
    relay = [f for f in failing if f["id"] == "relay-closed"]
    assert relay and all(f["controls"] for f in relay)
    # only the run's own step (remediation, a rollback's restore) is no configuration control
    assert {f["id"] for f in failing if not f["controls"]} <= {"remediation"}


def test_the_findings_are_the_checks_the_other_formats_show(fleet_doc: dict[str, Any]):
    for raw, host in zip(fleet_hosts(), fleet_doc["hosts"], strict=True):
        checks = [c.control for c in host_controls(host, "enforce")]
        assert [f["id"] for f in host["findings"]] == checks, raw["host"]
