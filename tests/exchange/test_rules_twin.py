"""Every Exchange 2013+ rule on the twin: the documents the twin's `modern.read_config` prints
for each lab profile, judged by the rule table. The same rules are tested on Microsoft's
captures of a real server in test_capture.py; a rule needs both (docs/exchange.md)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from relayguard.exchange import capture
from relayguard.exchange.analysis import relay_exposure
from relayguard.exchange.facts import facts_from_documents
from relayguard.exchange.rules import MODERN_RULES
from relayguard.lab.exchange import ops_modern, profiles
from relayguard.lab.exchange.state import AcceptedDomain, ExchangeModern, TwinState
from relayguard.vocabulary import Platform, RuleResult, Verdict

TODAY = date(2026, 12, 4)


def twin(profile: str, platform: Platform = Platform.EXCHANGE2019) -> TwinState:
    spec = profiles.TwinSpec(name=profile, server="EX19R", address="127.0.30.9")
    return profiles.build(profile, spec, platform)


def judge(m: ExchangeModern) -> dict[str, Any]:
    detect = {
        "ComputerName": m.ServerName,
        "Exchange55": None,
        "Exchange15": {"SetupKey": {}, "ExSetup": None, "InstalledUpdates": []},
    }
    major, minor, build, private = (int(p) for p in m.SetupVersion.split("."))
    detect["Exchange15"]["SetupKey"] = {
        "MsiProductMajor": major,
        "MsiProductMinor": minor,
        "MsiBuildMajor": build,
        "MsiBuildMinor": private,
    }
    facts = facts_from_documents(
        "twin", detect, capture.config_from_live(ops_modern.read_document(m)), as_of=TODAY
    )
    exposure = relay_exposure(facts)
    results: dict[str, set[RuleResult]] = {}
    for check in exposure.checks:
        results.setdefault(check.id, set()).add(check.result)
    return {"verdict": exposure.verdict, "results": results}


def modern_of(state: TwinState) -> ExchangeModern:
    assert state.modern is not None
    return state.modern


def with_domain(name: str, kind: str) -> ExchangeModern:
    m = modern_of(twin("compliant"))
    m.AcceptedDomains.append(AcceptedDomain(Name=f"d {name}", DomainName=name, DomainType=kind))  # type: ignore[arg-type]
    return m


def with_external_authoritative() -> ExchangeModern:
    m = modern_of(twin("compliant"))
    frontend = profiles.frontend(m)
    frontend.AuthMechanism = [*frontend.AuthMechanism, "ExternalAuthoritative"]
    return m


CASES = [
    # rule, the twin, its expected result, the host verdict
    (
        "anonymous-accept-any-recipient",
        lambda: modern_of(twin("anon-relay")),
        RuleResult.FAIL,
        Verdict.OPEN,
    ),
    (
        "anonymous-accept-any-recipient",
        lambda: modern_of(twin("compliant")),
        RuleResult.PASS,
        Verdict.CLOSED,
    ),
    ("external-authoritative", with_external_authoritative, RuleResult.FAIL, Verdict.OPEN),
    (
        "external-authoritative",
        lambda: modern_of(twin("compliant")),
        RuleResult.PASS,
        Verdict.CLOSED,
    ),
    (
        "accepted-domain-star",
        lambda: modern_of(twin("star-domain", Platform.EXCHANGE2016)),
        RuleResult.FAIL,
        Verdict.OPEN,
    ),
    ("accepted-domain-star", lambda: modern_of(twin("compliant")), RuleResult.PASS, Verdict.CLOSED),
    (
        "accepted-domain-public-wildcard",
        lambda: with_domain("*.com", "InternalRelay"),
        RuleResult.FAIL,
        Verdict.OPEN,
    ),
    (
        "accepted-domain-public-wildcard",
        lambda: with_domain("*.co.uk", "ExternalRelay"),
        RuleResult.FAIL,
        Verdict.OPEN,
    ),
    (
        "accepted-domain-public-wildcard",
        lambda: with_domain("*.com", "Authoritative"),
        RuleResult.PASS,
        Verdict.CLOSED,
    ),
    (
        "accepted-domain-relay",
        lambda: with_domain("*.partner.example", "InternalRelay"),
        RuleResult.FAIL,
        Verdict.CLOSED,
    ),
    (
        "accepted-domain-relay",
        lambda: modern_of(twin("compliant")),
        RuleResult.PASS,
        Verdict.CLOSED,
    ),
    (
        "recipient-validation-off",
        lambda: modern_of(twin("compliant")),
        RuleResult.PASS,
        Verdict.CLOSED,
    ),
    (
        "recipient-validation-off",
        lambda: modern_of(twin("anon-relay")),
        RuleResult.FAIL,
        Verdict.OPEN,
    ),
    (
        "recipient-validation-off",
        lambda: profiles.without_antispam(modern_of(twin("compliant"))),
        RuleResult.FAIL,
        Verdict.CLOSED,
    ),
]


@pytest.mark.parametrize(("rule", "make", "result", "verdict"), CASES)
def test_rule_on_the_twin(rule: str, make: Any, result: RuleResult, verdict: Verdict) -> None:
    judged = judge(make())
    assert result in judged["results"][rule], judged["results"][rule]
    assert judged["verdict"] is verdict


def test_every_rule_is_tested_on_the_twin_both_ways() -> None:
    seen = {(rule, result) for rule, _, result, _ in CASES}
    for rule in MODERN_RULES:
        assert (rule.id, RuleResult.PASS) in seen and (rule.id, RuleResult.FAIL) in seen, rule.id
