"""The relay planner of Exchange 2013 and later, as a table of fixes. Pure.

Each row of `MODERN_FIXES` is one section of the plan: the controls its changes carry, the
rules of `rules.py` whose failures it fixes, its primary source, and a pure function that adds
its steps to the plan from the configuration document (`modern.read_config`,
docs/payloads.md) and the desired state. `plan_modern` runs the rows in order — the order
keeps legitimate mail flowing: the dedicated relay connector exists before any anonymous
relay right is taken away. A rule that can fail and that no row fixes is a test failure
(tests/exchange_remediation/test_plan.py), so a new rule comes with its fix.

Sources: docs/sources.md#learn-anonymous-relay, #learn-receive-connectors,
#learn-accepted-domains, #healthchecker-openrelaydomain, #public-suffix-list,
#learn-recipient-filtering, #learn-antispam-mailbox-servers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from relayguard.exchange.desired import RelayDesired
from relayguard.exchange.plan_common import (
    ACCEPT_ANY_RECIPIENT,
    ANONYMOUS,
    CONNECTOR_PROPERTIES,
    EXTERNAL_AUTHORITATIVE,
    RELAY_DOMAIN_TYPES,
    Builder,
    Change,
    PlanError,
    RelayPlan,
    Step,
    anonymous_relay_aces,
    connector_identity,
    flag_members,
    inside,
    one,
    same_ranges,
    set_connector,
)
from relayguard.exchange.rules import public_wildcard
from relayguard.vocabulary import ExchangeGeneration


@dataclass(frozen=True)
class _Context:
    """What every section reads: the document, the desired state, the dedicated connector."""

    config: Mapping[str, Any]
    desired: RelayDesired
    connectors: list[Mapping[str, Any]]
    networks: list[str]
    dedicated: Mapping[str, Any] | None  # the existing connector named relay_connector_name
    dedicated_identity: str | None  # lower-case; also when it is still to be created


@dataclass(frozen=True)
class ModernFix:
    controls: tuple[str, ...]  # the control ids of the changes it plans
    rules: tuple[str, ...]  # the rules (rules.py) whose failures it fixes
    source: str
    plan: Callable[[_Context, Builder], None]


def _context(config: Mapping[str, Any], desired: RelayDesired) -> _Context:
    connectors = list(config.get("ReceiveConnectors") or [])
    networks = list(desired.relay_allowed_networks)
    name = desired.relay_connector_name
    if networks and name is None:
        raise PlanError(
            "relay_connector_name: required on Exchange 2013 and later when "
            "relay_allowed_networks is not empty (the dedicated relay connector)"
        )
    dedicated = None
    if networks and name is not None:
        dedicated = next(
            (c for c in connectors if str(c.get("Name", "")).lower() == name.lower()), None
        )
    identity = None
    if dedicated is not None:
        identity = str(dedicated.get("Identity")).lower()
    elif networks and name is not None:
        identity = connector_identity(config, name).lower()
    return _Context(config, desired, connectors, networks, dedicated, identity)


def relay_transport_role(config: Mapping[str, Any]) -> str:
    """FrontendTransport where the Front End Transport service exists (2013 Client Access,
    every 2016+ Mailbox server), HubTransport on a 2013 Mailbox-only server
    (docs/sources.md#learn-receive-connectors). Unknown: FrontendTransport, as on 2016+."""
    return "HubTransport" if config.get("FrontendTransport") is False else "FrontendTransport"


# --- 1. the dedicated relay connector --------------------------------------------------------


def _create_relay_connector(ctx: _Context, b: Builder) -> str:
    name = str(ctx.desired.relay_connector_name)
    identity = connector_identity(ctx.config, name)
    role = relay_transport_role(ctx.config)
    bindings = list(ctx.desired.relay_connector_bindings)
    after = {
        "Bindings": bindings,
        "RemoteIPRanges": ctx.networks,
        "PermissionGroups": "AnonymousUsers",
        "TransportRole": role,
    }
    b.add(
        one(
            "New-ReceiveConnector",
            f"create the dedicated relay connector {name}",
            Name=name,
            TransportRole=role,
            Bindings=bindings,
            RemoteIPRanges=ctx.networks,
            PermissionGroups="AnonymousUsers",
            AuthMechanism="Tls",
        ),
        Change(
            "relay-connector",
            identity,
            None,
            after,
            "a dedicated connector for relay_allowed_networks only (Microsoft: "
            "never relay on the default connectors)",
        ),
    )
    return identity


def _relay_connector_changes(
    dedicated: Mapping[str, Any], ctx: _Context
) -> tuple[dict[str, Any], list[Change]]:
    """Read-modify-write of the existing relay connector: only what differs, and its
    PermissionGroups as the current members plus AnonymousUsers (the cmdlet replaces the set)."""
    identity = str(dedicated.get("Identity"))
    bindings = list(ctx.desired.relay_connector_bindings)
    props: dict[str, Any] = {}
    changes: list[Change] = []

    def change(control: str, prop: str, after: Any, reason: str) -> None:
        props[prop] = after
        changes.append(Change(control, identity, dedicated.get(prop), after, reason))

    if not same_ranges(dedicated.get("RemoteIPRanges") or [], ctx.networks):
        reason = "the relay connector accepts exactly relay_allowed_networks"
        change("relay-connector-remote-ip-ranges", "RemoteIPRanges", ctx.networks, reason)
    if {x.lower() for x in dedicated.get("Bindings") or []} != {x.lower() for x in bindings}:
        change("relay-connector-bindings", "Bindings", bindings, "relay_connector_bindings")
    groups = flag_members(dedicated.get("PermissionGroups"))
    if "AnonymousUsers" not in groups:
        after = ", ".join([*groups, "AnonymousUsers"])
        reason = "the allowed senders connect anonymously"
        change("relay-connector-permission-groups", "PermissionGroups", after, reason)
    if dedicated.get("Enabled") is False:
        change("relay-connector-enabled", "Enabled", True, "relay connector on")
    return props, changes


def plan_relay_connector(ctx: _Context, b: Builder) -> None:
    if not ctx.networks:
        return
    name = str(ctx.desired.relay_connector_name)
    if ctx.dedicated is None:
        identity = _create_relay_connector(ctx, b)
        has_relay_ace = False
    else:
        identity = str(ctx.dedicated.get("Identity"))
        props, changes = _relay_connector_changes(ctx.dedicated, ctx)
        if props:
            b.add(set_connector(identity, props, f"fix the relay connector {name}"), *changes)
        has_relay_ace = any(
            str(p.get("Identity")).lower() == identity.lower()
            for p in anonymous_relay_aces(ctx.config)
        )
    if not has_relay_ace:
        b.add(
            one(
                "Add-ADPermission",
                f"let anonymous senders of {name} relay",
                Identity=identity,
                User=ANONYMOUS,
                ExtendedRights=[ACCEPT_ANY_RECIPIENT],
            ),
            Change(
                "relay-connector-anonymous-relay",
                identity,
                None,
                f"{ANONYMOUS}: {ACCEPT_ANY_RECIPIENT}",
                "the allowed senders relay through the dedicated connector only",
            ),
        )


# --- 2. no anonymous relay anywhere else -----------------------------------------------------


def plan_no_anonymous_relay(ctx: _Context, b: Builder) -> None:
    for ace in anonymous_relay_aces(ctx.config):
        identity = str(ace.get("Identity"))
        if identity.lower() == ctx.dedicated_identity:
            continue
        if ace.get("IsInherited"):
            b.warnings.append(
                f"{identity}: anonymous {ACCEPT_ANY_RECIPIENT} is inherited from a parent "
                "object; remove it there (it cannot be removed on the connector)"
            )
            continue
        b.add(
            one(
                "Remove-ADPermission",
                f"remove anonymous relay from {identity}",
                Identity=identity,
                User=ANONYMOUS,
                ExtendedRights=[ACCEPT_ANY_RECIPIENT],
            ),
            Change(
                "no-anonymous-relay",
                identity,
                f"{ANONYMOUS}: {ACCEPT_ANY_RECIPIENT}",
                None,
                "anonymous relay only on the dedicated relay connector",
            ),
        )


# --- 3. no ExternalAuthoritative on Internet-facing connectors -------------------------------


def plan_no_external_authoritative(ctx: _Context, b: Builder) -> None:
    """Remote ranges beyond the allowed networks: it makes every client an Exchange server
    that may relay. AuthMechanism is read-modify-write (the current members less it)."""
    for conn in ctx.connectors:
        identity = str(conn.get("Identity"))
        mechanisms = flag_members(conn.get("AuthMechanism"))
        if identity.lower() == ctx.dedicated_identity or EXTERNAL_AUTHORITATIVE not in mechanisms:
            continue
        if ctx.networks and inside(conn.get("RemoteIPRanges") or [], ctx.networks):
            continue
        mechanism = ", ".join(m for m in mechanisms if m != EXTERNAL_AUTHORITATIVE) or "None"
        b.add(
            set_connector(
                identity,
                {"AuthMechanism": mechanism},
                f"remove ExternalAuthoritative from {identity}",
            ),
            Change(
                "no-external-authoritative",
                identity,
                conn.get("AuthMechanism"),
                mechanism,
                "ExternalAuthoritative treats every client in RemoteIPRanges as an Exchange "
                "server (relay)",
            ),
        )


# --- 4. accepted domains -----------------------------------------------------------------------


def plan_inbound_domains(ctx: _Context, b: Builder) -> None:
    """Every inbound domain accepted as Authoritative: delivered here, not relayed."""
    domains = list(ctx.config.get("AcceptedDomains") or [])
    by_name = {str(d.get("DomainName", "")).lower(): d for d in domains}
    for name in ctx.desired.inbound_domains:
        found = by_name.get(name)
        if found is None:
            b.add(
                one(
                    "New-AcceptedDomain",
                    f"accept {name} as authoritative",
                    Name=name,
                    DomainName=name,
                    DomainType="Authoritative",
                ),
                Change("inbound-domain", name, None, "Authoritative", "an inbound domain"),
            )
        elif found.get("DomainType") != "Authoritative":
            b.add(
                one(
                    "Set-AcceptedDomain",
                    f"make {name} authoritative",
                    Identity=str(found.get("Name")),
                    DomainType="Authoritative",
                ),
                Change(
                    "inbound-domain",
                    name,
                    found.get("DomainType"),
                    "Authoritative",
                    "an inbound domain is delivered here, not relayed",
                ),
            )


def _open_domain_reason(name: str) -> str | None:
    """Why a relay accepted domain relays for the world ('*', '*.<public suffix>'), or None."""
    if name == "*":
        return "an accepted domain '*' relays for everyone (HealthChecker OpenRelayDomain)"
    suffix = public_wildcard(name)
    if suffix is not None:
        return f"{name} relays for every domain under the public suffix .{suffix}"
    return None


def plan_relay_domains(ctx: _Context, b: Builder) -> None:
    """No '*', no relay wildcard over a public suffix, no relay domain the inventory does not
    list; the default domain is made Authoritative instead of removed."""
    listed = set(ctx.desired.inbound_domains) | set(ctx.desired.relay_domains)
    for domain in ctx.config.get("AcceptedDomains") or []:
        name = str(domain.get("DomainName", "")).lower()
        relays = domain.get("DomainType") in RELAY_DOMAIN_TYPES
        # relay_domains and inbound_domains hold no wildcard (validate.py): never listed.
        world = _open_domain_reason(name) if (relays or name == "*") else None
        if name in listed or (world is None and not relays):
            continue
        reason = world or "a relay domain the inventory does not list"
        if domain.get("Default"):
            if name == "*":
                raise PlanError("the default accepted domain is '*': make another one default")
            step = one(
                "Set-AcceptedDomain",
                f"make {name} authoritative",
                Identity=str(domain.get("Name")),
                DomainType="Authoritative",
            )
            b.add(
                step,
                Change("no-relay-domain", name, domain.get("DomainType"), "Authoritative", reason),
            )
            continue
        b.add(
            one("Remove-AcceptedDomain", f"remove {name}", Identity=str(domain.get("Name"))),
            Change("no-relay-domain", name, domain.get("DomainType"), None, reason),
        )


# --- 5. unknown recipients refused at RCPT time ----------------------------------------------


def recipient_filter_blocker(config: Mapping[str, Any]) -> str | None:
    """Why recipient validation cannot be planned on this server, or None when it can
    (docs/sources.md#learn-antispam-mailbox-servers)."""
    if config.get("RecipientFilterConfig") is None:
        return (
            "recipient validation not planned: Get-RecipientFilterConfig failed on this "
            "server (are the anti-spam agents installed?)"
        )
    agents = config.get("TransportAgents")
    if agents is None:
        return None
    names = {str(a.get("Identity", "")).lower(): a.get("Enabled") for a in agents}
    if names.get("recipient filter agent") is True:
        return None
    state = "disabled" if "recipient filter agent" in names else "not installed"
    return (
        f"recipient validation not planned: the Recipient Filter agent is {state} on this "
        "server. Install-AntiSpamAgents.ps1 (then restart MSExchangeTransport) installs it, "
        "but Microsoft advises against the Recipient Filter agent on Mailbox servers: "
        "validate recipients where mail enters (an Edge Transport server or the inbound "
        "filtering service), or set reject_unknown_recipients: false to accept this"
    )


def plan_recipient_validation(ctx: _Context, b: Builder) -> None:
    rfc = ctx.config.get("RecipientFilterConfig") or {}
    on = rfc.get("Enabled") is True and rfc.get("RecipientValidationEnabled") is True
    if not ctx.desired.reject_unknown_recipients or on:
        return
    blocker = recipient_filter_blocker(ctx.config)
    if blocker is not None:
        b.warnings.append(blocker)
        return
    b.add(
        one(
            "Set-RecipientFilterConfig",
            "turn recipient validation on",
            Enabled=True,
            RecipientValidationEnabled=True,
        ),
        Change(
            "recipient-validation",
            "RecipientFilterConfig",
            {
                "Enabled": rfc.get("Enabled"),
                "RecipientValidationEnabled": rfc.get("RecipientValidationEnabled"),
            },
            {"Enabled": True, "RecipientValidationEnabled": True},
            "unknown recipients are refused at RCPT time (550 5.1.10)",
        ),
    )


# --- the table ---------------------------------------------------------------------------------

MODERN_FIXES: tuple[ModernFix, ...] = (
    ModernFix(
        (
            "relay-connector",
            "relay-connector-remote-ip-ranges",
            "relay-connector-bindings",
            "relay-connector-permission-groups",
            "relay-connector-enabled",
            "relay-connector-anonymous-relay",
        ),
        (),
        "docs/sources.md#learn-anonymous-relay",
        plan_relay_connector,
    ),
    ModernFix(
        ("no-anonymous-relay",),
        ("anonymous-accept-any-recipient",),
        "docs/sources.md#learn-anonymous-relay",
        plan_no_anonymous_relay,
    ),
    ModernFix(
        ("no-external-authoritative",),
        ("external-authoritative",),
        "docs/sources.md#learn-anonymous-relay",
        plan_no_external_authoritative,
    ),
    ModernFix(
        ("inbound-domain",), (), "docs/sources.md#learn-accepted-domains", plan_inbound_domains
    ),
    ModernFix(
        ("no-relay-domain",),
        ("accepted-domain-star", "accepted-domain-public-wildcard", "accepted-domain-relay"),
        "docs/sources.md#healthchecker-openrelaydomain",
        plan_relay_domains,
    ),
    ModernFix(
        ("recipient-validation",),
        ("recipient-validation-off",),
        "docs/sources.md#learn-recipient-filtering",
        plan_recipient_validation,
    ),
)


def plan_modern(config: Mapping[str, Any], desired: RelayDesired) -> RelayPlan:
    b = Builder(ExchangeGeneration.MODERN)
    ctx = _context(config, desired)
    for fix in MODERN_FIXES:
        fix.plan(ctx, b)
    if not desired.relay_authenticated:
        b.warnings.append(
            "relay_authenticated is false: authenticated submission (ExchangeUsers on the "
            "client connectors) is not changed on Exchange 2013 and later"
        )
    return b.plan()


# --- restore -----------------------------------------------------------------------------------


def _connector_props(conn: Mapping[str, Any]) -> dict[str, Any]:
    return {name: conn.get(name) for name in CONNECTOR_PROPERTIES}


def _ace_key(ace: Mapping[str, Any]) -> tuple[str, str, bool]:
    rights = ace.get("ExtendedRights") or [""]
    return (str(ace.get("Identity")), str(rights[0]), bool(ace.get("Deny")))


def _restore_connectors(current: Mapping[str, Any], backup: Mapping[str, Any], b: Builder) -> None:
    """Connectors created since the backup removed, changed ones reset, removed ones re-created."""
    now = {str(c["Name"]).lower(): c for c in current.get("ReceiveConnectors") or []}
    then = {str(c["Name"]).lower(): c for c in backup.get("ReceiveConnectors") or []}
    for key, conn in now.items():
        if key not in then:
            b.add(
                one("Remove-ReceiveConnector", "restore", Identity=str(conn["Identity"])),
                Change("restore", str(conn["Identity"]), _connector_props(conn), None, ""),
            )
    for key, conn in then.items():
        if key in now:
            old = _connector_props(now[key])
            differing = {k: v for k, v in _connector_props(conn).items() if old.get(k) != v}
            if differing:
                b.add(
                    set_connector(str(conn["Identity"]), differing, "restore"),
                    Change("restore", str(conn["Identity"]), old, _connector_props(conn), ""),
                )
    for key, conn in then.items():
        if key not in now:
            b.add(
                one(
                    "New-ReceiveConnector",
                    "restore",
                    Name=str(conn["Name"]),
                    TransportRole=str(conn.get("TransportRole")),
                    **{k: v for k, v in _connector_props(conn).items() if v is not None},
                ),
                Change("restore", str(conn["Identity"]), None, _connector_props(conn), ""),
            )


def _restore_domains(current: Mapping[str, Any], backup: Mapping[str, Any], b: Builder) -> None:
    now = {str(d["Name"]).lower(): d for d in current.get("AcceptedDomains") or []}
    then = {str(d["Name"]).lower(): d for d in backup.get("AcceptedDomains") or []}
    for key, dom in then.items():
        if key not in now:
            b.add(
                one(
                    "New-AcceptedDomain",
                    "restore",
                    Name=str(dom["Name"]),
                    DomainName=str(dom["DomainName"]),
                    DomainType=str(dom["DomainType"]),
                ),
                Change("restore", str(dom["DomainName"]), None, dom.get("DomainType"), ""),
            )
    for key, dom in then.items():
        present = now.get(key)
        name = str(dom["DomainName"])
        if present is not None and present.get("DomainType") != dom.get("DomainType"):
            b.add(
                one(
                    "Set-AcceptedDomain",
                    "restore",
                    Identity=str(dom["Name"]),
                    DomainType=str(dom["DomainType"]),
                ),
                Change("restore", name, present.get("DomainType"), dom["DomainType"], ""),
            )
        if dom.get("Default") and not (present or {}).get("Default"):
            b.add(
                one("Set-AcceptedDomain", "restore", Identity=str(dom["Name"]), MakeDefault=True),
                Change("restore", name, "not default", "default", ""),
            )
    for key, dom in now.items():
        if key not in then:
            b.add(
                one("Remove-AcceptedDomain", "restore", Identity=str(dom["Name"])),
                Change("restore", str(dom["DomainName"]), dom.get("DomainType"), None, ""),
            )


def _restore_filter(current: Mapping[str, Any], backup: Mapping[str, Any], b: Builder) -> None:
    now = current.get("RecipientFilterConfig")
    then = backup.get("RecipientFilterConfig")
    # Unknown on either side (the cmdlet failed): nothing to compare, nothing to set.
    if now is not None and then is not None and now != then:
        b.add(
            one("Set-RecipientFilterConfig", "restore", **dict(then)),
            Change("restore", "RecipientFilterConfig", now, then, ""),
        )


def _restore_aces(current: Mapping[str, Any], backup: Mapping[str, Any], b: Builder) -> None:
    def explicit(doc: Mapping[str, Any]) -> set[tuple[str, str, bool]]:
        aces = doc.get("AnonymousPermissions") or []
        return {_ace_key(a) for a in aces if not a.get("IsInherited")}

    now, then = explicit(current), explicit(backup)
    for identity, right, deny in sorted(now - then):
        b.add(
            one(
                "Remove-ADPermission",
                "restore",
                Identity=identity,
                User=ANONYMOUS,
                ExtendedRights=[right],
                Deny=deny,
            ),
            Change("restore", identity, f"{ANONYMOUS}: {right}", None, ""),
        )
    for identity, right, deny in sorted(then - now):
        b.add(
            one(
                "Add-ADPermission",
                "restore",
                Identity=identity,
                User=ANONYMOUS,
                ExtendedRights=[right],
                Deny=deny,
            ),
            Change("restore", identity, None, f"{ANONYMOUS}: {right}", ""),
        )


@dataclass(frozen=True)
class ModernRestore:
    """One row of the restore table: the objects it puts back, the controls (MODERN_FIXES)
    whose changes it undoes, and its stage (1: connectors, domains, the filter; 2: the explicit
    ANONYMOUS LOGON entries, once stage 1 has nothing left: setting PermissionGroups rewrites
    the group ones)."""

    objects: str
    controls: tuple[str, ...]
    stage: int
    restore: Callable[[Mapping[str, Any], Mapping[str, Any], Builder], None]


MODERN_RESTORES: tuple[ModernRestore, ...] = (
    ModernRestore(
        "receive connectors",
        (
            "relay-connector",
            "relay-connector-remote-ip-ranges",
            "relay-connector-bindings",
            "relay-connector-permission-groups",
            "relay-connector-enabled",
            "no-external-authoritative",
        ),
        1,
        _restore_connectors,
    ),
    ModernRestore("accepted domains", ("inbound-domain", "no-relay-domain"), 1, _restore_domains),
    ModernRestore("recipient filter", ("recipient-validation",), 1, _restore_filter),
    ModernRestore(
        "anonymous permissions",
        ("no-anonymous-relay", "relay-connector-anonymous-relay"),
        2,
        _restore_aces,
    ),
)


def plan_restore_modern(current: Mapping[str, Any], backup: Mapping[str, Any]) -> RelayPlan:
    """The way back to `backup`, by the restore table: stage 1, then stage 2 once stage 1
    plans nothing (call again after applying until the plan is empty)."""
    b = Builder(ExchangeGeneration.MODERN)
    for stage in (1, 2):
        for row in MODERN_RESTORES:
            if row.stage == stage:
                row.restore(current, backup, b)
        if b.steps:
            break
    return b.plan()


__all__ = [
    "MODERN_FIXES",
    "MODERN_RESTORES",
    "ModernFix",
    "ModernRestore",
    "Step",
    "plan_modern",
    "plan_restore_modern",
    "recipient_filter_blocker",
    "relay_transport_role",
]
