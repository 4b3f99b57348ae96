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
from typing import Any

from relayguard.exchange.desired import RelayDesired
from relayguard.exchange.plan_common import (
    Builder,
    Change,
    PlanError,
    RelayPlan,
    Step,
    flag_members,
)
from relayguard.exchange.plan_modern import plan_modern, plan_restore_modern
from relayguard.vocabulary import ExchangeGeneration

__all__ = [
    "Change",
    "PlanError",
    "RelayPlan",
    "Step",
    "flag_members",
    "net_mask",
    "plan_exchange55",
    "plan_modern",
    "plan_relay",
    "plan_restore",
    "plan_restore_exchange55",
    "plan_restore_modern",
    "relay_flags",
]

PARAMETERS_KEY = "HKLM:\\SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC\\Parameters"
IMS_SERVICE = "MSExchangeIMC"
IMS_LISTS = ("RelayAllowList", "RelayDenyList", "RelayLocalIPList")

# RelayFlags bits (KB Q193922)
FLAG_DENY_LIST = 1
FLAG_ALLOW_LIST = 2
FLAG_LOCAL_IP_LIST = 4
FLAG_AUTHENTICATED = 8


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
    b = Builder(ExchangeGeneration.EXCHANGE55)
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
    b = Builder(ExchangeGeneration.EXCHANGE55)
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
