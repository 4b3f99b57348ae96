"""The planner is a pure function: facts + desired state -> parameter changes (no Postfix)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest

from postfix_remediation.backend import backend

DEBIAN_DEFAULTS = {
    "mail_version": "3.7.11",
    "myhostname": "mx.example.org",
    "mydomain": "example.org",
    "mydestination": "$myhostname, localhost",
    "mynetworks": "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128",
    "smtpd_relay_restrictions": (
        "permit_mynetworks permit_sasl_authenticated defer_unauth_destination"
    ),
    "relay_domains": "${{$compatibility_level} <level {2} ? {$mydestination} : {}}",
    "virtual_alias_domains": "$virtual_alias_maps",
    "virtual_alias_maps": "",
    "virtual_mailbox_domains": "$virtual_mailbox_maps",
    "virtual_mailbox_maps": "",
    "allow_untrusted_routing": "no",
    "smtpd_sasl_auth_enable": "no",
    "compatibility_level": "3.6",
}
EXPLICIT = {"myhostname", "mydestination", "mynetworks", "smtpd_relay_restrictions"}
_REF = re.compile(r"\$\{?([a-z_]+)\}?")


def expand(raw: Mapping[str, str], value: str) -> str:
    """Enough of Postfix's $name expansion for these facts (conditionals given expanded)."""
    if "${{" in value:
        return ""
    return _REF.sub(lambda m: expand(raw, raw.get(m.group(1), "")), value)


def make_facts(
    explicit: set[str] | None = None,
    expanded: Mapping[str, str] | None = None,
    table_hits: Mapping[str, frozenset[str]] | None = None,
    overrides: tuple[object, ...] = (),
    **raw_changes: str,
) -> object:
    raw = {**DEBIAN_DEFAULTS, **raw_changes}
    full = {name: expand(raw, value) for name, value in raw.items()}
    full.update(expanded or {})
    return backend.PostfixFacts(
        config_dir="/etc/postfix",
        raw=raw,
        expanded=full,
        explicit=frozenset((explicit or EXPLICIT) | set(raw_changes)),
        master_overrides=overrides,
        table_hits=dict(table_hits or {}),
    )


def desired(**options: object) -> object:
    return backend.desired_state(options)


def after_applying(facts: object, plan: object) -> object:
    """The facts Postfix would report once the plan is written (what verify() re-reads)."""
    raw = dict(facts.raw)  # type: ignore[attr-defined]
    raw.update(plan.settings())  # type: ignore[attr-defined]
    explicit = set(facts.explicit) | set(plan.settings())  # type: ignore[attr-defined]
    full = {name: expand(raw, value) for name, value in raw.items()}
    return backend.PostfixFacts(
        config_dir="/etc/postfix",
        raw=raw,
        expanded=full,
        explicit=frozenset(explicit),
        table_hits=facts.table_hits,  # type: ignore[attr-defined]
    )


def changes(plan: object, *names: str) -> dict[str, str]:
    """The planned settings, or only those of `names`."""
    settings: dict[str, str] = plan.settings()  # type: ignore[attr-defined]
    return {k: v for k, v in settings.items() if not names or k in names}


DOMAINS = backend.DOMAIN_CLASSES


def test_open_relay_is_closed_and_plan_converges() -> None:
    facts = make_facts(mynetworks="0.0.0.0/0", smtpd_relay_restrictions="permit")
    want = desired(
        relay_allowed_networks=["127.0.0.0/8", "192.0.2.0/24"], relay_refusal="permanent"
    )
    plan = backend.plan_relay(facts, want)
    assert changes(plan) == {
        "mynetworks": "127.0.0.0/8, 192.0.2.0/24",
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
    }
    again = backend.plan_relay(after_applying(facts, plan), want)
    assert not again.changed


def test_debian_default_keeps_its_4xx_refusal_unless_asked_for_5xx() -> None:
    facts = make_facts()
    keep = backend.plan_relay(facts, desired(relay_authenticated=True))
    assert not keep.changed  # Debian's list already is: mynetworks, sasl, defer
    permanent = backend.plan_relay(
        facts, desired(relay_authenticated=True, relay_refusal="permanent")
    )
    assert changes(permanent) == {
        "smtpd_relay_restrictions": (
            "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
        )
    }
    temporary = backend.plan_relay(
        make_facts(smtpd_relay_restrictions="permit_mynetworks, reject_unauth_destination"),
        desired(relay_refusal="temporary"),
    )
    assert changes(temporary)["smtpd_relay_restrictions"] == (
        "permit_mynetworks, defer_unauth_destination"
    )


def test_sasl_relay_kept_by_default_and_removed_only_when_asked() -> None:
    """relay_authenticated defaults to keep: Debian's permit_sasl_authenticated stays (RFC
    2505 section 2 allows relaying for authenticated clients); false removes it."""
    assert not backend.plan_relay(make_facts(), desired()).changed
    assert not backend.plan_relay(make_facts(), desired(relay_authenticated="keep")).changed
    plan = backend.plan_relay(make_facts(), desired(relay_authenticated=False))
    assert changes(plan) == {
        "smtpd_relay_restrictions": "permit_mynetworks, defer_unauth_destination"
    }
    assert plan.removals() == ()  # the inventory asked for it: not a silent removal


