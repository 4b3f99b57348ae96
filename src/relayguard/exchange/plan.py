"""Relay remediation planner: facts + desired state -> an ordered list of changes. Pure.

Input is the configuration document a read payload prints (`exchange55.read_config` or
`modern.read_config`, docs/payloads.md) and a validated `RelayDesired`; output is a
`RelayPlan`: the changes (control, target, before, after, reason) for the operator and the
report, and the write steps (payload op + parameters) in the order they are safe to apply.
Applying the steps and reading again gives an empty plan. `plan_restore` plans the way back to
a backed-up configuration document (rollback and `state: restored`).

Sources: Exchange 5.5 routing restrictions, KB Q193922 / Q196626; the Routing tab's
"Reroute incoming SMTP mail" and inbound domains, KB Q169683 / Q259531; Exchange 2013+ relay
through receive-connector permissions, accepted domains and recipient validation: Microsoft
Learn "Allow anonymous relay on Exchange servers", "Accepted domains in Exchange Server",
CSS-Exchange HealthChecker OpenRelayDomain (docs/sources.md#learn-anonymous-relay,
docs/sources.md#learn-accepted-domains, docs/sources.md#healthchecker-openrelaydomain).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from relayguard.exchange.desired import RelayDesired
from relayguard.vocabulary import RECEIVE_CONNECTOR_PROPERTIES, ExchangeGeneration

PARAMETERS_KEY = "HKLM:\\SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC\\Parameters"
IMS_SERVICE = "MSExchangeIMC"
IMS_LISTS = ("RelayAllowList", "RelayDenyList", "RelayLocalIPList")

# RelayFlags bits (KB Q193922)
FLAG_DENY_LIST = 1
FLAG_ALLOW_LIST = 2
FLAG_LOCAL_IP_LIST = 4
FLAG_AUTHENTICATED = 8

ANONYMOUS = "NT AUTHORITY\\ANONYMOUS LOGON"
ACCEPT_ANY_RECIPIENT = "ms-Exch-SMTP-Accept-Any-Recipient"
EXTERNAL_AUTHORITATIVE = "ExternalAuthoritative"
RELAY_DOMAIN_TYPES = ("InternalRelay", "ExternalRelay")


class PlanError(ValueError):
    """The desired state cannot be reached on this host as asked (nothing was changed)."""


@dataclass(frozen=True)
class Change:
    """One control brought to its desired value."""

    control: str
    target: str
    before: Any
    after: Any
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "target": self.target,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Step:
    """One payload call. `controls` names the changes it carries out."""

    op: str
    params: Mapping[str, Any]
    summary: str
    controls: tuple[str, ...] = ()

    @property
    def is_restart(self) -> bool:
        return self.op == "exchange.restart_service"

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "params": dict(self.params), "summary": self.summary}


@dataclass(frozen=True)
class RelayPlan:
    platform: str
    changes: tuple[Change, ...] = ()
    steps: tuple[Step, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.steps)

    def diff(self) -> dict[str, dict[str, Any]]:
        """Readable before/after: one entry per target."""
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for change in self.changes:
            key = f"{change.control}: {change.target}"
            before[key] = change.before
            after[key] = change.after
        return {"before": before, "after": after}


@dataclass
class _Builder:
    platform: str
    changes: list[Change] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, step: Step, *changes: Change) -> None:
        self.changes.extend(changes)
        self.steps.append(step)

    def plan(self) -> RelayPlan:
        return RelayPlan(
            self.platform, tuple(self.changes), tuple(self.steps), tuple(self.warnings)
        )


def restart_step(smtp_port: int | None) -> Step:
    params: dict[str, Any] = {"Name": IMS_SERVICE}
    if smtp_port is not None:
        params["SmtpPort"] = smtp_port
    return Step(
        "exchange.restart_service",
        params,
        "restart MSExchangeIMC so it loads the new parameters (KB Q193922)",
        ("ims-restart",),
    )


# =========================================================================== Exchange 5.5


def net_mask(network: str) -> str:
    """A CIDR as the IMS stores it: `net;mask` (KB Q193922)."""
    net = ipaddress.ip_network(network)
    if net.version != 4:
        raise PlanError(
            f"relay_allowed_networks: {network!r} is IPv6; the Exchange 5.5 IMS takes IPv4 "
            "networks only"
        )
    return f"{net.network_address};{net.netmask}"


def relay_flags(before: int | None, authenticated: bool) -> int:
    """Allow list on, authenticated clients as asked; a deny list in use is kept (it only
    narrows), the local-IP grant is dropped (it relays for anyone reaching that address)."""
    kept = (before or 0) & FLAG_DENY_LIST
    return kept | FLAG_ALLOW_LIST | (FLAG_AUTHENTICATED if authenticated else 0)


def _routing_entries(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [
        {
            "Domain": str(e.get("Domain", "")),
            "Action": str(e.get("Action", "Inbound")),
            "Host": str(e.get("Host") or ""),
        }
        for e in entries
    ]


def inbound_routing(entries: list[dict[str, str]], inbound: Sequence[str]) -> list[dict[str, str]]:
    """The Routing list with every inbound domain "accepted as inbound", other rows kept."""
    wanted = {d.lower() for d in inbound}
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for entry in entries:
        domain = entry["Domain"].lower()
        if domain in wanted:
            if domain not in seen:
                out.append({"Domain": entry["Domain"], "Action": "Inbound", "Host": ""})
                seen.add(domain)
            continue
        out.append(entry)
    out.extend({"Domain": d, "Action": "Inbound", "Host": ""} for d in inbound if d not in seen)
    return out


def plan_exchange55(
    config: Mapping[str, Any], desired: RelayDesired, *, smtp_port: int | None = 25
) -> RelayPlan:
    b = _Builder(ExchangeGeneration.EXCHANGE55)
    params = config["Parameters"]
    routing = config.get("Routing") or {}

    allow_after = [net_mask(n) for n in desired.relay_allowed_networks]
    flags_before = params.get("RelayFlags")
    flags_after = relay_flags(flags_before, desired.relay_authenticated)
    writes: dict[str, Any] = {}
    changes: list[Change] = []
    if params.get("RelayAllowList") != allow_after:
        writes["RelayAllowList"] = allow_after
        changes.append(
            Change(
                "ims-relay-allow-list",
                f"{PARAMETERS_KEY}\\RelayAllowList",
                params.get("RelayAllowList"),
                allow_after,
                "only relay_allowed_networks may relay without authentication",
            )
        )
    if flags_before != flags_after:
        writes["RelayFlags"] = flags_after
        changes.append(
            Change(
                "ims-relay-flags",
                f"{PARAMETERS_KEY}\\RelayFlags",
                flags_before,
                flags_after,
                "routing restrictions by allow list"
                + (" and authenticated clients" if desired.relay_authenticated else ""),
            )
        )
    if writes:
        b.add(
            Step(
                "exchange55.write_config",
                {"Parameters": writes},
                "write the IMS routing restrictions",
                tuple(c.control for c in changes),
            ),
            *changes,
        )

    if routing.get("Source") == "unknown" or routing.get("RerouteIncoming") is None:
        b.warnings.append(
            "the IMS Routing tab could not be read (its storage is unverified): check by hand "
            "that 'Reroute incoming SMTP mail' is on and "
            + ", ".join(desired.inbound_domains)
            + " 'should be accepted as inbound' (KB Q169683)"
        )
    else:
        entries = _routing_entries(routing.get("RoutingList") or [])
        wanted = inbound_routing(entries, desired.inbound_domains)
        routing_write: dict[str, Any] = {}
        routing_changes: list[Change] = []
        if routing.get("RerouteIncoming") is not True:
            routing_write["RerouteIncoming"] = True
            routing_changes.append(
                Change(
                    "ims-reroute-incoming",
                    "IMS Routing: Reroute incoming SMTP mail",
                    routing.get("RerouteIncoming"),
                    True,
                    "'Do not reroute' answers 250 to every recipient and bounces later "
                    "(RFC 2505 section 1.5)",
                )
            )
        if entries != wanted:
            routing_write["RoutingList"] = wanted
            routing_changes.append(
                Change(
                    "ims-inbound-domains",
                    "IMS Routing: domains accepted as inbound",
                    entries,
                    wanted,
                    "mail to the inbound domains stays accepted once rerouting is on",
                )
            )
        if routing_write:
            b.add(
                Step(
                    "exchange55.write_config",
                    {"Routing": routing_write},
                    "turn rerouting on with the inbound domains",
                    tuple(c.control for c in routing_changes),
                ),
                *routing_changes,
            )
    if desired.reject_unknown_recipients:
        b.warnings.append(
            "reject_unknown_recipients: the Exchange 5.5 IMS cannot reject unknown recipients "
            "at RCPT time; it accepts and returns a non-delivery report"
        )
    if b.steps:
        b.add(
            restart_step(smtp_port),
            Change(
                "ims-restart",
                f"service {IMS_SERVICE}",
                "running with the previous parameters",
                "restarted with the new parameters",
                "the IMS reads its parameters when it starts (KB Q193922)",
            ),
        )
    return b.plan()


def plan_restore_exchange55(
    current: Mapping[str, Any], backup: Mapping[str, Any], *, smtp_port: int | None = 25
) -> RelayPlan:
    """Write back every backed-up value that differs, then restart the IMS."""
    b = _Builder(ExchangeGeneration.EXCHANGE55)
    now, then = current["Parameters"], backup["Parameters"]
    writes: dict[str, Any] = {}
    changes: list[Change] = []
    for name in ("RelayFlags", *IMS_LISTS):
        if now.get(name) != then.get(name):
            writes[name] = then.get(name)
            changes.append(
                Change("restore", f"{PARAMETERS_KEY}\\{name}", now.get(name), then.get(name), "")
            )
    if writes:
        b.add(Step("exchange55.write_config", {"Parameters": writes}, "restore"), *changes)
    routing_now = current.get("Routing") or {}
    routing_then = backup.get("Routing") or {}
    if routing_then.get("Source") not in (None, "unknown") and routing_now.get("Source") not in (
        None,
        "unknown",
    ):
        write: dict[str, Any] = {}
        routing_changes = []
        if routing_now.get("RerouteIncoming") != routing_then.get("RerouteIncoming"):
            write["RerouteIncoming"] = routing_then.get("RerouteIncoming")
            routing_changes.append(
                Change(
                    "restore",
                    "IMS Routing: Reroute incoming SMTP mail",
                    routing_now.get("RerouteIncoming"),
                    routing_then.get("RerouteIncoming"),
                    "",
                )
            )
        list_now = _routing_entries(routing_now.get("RoutingList") or [])
        list_then = _routing_entries(routing_then.get("RoutingList") or [])
        if list_now != list_then:
            write["RoutingList"] = list_then
            routing_changes.append(
                Change("restore", "IMS Routing: routing list", list_now, list_then, "")
            )
        if write:
            b.add(Step("exchange55.write_config", {"Routing": write}, "restore"), *routing_changes)
    if b.steps:
        b.add(
            restart_step(smtp_port),
            Change("restore", f"service {IMS_SERVICE}", "", "restarted", ""),
        )
    return b.plan()


# =========================================================================== Exchange 2013+


def flag_members(text: Any) -> list[str]:
    """A [Flags] enum's ToString() ("A, B"; "None") as its member names."""
    if isinstance(text, list):
        return [str(t) for t in text if str(t) != "None"]
    return [p.strip() for p in str(text or "").split(",") if p.strip() and p.strip() != "None"]


