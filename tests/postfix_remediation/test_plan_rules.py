"""The Postfix rule table, one rule at a time (pure: facts in, changes out; no Postfix).

Each rule has the shared shape of relay_backend.Rule (id, check, fix, source); these tests
hold each rule's check and fix to the behaviour issue 18 asks for: lookup tables read and
named, master.cf overrides fixed where they are, legitimate paths never dropped silently.
"""

from __future__ import annotations

import dataclasses

import pytest

from postfix_remediation.backend import backend
from postfix_remediation.test_plan import desired, make_facts
from relayguard.lab import module_utils

relay_backend = module_utils.load("relay_backend")
CIDR = "cidr:/etc/postfix/trusted.cidr"
RELAY_TABLE = "hash:/etc/postfix/relay_domains"


def with_tables(facts: object, **fields: object) -> object:
    return dataclasses.replace(facts, **fields)  # type: ignore[call-overload]


def rule(rule_id: str) -> object:
    return next(r for r in backend.RULES if r.id == rule_id)


def table(name: str, *keys: str) -> object:
    return backend.TableContents(name, tuple((k, "OK") for k in keys))


def test_every_rule_has_the_shared_shape_and_a_source() -> None:
    ids = [r.id for r in backend.RULES]
    assert ids == [
        "postfix-mynetworks",
        "postfix-relay-restrictions",
        "postfix-recipient-restrictions",
        "postfix-untrusted-routing",
        "postfix-domains",
        "postfix-master-overrides",
    ]
    compliant = make_facts()
    for each in backend.RULES:
        assert isinstance(each, relay_backend.Rule)
        assert each.source and callable(each.check) and callable(each.fix)
        assert each.check(compliant, desired()) is None, each.id
        assert list(each.fix(compliant, desired())) == [], each.id


def test_mynetworks_rule_names_the_table_entries_it_drops() -> None:
    facts = with_tables(
        make_facts(mynetworks=CIDR),
        tables={CIDR: table(CIDR, "127.0.0.0/8", "10.20.0.0/16", "0.0.0.0/0")},
    )
    want = desired(relay_allowed_networks=["127.0.0.0/8"])
    problem = rule("postfix-mynetworks").check(facts, want)  # type: ignore[attr-defined]
    assert problem is not None and CIDR in problem
    (change,) = backend.plan_relay(facts, want).changes
    assert change.removes == ("10.20.0.0/16",)
    assert "entries: 127.0.0.0/8, 10.20.0.0/16, 0.0.0.0/0" in change.reason
    assert "closes 0.0.0.0/0" in change.reason
    assert change.after == "127.0.0.0/8"


def test_mynetworks_table_with_exactly_the_wanted_networks_stays() -> None:
    facts = with_tables(make_facts(mynetworks=CIDR), tables={CIDR: table(CIDR, "127.0.0.0/8")})
    assert not backend.plan_relay(facts, desired(relay_allowed_networks=["127.0.0.0/8"])).changed


def test_mynetworks_subnet_of_a_wanted_network_is_not_a_removal() -> None:
    facts = make_facts(mynetworks="127.0.0.1/32, 192.0.2.0/25")
    plan = backend.plan_relay(
        facts, desired(relay_allowed_networks=["127.0.0.0/8", "192.0.2.0/24"])
    )
    assert plan.removals() == ()
    assert plan.settings() == {"mynetworks": "127.0.0.0/8, 192.0.2.0/24"}


def test_mynetworks_unmanaged_warns_about_a_wide_table_entry() -> None:
    facts = with_tables(make_facts(mynetworks=CIDR), tables={CIDR: table(CIDR, "0.0.0.0/0")})
    plan = backend.plan_relay(facts, desired())
    assert not plan.changed
    assert any("mynetworks trusts 0.0.0.0/0" in w for w in plan.warnings)