def test_restrictions_after_the_gate_are_kept_and_before_it_replaced() -> None:
    facts = make_facts(
        smtpd_relay_restrictions=(
            "permit_mx_backup, check_client_access hash:/etc/postfix/relay_ok, "
            "permit_mynetworks, reject_unauth_destination, "
            "check_policy_service { inet:127.0.0.1:10023, timeout=10s }"
        )
    )
    plan = backend.plan_relay(facts, desired(relay_refusal="keep"))
    change = plan.changes[0]
    assert change.after == (
        "permit_mynetworks, reject_unauth_destination, "
        "check_policy_service { inet:127.0.0.1:10023, timeout=10s }"
    )
    assert "permit_mx_backup" in change.reason and "check_client_access" in change.reason
    assert not backend.plan_relay(after_applying(facts, plan), desired()).changed


def test_unset_restrictions_use_the_expanded_compatibility_default() -> None:
    conditional = (
        "${{$compatibility_level} <level {1} ? {} : "
        "{permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination}}"
    )
    facts = make_facts(
        explicit={"myhostname", "mydestination", "mynetworks"},
        expanded={
            "smtpd_relay_restrictions": (
                "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"
            )
        },
    )
    facts.raw["smtpd_relay_restrictions"] = conditional  # type: ignore[attr-defined]
    facts = backend.PostfixFacts(
        "/etc/postfix",
        facts.raw,  # type: ignore[attr-defined]
        facts.expanded,  # type: ignore[attr-defined]
        frozenset({"myhostname", "mydestination", "mynetworks"}),
    )
    plan = backend.plan_relay(facts, desired(relay_refusal="permanent"))
    assert changes(plan)["smtpd_relay_restrictions"] == (
        "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
    )
    assert plan.changes[0].before == conditional
    no_sasl = backend.plan_relay(
        facts, desired(relay_refusal="permanent", relay_authenticated=False)
    )
    assert changes(no_sasl)["smtpd_relay_restrictions"] == (
        "permit_mynetworks, reject_unauth_destination"
    )


def test_mynetworks_compared_as_a_set_in_any_notation() -> None:
    facts = make_facts(mynetworks="[::1]/128, 127.0.0.0/8 192.0.2.7")
    plan = backend.plan_relay(
        facts, desired(relay_allowed_networks=["127.0.0.0/8", "::1", "192.0.2.7/32"])
    )
    assert changes(plan, "mynetworks") == {}
    plan = backend.plan_relay(
        make_facts(mynetworks="127.0.0.0/8, hash:/etc/postfix/trusted"),
        desired(relay_allowed_networks=["127.0.0.0/8"]),
    )
    assert changes(plan, "mynetworks") == {"mynetworks": "127.0.0.0/8"}


def test_unmanaged_wide_mynetworks_and_missing_loopback_are_warned() -> None:
    plan = backend.plan_relay(make_facts(mynetworks="0.0.0.0/0"), desired())
    assert "mynetworks" not in changes(plan)
    assert any("0.0.0.0/0" in w and "relay_allowed_networks" in w for w in plan.warnings)
    plan = backend.plan_relay(make_facts(), desired(relay_allowed_networks=["192.0.2.0/24"]))
    assert any("no loopback network" in w for w in plan.warnings)


def test_source_routing_is_refused() -> None:
    plan = backend.plan_relay(make_facts(allow_untrusted_routing="yes"), desired())
    assert changes(plan)["allow_untrusted_routing"] == "no"


def test_domains_not_inbound_are_pruned_own_names_and_references_kept() -> None:
    facts = make_facts(
        mydestination="$myhostname, localhost.$mydomain, localhost, example.org, old.example",
        relay_domains="example.net, partner.example, gmail.com",
    )
    plan = backend.plan_relay(facts, desired(inbound_domains=["example.org", "example.net"]))
    assert changes(plan, *DOMAINS) == {
        "mydestination": "$myhostname, localhost.$mydomain, localhost, example.org",
        "relay_domains": "example.net",
    }
    again = backend.plan_relay(
        after_applying(facts, plan), desired(inbound_domains=["example.org", "example.net"])
    )
    assert not again.changed


def test_pruning_can_be_turned_off() -> None:
    facts = make_facts(relay_domains="example.net, partner.example")
    plan = backend.plan_relay(facts, desired(inbound_domains=["example.net"], prune_domains=False))
    assert changes(plan, *DOMAINS) == {}


def test_missing_inbound_domain_goes_where_the_host_keeps_the_others() -> None:
    facts = make_facts(relay_domains="example.net")
    plan = backend.plan_relay(facts, desired(inbound_domains=["example.net", "example.org"]))
    assert changes(plan, *DOMAINS) == {"relay_domains": "example.net, example.org"}