def _range_bounds(text: str) -> tuple[int, int, int] | None:
    """A RemoteIPRanges entry (address, CIDR or first-last) as (version, first, last)."""
    try:
        if "-" in text:
            first_text, last_text = text.split("-", 1)
            first, last = ipaddress.ip_address(first_text), ipaddress.ip_address(last_text)
            return first.version, int(first), int(last)
        net = ipaddress.ip_network(text, strict=False)
        return net.version, int(net.network_address), int(net.broadcast_address)
    except ValueError:
        return None


def _inside(ranges: Iterable[str], networks: Sequence[str]) -> bool:
    """Whether every remote range lies inside one of the allowed networks."""
    nets = [ipaddress.ip_network(n) for n in networks]
    for text in ranges:
        bounds = _range_bounds(text)
        if bounds is None:
            return False
        version, first, last = bounds
        if not any(
            n.version == version
            and int(n.network_address) <= first
            and last <= int(n.broadcast_address)
            for n in nets
        ):
            return False
    return True


def _same_ranges(current: Iterable[str], wanted: Iterable[str]) -> bool:
    return {_range_bounds(t) for t in current} == {_range_bounds(t) for t in wanted}


def _anonymous_relay_aces(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        p
        for p in config.get("AnonymousPermissions") or []
        if str(p.get("User", "")).lower() == ANONYMOUS.lower()
        and not p.get("Deny")
        and any(str(r).lower() == ACCEPT_ANY_RECIPIENT.lower() for r in p.get("ExtendedRights", []))
    ]


