"""The Exchange 5.5 IMS rule table on hand-built facts: KB Q193922 list semantics, the
Routing tab of KB Q169683 / Q259531, and "Do not reroute" (KB Q255695, Q237927)."""

from __future__ import annotations

import dataclasses

import pytest

from relayguard.exchange.facts import Exchange55Relay, RoutingEntry
from relayguard.exchange.rules55 import (
    RULES_55,
    in_ims_list,
    parse_net_mask,
    routing_domain_matches,
    run_exchange55_rules,
)
from relayguard.vocabulary import RuleResult

PATH = "HKLM\\SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC\\Parameters"


def relay(**changes: object) -> Exchange55Relay:
    base = Exchange55Relay(
        parameters_path=PATH,
        relay_flags=2 | 8,
        relay_allow_list=("192.0.2.0;255.255.255.0",),
        relay_deny_list=(),
        relay_local_ip_list=(),
        routing_source="lab",
        reroute_incoming=True,
        routing_list=(RoutingEntry("corp.example", "Inbound", ""),),
        service=None,
        imc_file_version="5.5.2650.21",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def failing(r: Exchange55Relay) -> dict[str, bool]:
    findings, _ = run_exchange55_rules(r, 16)
    return {f.id: f.opens_relay for f in findings if f.result is RuleResult.FAIL}


@pytest.mark.parametrize(
    ("entry", "address", "matches"),
    [
        ("192.0.2.0;255.255.255.0", "192.0.2.77", True),
        ("192.0.2.0;255.255.255.0", "192.0.3.1", False),
        # no ";mask": mask 255.255.255.255, this host only (KB Q193922)
        ("192.0.2.7", "192.0.2.7", True),
        ("192.0.2.7", "192.0.2.8", False),
        # a net with host bits set matches nothing: (IP AND mask) == net never holds
        ("192.0.2.7;255.255.255.0", "192.0.2.7", False),
        ("192.0.2.7;255.255.255.0", "192.0.2.0", False),
        ("10.0.0.0;255.0.0.0", "10.200.3.4", True),
        ("not-an-address;255.0.0.0", "10.0.0.1", False),
    ],
)
def test_ims_list_semantics(entry: str, address: str, matches: bool) -> None:
    assert in_ims_list(address, [entry]) is matches


def test_entry_counts_no_addresses_when_host_bits_are_set() -> None:
    wide = parse_net_mask("10.0.0.1;255.0.0.0")
    assert wide is not None and wide.addresses == 0
    host = parse_net_mask("10.0.0.1")
    assert host is not None and host.addresses == 1


def test_a_wide_allow_line_with_host_bits_opens_nothing() -> None:
    """The old parser widened 10.0.0.1;255.0.0.0 to 10.0.0.0/8 (strict=False): too wide and
    open. The IMS matches no client with it; the finding says so and does not open."""
    found = failing(relay(relay_allow_list=("10.0.0.1;255.0.0.0",)))
    assert found == {"ims-allow-entry-matches-nothing": False}
    assert failing(relay(relay_allow_list=("10.0.0.0;255.0.0.0",))) == {
        "ims-allow-list-too-wide": True
    }
    assert failing(relay(relay_allow_list=("192.0.2.9",))) == {}


@pytest.mark.parametrize(
    ("pattern", "domain", "matches"),
    [
        ("corp.example", "corp.example", True),
        ("corp.example", "mail.corp.example", True),  # subdomains by default
        ("corp.example", "CORP.EXAMPLE.", True),
        ("corp.example", "evilcorp.example", False),
        ("#corp.example", "corp.example", True),  # "#" matches exactly
        ("#corp.example", "mail.corp.example", False),
    ],
)
def test_routing_domains(pattern: str, domain: str, matches: bool) -> None:
    assert routing_domain_matches(pattern, domain) is matches


def test_only_always_relay_entries_relay_for_anyone() -> None:
    plain = RoutingEntry("partner.example", "Reroute", "mx.partner.example")
    always = dataclasses.replace(plain, domain="#branch.example", always_relay=True)
    assert failing(relay(routing_list=(plain,))) == {}
    findings, _ = run_exchange55_rules(relay(routing_list=(plain, always)), 16)
    fails = [f for f in findings if f.result is RuleResult.FAIL]
    assert [(f.id, f.opens_relay) for f in fails] == [("ims-routing-always-relay", False)]
    assert "branch.example only" in fails[0].reason


@pytest.mark.parametrize(
    ("flags", "opened"),
    [
        (None, {"ims-no-routing-restrictions": True}),
        (0, {"ims-no-routing-restrictions": True}),
        (1, {"ims-deny-list-only": True}),
        (8, {}),
    ],
)
def test_restriction_flags(flags: int | None, opened: dict[str, bool]) -> None:
    assert failing(relay(relay_flags=flags)) == opened


def test_do_not_reroute_and_unknown_routing_tab() -> None:
    assert failing(relay(reroute_incoming=False)) == {"ims-do-not-reroute": True}
    findings, unknowns = run_exchange55_rules(
        relay(reroute_incoming=None, routing_list=None, routing_source="unknown"), 16
    )
    assert [f.id for f in findings if f.result is RuleResult.UNKNOWN] == ["ims-routing-tab"]
    assert len(unknowns) == 1 and "source: unknown" in unknowns[0]


def test_every_rule_cites_a_kb() -> None:
    for rule in RULES_55:
        assert "KB Q" in rule.source, rule.id