def test_missing_inbound_domain_without_precedent_asks_for_a_class() -> None:
    facts = make_facts()
    with pytest.raises(backend.PlanError, match="set inbound_domain_class"):
        backend.plan_relay(facts, desired(inbound_domains=["example.org"]))
    plan = backend.plan_relay(
        facts, desired(inbound_domains=["example.org"], inbound_domain_class="mydestination")
    )
    assert changes(plan, *DOMAINS) == {"mydestination": "$myhostname, localhost, example.org"}


def test_ambiguous_classes_ask_for_a_class() -> None:
    facts = make_facts(mydestination="$myhostname, a.example", relay_domains="b.example")
    with pytest.raises(backend.PlanError, match="mydestination and relay_domains"):
        backend.plan_relay(facts, desired(inbound_domains=["a.example", "b.example", "c.example"]))


def test_domains_found_in_tables_count_as_accepted_and_tables_are_never_edited() -> None:
    facts = make_facts(
        virtual_alias_maps="hash:/etc/postfix/virtual",
        table_hits={"hash:/etc/postfix/virtual": frozenset({"example.org"})},
    )
    plan = backend.plan_relay(facts, desired(inbound_domains=["example.org"]))
    assert changes(plan, *DOMAINS) == {}
    assert any("hash:/etc/postfix/virtual" in w for w in plan.warnings)


def test_relay_domains_referring_to_mydestination_is_kept() -> None:
    facts = make_facts(
        mydestination="$myhostname, localhost, example.org, other.example",
        relay_domains="$mydestination",
    )
    plan = backend.plan_relay(facts, desired(inbound_domains=["example.org"]))
    assert changes(plan, *DOMAINS) == {"mydestination": "$myhostname, localhost, example.org"}


def test_master_cf_override_is_planned_and_disabled_sasl_warned() -> None:
    """An smtpd service's own `-o smtpd_relay_restrictions=permit` is closed in master.cf
    (master(5) -o), not only warned about; an override of another parameter is warned."""
    relay = backend.MasterOverride("smtp", "inet", "smtpd_relay_restrictions", "permit")
    routing = backend.MasterOverride("smtp", "inet", "relay_domains", "partner.example")
    facts = make_facts(overrides=(relay, routing))
    plan = backend.plan_relay(facts, desired(relay_authenticated=True))
    assert plan.override_settings() == {
        "smtp/inet/smtpd_relay_restrictions": (
            "permit_mynetworks,permit_sasl_authenticated,defer_unauth_destination"
        )
    }
    change = next(c for c in plan.changes if c.service)
    assert change.rule == "postfix-master-overrides"
    assert change.target == "master.cf smtp/inet -o smtpd_relay_restrictions"
    assert any("smtp/inet overrides relay_domains" in w for w in plan.warnings)
    assert any("smtpd_sasl_auth_enable" in w for w in plan.warnings)


def test_old_postfix_decides_relaying_in_recipient_restrictions() -> None:
    """Before 2.10 there is no smtpd_relay_restrictions: the recipient list is the gate
    (SMTPD_ACCESS_README); a bare permit before the gate becomes the gate."""
    facts = make_facts(
        mail_version="2.9.6", smtpd_recipient_restrictions="permit_mynetworks, permit"
    )
    plan = backend.plan_relay(facts, desired(relay_refusal="permanent"))
    assert changes(plan) == {
        "smtpd_recipient_restrictions": "permit_mynetworks, reject_unauth_destination"
    }
    assert "smtpd_relay_restrictions" not in plan.values_after()
    closed = make_facts(
        mail_version="2.9.6",
        smtpd_recipient_restrictions="permit_mynetworks, reject_unauth_destination, permit",
    )
    assert not backend.plan_relay(closed, desired()).changed


def test_diff_shows_managed_parameters_before_and_after() -> None:
    plan = backend.plan_relay(
        make_facts(mynetworks="0.0.0.0/0"), desired(relay_allowed_networks=["127.0.0.0/8"])
    )
    diff = plan.diff("/etc/postfix/main.cf")
    assert "mynetworks = 0.0.0.0/0\n" in diff["before"]
    assert "mynetworks = 127.0.0.0/8\n" in diff["after"]
    assert diff["before"].count("\n") == diff["after"].count("\n") == 7


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("a, b  c\n\td", ["a", "b", "c", "d"]),
        (
            "check_policy_service { inet:x:1, timeout=10s }, reject",
            ["check_policy_service", "{ inet:x:1, timeout=10s }", "reject"],
        ),
        ("", []),
    ],
)
def test_postfix_lists_split_like_postfix(value: str, items: list[str]) -> None:
    assert backend.split_list(value) == items


def test_postconf_output_parsing() -> None:
    text = "mynetworks = 127.0.0.0/8 [::1]/128\nrelay_domains =\nbad line\n"
    assert backend.parse_parameters(text) == {
        "mynetworks": "127.0.0.0/8 [::1]/128",
        "relay_domains": "",
    }
    overrides = backend.parse_master_overrides("127.0.0.1:25/inet/mynetworks = 0.0.0.0/0\n")
    assert overrides == (backend.MasterOverride("127.0.0.1:25", "inet", "mynetworks", "0.0.0.0/0"),)