def _connector_identity(config: Mapping[str, Any], name: str) -> str:
    return f"{config.get('Server', '')}\\{name}"


def _set_connector(identity: str, props: Mapping[str, Any], summary: str) -> Step:
    return Step(
        "modern.write_config",
        {"Actions": [{"Cmdlet": "Set-ReceiveConnector", "Identity": identity, **props}]},
        summary,
    )


def _one(cmdlet: str, summary: str, **params: Any) -> Step:
    return Step("modern.write_config", {"Actions": [{"Cmdlet": cmdlet, **params}]}, summary)


def plan_modern(config: Mapping[str, Any], desired: RelayDesired) -> RelayPlan:
    b = _Builder(ExchangeGeneration.MODERN)
    connectors = list(config.get("ReceiveConnectors") or [])
    networks = list(desired.relay_allowed_networks)
    dedicated: Mapping[str, Any] | None = None
    dedicated_name = desired.relay_connector_name

    # 1. The dedicated relay connector first, so the allowed senders keep relaying.
    if networks:
        if dedicated_name is None:
            raise PlanError(
                "relay_connector_name: required on Exchange 2013 and later when "
                "relay_allowed_networks is not empty (the dedicated relay connector)"
            )
        dedicated = next(
            (c for c in connectors if str(c.get("Name", "")).lower() == dedicated_name.lower()),
            None,
        )
        bindings = list(desired.relay_connector_bindings)
        if dedicated is None:
            identity = _connector_identity(config, dedicated_name)
            after = {
                "Bindings": bindings,
                "RemoteIPRanges": networks,
                "PermissionGroups": "AnonymousUsers",
                "TransportRole": "FrontendTransport",
            }
            b.add(
                _one(
                    "New-ReceiveConnector",
                    f"create the dedicated relay connector {dedicated_name}",
                    Name=dedicated_name,
                    TransportRole="FrontendTransport",
                    Bindings=bindings,
                    RemoteIPRanges=networks,
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
            has_relay_ace = False
        else:
            identity = str(dedicated.get("Identity"))
            props: dict[str, Any] = {}
            changes: list[Change] = []
            if not _same_ranges(dedicated.get("RemoteIPRanges") or [], networks):
                props["RemoteIPRanges"] = networks
                changes.append(
                    Change(
                        "relay-connector-remote-ip-ranges",
                        identity,
                        dedicated.get("RemoteIPRanges"),
                        networks,
                        "the relay connector accepts exactly relay_allowed_networks",
                    )
                )
            if {x.lower() for x in dedicated.get("Bindings") or []} != {
                x.lower() for x in bindings
            }:
                props["Bindings"] = bindings
                changes.append(
                    Change(
                        "relay-connector-bindings",
                        identity,
                        dedicated.get("Bindings"),
                        bindings,
                        "relay_connector_bindings",
                    )
                )
            groups = flag_members(dedicated.get("PermissionGroups"))
            if "AnonymousUsers" not in groups:
                props["PermissionGroups"] = ", ".join([*groups, "AnonymousUsers"])
                changes.append(
                    Change(
                        "relay-connector-permission-groups",
                        identity,
                        dedicated.get("PermissionGroups"),
                        props["PermissionGroups"],
                        "the allowed senders connect anonymously",
                    )
                )
            if dedicated.get("Enabled") is False:
                props["Enabled"] = True
                changes.append(
                    Change("relay-connector-enabled", identity, False, True, "relay connector on")
                )
            if props:
                b.add(
                    _set_connector(identity, props, f"fix the relay connector {dedicated_name}"),
                    *changes,
                )
            has_relay_ace = any(
                str(p.get("Identity")).lower() == identity.lower()
                for p in _anonymous_relay_aces(config)
            )
        if not has_relay_ace:
            b.add(
                _one(
                    "Add-ADPermission",
                    f"let anonymous senders of {dedicated_name} relay",
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

    dedicated_identity = str(dedicated.get("Identity")).lower() if dedicated else None
    if dedicated is None and networks and dedicated_name is not None:
        dedicated_identity = _connector_identity(config, dedicated_name).lower()

    # 2. No anonymous relay anywhere else.
    for ace in _anonymous_relay_aces(config):
        identity = str(ace.get("Identity"))
        if identity.lower() == dedicated_identity:
            continue
        if ace.get("IsInherited"):
            b.warnings.append(
                f"{identity}: anonymous {ACCEPT_ANY_RECIPIENT} is inherited from a parent "
                "object; remove it there (it cannot be removed on the connector)"
            )
            continue
        b.add(
            _one(
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

    # 3. No ExternalAuthoritative on Internet-facing connectors (remote ranges beyond the
    #    allowed networks): it makes every client an Exchange server that may relay.
    for conn in connectors:
        identity = str(conn.get("Identity"))
        mechanisms = flag_members(conn.get("AuthMechanism"))
        if identity.lower() == dedicated_identity or EXTERNAL_AUTHORITATIVE not in mechanisms:
            continue
        if networks and _inside(conn.get("RemoteIPRanges") or [], networks):
            continue
        mechanism = ", ".join(m for m in mechanisms if m != EXTERNAL_AUTHORITATIVE) or "None"
        b.add(
            _set_connector(
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

    # 4. Accepted domains: inbound ones Authoritative; no "*", no unlisted relay domain.
    domains = list(config.get("AcceptedDomains") or [])
    by_name = {str(d.get("DomainName", "")).lower(): d for d in domains}
    for name in desired.inbound_domains:
        found = by_name.get(name)
        if found is None:
            b.add(
                _one(
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
                _one(
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
    listed = set(desired.inbound_domains) | set(desired.relay_domains)
    for domain in domains:
        name = str(domain.get("DomainName", "")).lower()
        if name in listed:
            continue
        if name != "*" and domain.get("DomainType") not in RELAY_DOMAIN_TYPES:
            continue
        reason = (
            "an accepted domain '*' relays for everyone (HealthChecker OpenRelayDomain)"
            if name == "*"
            else "a relay domain the inventory does not list"
        )
        if domain.get("Default"):
            if name == "*":
                raise PlanError("the default accepted domain is '*': make another one default")
            b.add(
                _one(
                    "Set-AcceptedDomain",
                    f"make {name} authoritative",
                    Identity=str(domain.get("Name")),
                    DomainType="Authoritative",
                ),
                Change("no-relay-domain", name, domain.get("DomainType"), "Authoritative", reason),
            )
            continue
        b.add(
            _one("Remove-AcceptedDomain", f"remove {name}", Identity=str(domain.get("Name"))),
            Change("no-relay-domain", name, domain.get("DomainType"), None, reason),
        )

    # 5. Unknown recipients refused at RCPT time.
    rfc = config.get("RecipientFilterConfig") or {}
    if desired.reject_unknown_recipients and not (
        rfc.get("Enabled") is True and rfc.get("RecipientValidationEnabled") is True
    ):
        b.add(
            _one(
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
    if not desired.relay_authenticated:
        b.warnings.append(
            "relay_authenticated is false: authenticated submission (ExchangeUsers on the "
            "client connectors) is not changed on Exchange 2013 and later"
        )
    return b.plan()


def _connector_props(conn: Mapping[str, Any]) -> dict[str, Any]:
    return {name: conn.get(name) for name in RECEIVE_CONNECTOR_PROPERTIES}


def _ace_key(ace: Mapping[str, Any]) -> tuple[str, str, bool]:
    rights = ace.get("ExtendedRights") or [""]
    return (str(ace.get("Identity")), str(rights[0]), bool(ace.get("Deny")))


def plan_restore_modern(current: Mapping[str, Any], backup: Mapping[str, Any]) -> RelayPlan:
    """The way back to `backup`. Connectors, domains and the filter first; once they match,
    the explicit ANONYMOUS LOGON entries (setting PermissionGroups rewrites the group ones,
    so call again after applying until the plan is empty)."""
    b = _Builder(ExchangeGeneration.MODERN)
    now = {str(c["Name"]).lower(): c for c in current.get("ReceiveConnectors") or []}
    then = {str(c["Name"]).lower(): c for c in backup.get("ReceiveConnectors") or []}
    for key, conn in now.items():
        if key not in then:
            b.add(
                _one("Remove-ReceiveConnector", "restore", Identity=str(conn["Identity"])),
                Change("restore", str(conn["Identity"]), _connector_props(conn), None, ""),
            )
    for key, conn in then.items():
        if key in now:
            old = _connector_props(now[key])
            differing = {k: v for k, v in _connector_props(conn).items() if old.get(k) != v}
            if differing:
                b.add(
                    _set_connector(str(conn["Identity"]), differing, "restore"),
                    Change("restore", str(conn["Identity"]), old, _connector_props(conn), ""),
                )
    for key, conn in then.items():
        if key not in now:
            b.add(
                _one(
                    "New-ReceiveConnector",
                    "restore",
                    Name=str(conn["Name"]),
                    TransportRole=str(conn.get("TransportRole")),
                    **{k: v for k, v in _connector_props(conn).items() if v is not None},
                ),
                Change("restore", str(conn["Identity"]), None, _connector_props(conn), ""),
            )

    dom_now = {str(d["Name"]).lower(): d for d in current.get("AcceptedDomains") or []}
    dom_then = {str(d["Name"]).lower(): d for d in backup.get("AcceptedDomains") or []}
    for key, dom in dom_then.items():
        if key not in dom_now:
            b.add(
                _one(
                    "New-AcceptedDomain",
                    "restore",
                    Name=str(dom["Name"]),
                    DomainName=str(dom["DomainName"]),
                    DomainType=str(dom["DomainType"]),
                ),
                Change("restore", str(dom["DomainName"]), None, dom.get("DomainType"), ""),
            )
    for key, dom in dom_then.items():
        present = dom_now.get(key)
        if present is not None and present.get("DomainType") != dom.get("DomainType"):
            b.add(
                _one(
                    "Set-AcceptedDomain",
                    "restore",
                    Identity=str(dom["Name"]),
                    DomainType=str(dom["DomainType"]),
                ),
                Change(
                    "restore", str(dom["DomainName"]), old.get("DomainType"), dom["DomainType"], ""
                ),
            )
        if dom.get("Default") and not (present or {}).get("Default"):
            b.add(
                _one("Set-AcceptedDomain", "restore", Identity=str(dom["Name"]), MakeDefault=True),
                Change("restore", str(dom["DomainName"]), "not default", "default", ""),
            )
    for key, dom in dom_now.items():
        if key not in dom_then:
            b.add(
                _one("Remove-AcceptedDomain", "restore", Identity=str(dom["Name"])),
                Change("restore", str(dom["DomainName"]), dom.get("DomainType"), None, ""),
            )
    rfc_now = current.get("RecipientFilterConfig") or {}
    rfc_then = backup.get("RecipientFilterConfig") or {}
    if rfc_now != rfc_then:
        b.add(
            _one("Set-RecipientFilterConfig", "restore", **dict(rfc_then)),
            Change("restore", "RecipientFilterConfig", rfc_now, rfc_then, ""),
        )
    if b.steps:
        return b.plan()

    aces_now = {
        _ace_key(a) for a in current.get("AnonymousPermissions") or [] if not a.get("IsInherited")
    }
    aces_then = {
        _ace_key(a) for a in backup.get("AnonymousPermissions") or [] if not a.get("IsInherited")
    }
    for identity, right, deny in sorted(aces_now - aces_then):
        b.add(
            _one(
                "Remove-ADPermission",
                "restore",
                Identity=identity,
                User=ANONYMOUS,
                ExtendedRights=[right],
                Deny=deny,
            ),
            Change("restore", identity, f"{ANONYMOUS}: {right}", None, ""),
        )
    for identity, right, deny in sorted(aces_then - aces_now):
        b.add(
            _one(
                "Add-ADPermission",
                "restore",
                Identity=identity,
                User=ANONYMOUS,
                ExtendedRights=[right],
                Deny=deny,
            ),
            Change("restore", identity, None, f"{ANONYMOUS}: {right}", ""),
        )
    return b.plan()


# =========================================================================== entry points


def plan_relay(
    platform: str, config: Mapping[str, Any], desired: RelayDesired, *, smtp_port: int | None = 25
) -> RelayPlan:
    if platform == ExchangeGeneration.EXCHANGE55:
        return plan_exchange55(config, desired, smtp_port=smtp_port)
    if platform == ExchangeGeneration.MODERN:
        return plan_modern(config, desired)
    raise PlanError(f"no relay planner for platform {platform!r}")


def plan_restore(
    platform: str,
    current: Mapping[str, Any],
    backup: Mapping[str, Any],
    *,
    smtp_port: int | None = 25,
) -> RelayPlan:
    if platform == ExchangeGeneration.EXCHANGE55:
        return plan_restore_exchange55(current, backup, smtp_port=smtp_port)
    if platform == ExchangeGeneration.MODERN:
        return plan_restore_modern(current, backup)
    raise PlanError(f"no restore planner for platform {platform!r}")
