"""The planner is a pure function: facts + desired state -> ordered changes; applying them (here
with a small model of the cmdlets, independent of the lab) gives an empty second plan; the
restore plan of a backup leads back to it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from relayguard.exchange.desired import relay_desired
from relayguard.exchange.plan import (
    PlanError,
    net_mask,
    plan_exchange55,
    plan_modern,
    plan_restore_exchange55,
    plan_restore_modern,
    relay_flags,
)
from relayguard.exchange.plan_modern import MODERN_FIXES, MODERN_RESTORES
from relayguard.exchange.rules import MODERN_RULES
from relayguard.validate import InputError

DESIRED = relay_desired(
    relay_allowed_networks=["192.0.2.0/24", "198.51.100.16/28"],
    relay_authenticated=True,
    inbound_domains=["Corp.Example"],
    reject_unknown_recipients=True,
    relay_connector_name="Relay EX19A",
)

EX55 = {
    "Parameters": {
        "Path": "HKLM:\\...",
        "RelayFlags": 5,
        "RelayAllowList": None,
        "RelayDenyList": ["203.0.113.0;255.255.255.0"],
        "RelayLocalIPList": [],
    },
    "Routing": {
        "Source": "directory",
        "RerouteIncoming": False,
        "RoutingList": [{"Domain": "partner.example", "Action": "Reroute", "Host": "mx.partner"}],
    },
}


def test_net_mask_and_flags() -> None:
    assert net_mask("192.0.2.0/24") == "192.0.2.0;255.255.255.0"
    assert net_mask("198.51.100.16/28") == "198.51.100.16;255.255.255.240"
    with pytest.raises(PlanError):
        net_mask("2001:db8::/32")
    assert relay_flags(None, True) == 10
    assert relay_flags(1, False) == 3  # the deny list stays, allow list added
    assert relay_flags(4 | 8, False) == 2  # the local-IP grant goes


def apply55(config: dict[str, Any], plan: Any) -> dict[str, Any]:
    out = copy.deepcopy(config)
    for step in plan.steps:
        for name, value in step.params.get("Parameters", {}).items():
            out["Parameters"][name] = value
        for name, value in step.params.get("Routing", {}).items():
            out["Routing"][name] = value
    return out


def test_exchange55_plan_order_and_idempotence() -> None:
    plan = plan_exchange55(EX55, DESIRED)
    assert [c.control for c in plan.changes] == [
        "ims-relay-allow-list",
        "ims-relay-flags",
        "ims-reroute-incoming",
        "ims-inbound-domains",
        "ims-restart",
    ]
    assert plan.changes[1].before == 5 and plan.changes[1].after == 1 | 2 | 8
    assert plan.steps[-1].op == "exchange.restart_service"
    routing = plan.steps[1].params["Routing"]["RoutingList"]
    assert routing == [
        {"Domain": "partner.example", "Action": "Reroute", "Host": "mx.partner"},
        {"Domain": "corp.example", "Action": "Inbound", "Host": ""},
    ]
    after = apply55(EX55, plan)
    assert not plan_exchange55(after, DESIRED).changed
    back = plan_restore_exchange55(after, EX55)
    assert apply55(after, back) == EX55
    assert not plan_restore_exchange55(apply55(after, back), EX55).changed


def test_exchange55_unknown_routing_storage_is_a_warning_not_a_guess() -> None:
    config = copy.deepcopy(EX55)
    config["Routing"] = {"Source": "unknown", "RerouteIncoming": None, "RoutingList": None}
    plan = plan_exchange55(config, DESIRED)
    assert not any(s.params.get("Routing") for s in plan.steps)
    assert any("Routing tab" in w for w in plan.warnings)


MODERN = {
    "Server": "EX19A",
    "ReceiveConnectors": [
        {
            "Identity": "EX19A\\Default Frontend EX19A",
            "Name": "Default Frontend EX19A",
            "Bindings": ["0.0.0.0:25"],
            "RemoteIPRanges": ["0.0.0.0-255.255.255.255"],
            "PermissionGroups": "AnonymousUsers, ExchangeServers",
            "AuthMechanism": "Tls, ExternalAuthoritative",
            "Enabled": True,
        },
        {
            "Identity": "EX19A\\Internal",
            "Name": "Internal",
            "Bindings": ["0.0.0.0:2525"],
            "RemoteIPRanges": ["192.0.2.10"],
            "PermissionGroups": "ExchangeServers",
            "AuthMechanism": "ExternalAuthoritative",
            "Enabled": True,
        },
    ],
    "AnonymousPermissions": [
        {
            "Identity": "EX19A\\Default Frontend EX19A",
            "User": "NT AUTHORITY\\ANONYMOUS LOGON",
            "ExtendedRights": ["ms-Exch-SMTP-Accept-Any-Recipient"],
            "Deny": False,
            "IsInherited": False,
        }
    ],
    "AcceptedDomains": [
        {
            "Name": "corp",
            "DomainName": "corp.example",
            "DomainType": "InternalRelay",
            "Default": True,
        },
        {"Name": "All", "DomainName": "*", "DomainType": "ExternalRelay", "Default": False},
        {
            "Name": "old",
            "DomainName": "old.example",
            "DomainType": "InternalRelay",
            "Default": False,
        },
    ],
    "RecipientFilterConfig": {"Enabled": True, "RecipientValidationEnabled": False},
}


def test_modern_plan_in_safe_order() -> None:
    plan = plan_modern(MODERN, DESIRED)
    assert [(c.control, c.target) for c in plan.changes] == [
        ("relay-connector", "EX19A\\Relay EX19A"),
        ("relay-connector-anonymous-relay", "EX19A\\Relay EX19A"),
        ("no-anonymous-relay", "EX19A\\Default Frontend EX19A"),
        ("no-external-authoritative", "EX19A\\Default Frontend EX19A"),
        ("inbound-domain", "corp.example"),
        ("no-relay-domain", "*"),
        ("no-relay-domain", "old.example"),
        ("recipient-validation", "RecipientFilterConfig"),
    ]
    # The internal connector's remote range lies inside the allowed networks: left alone.
    new = plan.steps[0].params["Actions"][0]
    assert new["RemoteIPRanges"] == ["192.0.2.0/24", "198.51.100.16/28"]
    assert plan.changes[3].after == "Tls"


def test_modern_plan_needs_the_connector_name_and_is_empty_when_compliant() -> None:
    no_name = relay_desired(
        relay_allowed_networks=["192.0.2.0/24"],
        relay_authenticated=False,
        inbound_domains=["corp.example"],
        reject_unknown_recipients=False,
    )
    with pytest.raises(PlanError, match="relay_connector_name"):
        plan_modern(MODERN, no_name)
    compliant = copy.deepcopy(MODERN)
    compliant["ReceiveConnectors"] = [
        compliant["ReceiveConnectors"][1] | {"AuthMechanism": "Tls"},
        {
            "Identity": "EX19A\\Relay EX19A",
            "Name": "Relay EX19A",
            "Bindings": ["0.0.0.0:25"],
            "RemoteIPRanges": ["198.51.100.16/28", "192.0.2.0/24"],
            "PermissionGroups": "AnonymousUsers",
            "AuthMechanism": "Tls",
            "Enabled": True,
        },
    ]
    compliant["AnonymousPermissions"] = [
        MODERN["AnonymousPermissions"][0] | {"Identity": "EX19A\\Relay EX19A"}
    ]
    compliant["AcceptedDomains"] = [MODERN["AcceptedDomains"][0] | {"DomainType": "Authoritative"}]
    compliant["RecipientFilterConfig"] = {"Enabled": True, "RecipientValidationEnabled": True}
    assert not plan_modern(compliant, DESIRED).changed
    # ... and the restore plan from it back to MODERN starts with connectors and domains.
    back = plan_restore_modern(compliant, MODERN)
    cmdlets = [s.params["Actions"][0]["Cmdlet"] for s in back.steps]
    assert cmdlets[0] == "Remove-ReceiveConnector" and "New-AcceptedDomain" in cmdlets
    assert "Add-ADPermission" not in cmdlets  # ACEs once the connectors match


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("relay_allowed_networks", ["192.0.2.1/24"]),
        ("inbound_domains", ["bad domain"]),
        ("relay_connector_name", "a\\b"),
        ("relay_connector_bindings", ["[192.0.2.1]:25"]),
    ],
)
def test_validation_names_the_field(field: str, value: Any) -> None:
    options: dict[str, Any] = {
        "relay_allowed_networks": [],
        "relay_authenticated": False,
        "inbound_domains": ["corp.example"],
        "reject_unknown_recipients": True,
        field: value,
    }
    with pytest.raises(InputError) as refused:
        relay_desired(**options)
    assert str(refused.value).startswith(field)


# --- the server's transport services and agents -----------------------------------------------


@pytest.mark.parametrize(
    ("frontend", "role"),
    [(True, "FrontendTransport"), (None, "FrontendTransport"), (False, "HubTransport")],
)
def test_relay_connector_role_follows_the_transport_services(
    frontend: bool | None, role: str
) -> None:
    """A 2013 Mailbox-only server has no Front End Transport service: HubTransport there."""
    config = copy.deepcopy(MODERN) | {"FrontendTransport": frontend}
    [create] = [c for c in plan_modern(config, DESIRED).changes if c.control == "relay-connector"]
    assert create.after["TransportRole"] == role
    new = plan_modern(config, DESIRED).steps[0].params["Actions"][0]
    assert new["Cmdlet"] == "New-ReceiveConnector" and new["TransportRole"] == role


AGENTS = [{"Identity": "Transport Rule Agent", "Enabled": True}]


@pytest.mark.parametrize(
    ("agents", "filter_config", "planned", "warning"),
    [
        (None, {"Enabled": True, "RecipientValidationEnabled": False}, True, None),
        (
            [*AGENTS, {"Identity": "Recipient Filter Agent", "Enabled": True}],
            {"Enabled": True, "RecipientValidationEnabled": False},
            True,
            None,
        ),
        (AGENTS, {"Enabled": True, "RecipientValidationEnabled": False}, False, "not installed"),
        (
            [*AGENTS, {"Identity": "Recipient Filter Agent", "Enabled": False}],
            {"Enabled": True, "RecipientValidationEnabled": False},
            False,
            "disabled",
        ),
        (AGENTS, None, False, "Get-RecipientFilterConfig failed"),
    ],
)
def test_recipient_validation_only_where_the_recipient_filter_agent_runs(
    agents: list[dict[str, Any]] | None,
    filter_config: dict[str, Any] | None,
    planned: bool,
    warning: str | None,
) -> None:
    config = copy.deepcopy(MODERN) | {
        "TransportAgents": agents,
        "RecipientFilterConfig": filter_config,
    }
    plan = plan_modern(config, DESIRED)
    controls = [c.control for c in plan.changes]
    assert ("recipient-validation" in controls) is planned
    if warning is not None:
        assert any(warning in w for w in plan.warnings), plan.warnings
    # The rest of the plan does not depend on it.
    assert controls[:7] == [c.control for c in plan_modern(MODERN, DESIRED).changes][:7]


def test_restore_of_an_accepted_domain_type_names_what_is_there_now() -> None:
    """The "before" of a restored accepted domain is its current type (it was a leftover loop
    variable: None, or UnboundLocalError with no connector in common)."""
    current = copy.deepcopy(MODERN)
    current["ReceiveConnectors"] = []
    current["AcceptedDomains"] = [MODERN["AcceptedDomains"][0] | {"DomainType": "Authoritative"}]
    backup = copy.deepcopy(MODERN)
    backup["ReceiveConnectors"] = [{"Identity": "EX19A\\X", "Name": "X", "Enabled": True}]
    plan = plan_restore_modern(current, backup)
    [change] = [
        c for c in plan.changes if c.target == "corp.example" and c.after == "InternalRelay"
    ]
    assert change.before == "Authoritative"


def test_restore_leaves_an_unknown_recipient_filter_alone() -> None:
    current = copy.deepcopy(MODERN) | {"RecipientFilterConfig": None}
    backup = copy.deepcopy(MODERN)
    cmdlets = [s.params["Actions"][0]["Cmdlet"] for s in plan_restore_modern(current, backup).steps]
    assert "Set-RecipientFilterConfig" not in cmdlets
    current["RecipientFilterConfig"] = {"Enabled": True, "RecipientValidationEnabled": True}
    cmdlets = [s.params["Actions"][0]["Cmdlet"] for s in plan_restore_modern(current, backup).steps]
    assert cmdlets == ["Set-RecipientFilterConfig"]


# --- the fix table and the rule table ---------------------------------------------------------


def test_every_rule_that_can_fail_has_a_fix_in_the_plan() -> None:
    fixed = {rule for fix in MODERN_FIXES for rule in fix.rules}
    assert {rule.id for rule in MODERN_RULES} <= fixed
    assert fixed <= {rule.id for rule in MODERN_RULES}, "a fix names a rule that does not exist"


def test_every_fix_is_undone_by_a_row_of_the_restore_table() -> None:
    """A control the plan can change that no restore row puts back would be lost on rollback."""
    fixed = {c for fix in MODERN_FIXES for c in fix.controls}
    restored = [c for row in MODERN_RESTORES for c in row.controls]
    assert fixed <= set(restored), fixed - set(restored)
    assert len(restored) == len(set(restored)), "a control is restored by two rows"
    assert {row.stage for row in MODERN_RESTORES} == {1, 2}


def test_the_restore_waits_for_stage_one_before_the_permissions() -> None:
    backup = copy.deepcopy(MODERN)
    current = copy.deepcopy(MODERN)
    current["RecipientFilterConfig"] = {"Enabled": True, "RecipientValidationEnabled": True}
    current["AnonymousPermissions"] = []
    steps = plan_restore_modern(current, backup).steps
    assert [s.params["Actions"][0]["Cmdlet"] for s in steps] == ["Set-RecipientFilterConfig"]
    current["RecipientFilterConfig"] = backup["RecipientFilterConfig"]
    steps = plan_restore_modern(current, backup).steps
    assert steps and {s.params["Actions"][0]["Cmdlet"] for s in steps} == {"Add-ADPermission"}


def test_every_planned_control_belongs_to_a_row_of_the_fix_table() -> None:
    controls = {c for fix in MODERN_FIXES for c in fix.controls}
    planned = {c.control for c in plan_modern(MODERN, DESIRED).changes}
    existing = copy.deepcopy(MODERN)
    existing["ReceiveConnectors"].append(
        {"Identity": "EX19A\\Relay EX19A", "Name": "Relay EX19A", "Enabled": False}
    )
    planned |= {c.control for c in plan_modern(existing, DESIRED).changes}
    assert planned <= controls, planned - controls
    assert {"relay-connector", "relay-connector-enabled", "recipient-validation"} <= planned


def test_a_relay_wildcard_over_a_public_suffix_is_removed_and_never_kept() -> None:
    config = copy.deepcopy(MODERN)
    config["AcceptedDomains"].append(
        {"Name": "Wild", "DomainName": "*.com", "DomainType": "InternalRelay", "Default": False}
    )
    [change] = [c for c in plan_modern(config, DESIRED).changes if c.target == "*.com"]
    assert change.control == "no-relay-domain" and change.after is None
    assert "public suffix .com" in change.reason
    with pytest.raises(InputError, match=r"relay_domains\[0\]: '\*\.com' is not a domain name"):
        relay_desired(
            relay_allowed_networks=["192.0.2.0/24"],
            relay_authenticated=True,
            inbound_domains=["corp.example"],
            relay_domains=["*.com"],
            reject_unknown_recipients=True,
            relay_connector_name="Relay EX19A",
        )