@pytest.mark.parametrize(
    ("authenticated", "after"),
    [
        ("keep", "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"),
        (True, "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"),
        (False, "permit_mynetworks, reject_unauth_destination"),
    ],
)
def test_relay_restrictions_rule_keeps_sasl_unless_told(authenticated: object, after: str) -> None:
    facts = make_facts(
        smtpd_relay_restrictions="permit_sasl_authenticated, permit_mx_backup, permit_mynetworks, "
        "reject_unauth_destination"
    )
    plan = backend.plan_relay(
        facts, desired(relay_authenticated=authenticated, relay_refusal="permanent")
    )
    assert plan.settings()["smtpd_relay_restrictions"] == after
    assert plan.removals() == ("main.cf smtpd_relay_restrictions: permit_mx_backup",)


def test_relay_restrictions_rule_without_sasl_does_not_add_it_by_default() -> None:
    facts = make_facts(smtpd_relay_restrictions="permit_mynetworks, reject_unauth_destination")
    assert not backend.plan_relay(facts, desired()).changed
    added = backend.plan_relay(facts, desired(relay_authenticated=True))
    assert "permit_sasl_authenticated" in added.settings()["smtpd_relay_restrictions"]


def test_routing_rule() -> None:
    plan = backend.plan_relay(make_facts(allow_untrusted_routing="yes"), desired())
    assert plan.settings() == {"allow_untrusted_routing": "no"}
    assert plan.changes[0].rule == "postfix-untrusted-routing"


def test_domains_rule_keeps_partners_and_names_what_it_prunes() -> None:
    facts = make_facts(relay_domains="example.org, partner.example, old.example")
    plan = backend.plan_relay(
        facts, desired(inbound_domains=["example.org"], relay_partner_domains=["partner.example"])
    )
    assert plan.settings() == {"relay_domains": "example.org, partner.example"}
    assert plan.removals() == ("main.cf relay_domains: old.example",)
    assert "# removes: main.cf relay_domains: old.example\n" in plan.diff("main.cf")["after"]


def test_domains_rule_adds_a_missing_partner_to_relay_domains_only() -> None:
    facts = make_facts(mydestination="$myhostname, localhost, example.org")
    plan = backend.plan_relay(
        facts, desired(inbound_domains=["example.org"], relay_partner_domains=["partner.example"])
    )
    assert plan.settings() == {"relay_domains": "partner.example"}
    unmanaged = backend.plan_relay(facts, desired(relay_partner_domains=["partner.example"]))
    assert unmanaged.settings() == {"relay_domains": "partner.example"}
    assert unmanaged.removals() == ()


def test_domains_rule_reads_a_relay_domains_table_and_names_its_extra_entries() -> None:
    facts = with_tables(
        make_facts(relay_domains=RELAY_TABLE),
        tables={RELAY_TABLE: table(RELAY_TABLE, "example.org", "backup.example")},
        table_hits={RELAY_TABLE: frozenset({"example.org"})},
    )
    plan = backend.plan_relay(facts, desired(inbound_domains=["example.org"]))
    assert not plan.changed  # a table is never edited
    assert any("beyond them: backup.example" in w for w in plan.warnings)


def override(name: str, value: str, service: str = "smtp") -> object:
    return backend.MasterOverride(service, "inet", name, value)


def test_master_override_mynetworks_is_fixed_in_master_cf() -> None:
    facts = make_facts(
        mynetworks="127.0.0.0/8", overrides=(override("mynetworks", "0.0.0.0/0, 192.0.2.0/24"),)
    )
    plan = backend.plan_relay(facts, desired(relay_allowed_networks=["127.0.0.0/8"]))
    assert plan.override_settings() == {"smtp/inet/mynetworks": "127.0.0.0/8"}
    (change,) = [c for c in plan.changes if c.service]
    assert change.removes == ("192.0.2.0/24",)
    assert change.target == "master.cf smtp/inet -o mynetworks"
    kept = make_facts(
        mynetworks="127.0.0.0/8", overrides=(override("mynetworks", "0.0.0.0/0, 127.0.0.1/32"),)
    )
    plan = backend.plan_relay(kept, desired(relay_allowed_networks=["127.0.0.0/8"]))
    assert plan.override_settings() == {"smtp/inet/mynetworks": "127.0.0.1/32"}
    assert plan.removals() == ()


def test_master_override_with_an_open_cidr_table_is_named_entry_by_entry() -> None:
    facts = with_tables(
        make_facts(overrides=(override("mynetworks", CIDR),)),
        tables={CIDR: table(CIDR, "127.0.0.1/32", "0.0.0.0/0")},
    )
    plan = backend.plan_relay(facts, desired())
    (change,) = plan.changes
    assert "0.0.0.0/0" in change.reason and change.service == "smtp/inet"


def test_master_override_that_already_gates_is_left_alone() -> None:
    """Debian's master.cf submission example: relay only for SASL clients, then reject."""
    submission = override(
        "smtpd_relay_restrictions", "permit_sasl_authenticated,reject", "submission"
    )
    recipients = override("smtpd_recipient_restrictions", "permit_mynetworks,permit", "smtp")
    facts = make_facts(overrides=(submission, recipients))
    assert not backend.plan_relay(facts, desired()).changed  # 2.10+: relay list decides


def test_master_override_empty_relay_list_falls_back_to_recipient_list() -> None:
    closed = make_facts(
        overrides=(
            override("smtpd_relay_restrictions", ""),
            override("smtpd_recipient_restrictions", "permit_mynetworks,reject_unauth_destination"),
        )
    )
    assert not backend.plan_relay(closed, desired()).changed
    opened = make_facts(
        overrides=(
            override("smtpd_relay_restrictions", ""),
            override("smtpd_recipient_restrictions", "permit"),
        )
    )
    plan = backend.plan_relay(opened, desired())
    assert set(plan.override_settings()) == {
        "smtp/inet/smtpd_relay_restrictions",
        "smtp/inet/smtpd_recipient_restrictions",
    }


def test_master_override_of_a_service_that_is_not_smtpd_is_only_warned() -> None:
    facts = with_tables(
        make_facts(overrides=(override("mynetworks", "0.0.0.0/0", "pickup"),)),
        master_services={"smtp/inet": "smtpd", "pickup/inet": "pickup"},
    )
    plan = backend.plan_relay(facts, desired())
    assert not plan.changed
    assert any("pickup/inet overrides mynetworks" in w for w in plan.warnings)


@pytest.mark.parametrize(
    ("tokens", "after"),
    [
        (["permit"], ["permit_mynetworks", "reject_unauth_destination"]),
        (["permit_mynetworks", "permit"], ["permit_mynetworks", "reject_unauth_destination"]),
        (["permit_mynetworks"], ["permit_mynetworks", "reject_unauth_destination"]),
        (
            ["check_client_access", "hash:/x", "reject"],
            ["check_client_access", "hash:/x", "reject"],
        ),
        (
            ["permit_mynetworks", "defer_unauth_destination", "permit"],
            ["permit_mynetworks", "defer_unauth_destination", "permit"],
        ),
    ],
)
def test_close_restrictions(tokens: list[str], after: list[str]) -> None:
    assert backend.close_restrictions(tokens, None, "reject_unauth_destination") == after


def test_removal_refusal_only_in_enforce_without_permission() -> None:
    removals = ["main.cf relay_domains: partner.example"]
    refusal = relay_backend.removal_refusal(removals, True, False)
    assert refusal is not None and "partner.example" in refusal
    assert relay_backend.removal_refusal(removals, True, True) is None
    assert relay_backend.removal_refusal(removals, False, False) is None
    assert relay_backend.removal_refusal([], True, False) is None


def test_evaluate_runs_check_then_fix() -> None:
    change = relay_backend.Change("r1", "main.cf x", "a", "b", "why", ("gone",))
    rules = [
        relay_backend.Rule("r1", lambda f, d: "wrong" if f else None, lambda f, d: [change], "s"),
        relay_backend.Rule("r2", lambda f, d: None, lambda f, d: [change], "s"),
    ]
    plan = relay_backend.evaluate(rules, True, None)
    assert plan.changes == (change,) and plan.findings == (("r1", "wrong"),)
    assert plan.removals() == ("main.cf x: gone",)
    assert not relay_backend.evaluate(rules, False, None).changed
