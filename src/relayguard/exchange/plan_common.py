"""What the Exchange relay planners share: the plan's records and the helpers over the
configuration documents (docs/payloads.md). Pure.

A `RelayPlan` is the changes (control, target, before, after, reason) for the operator and the
report, and the write steps (payload op + parameters) in the order they are safe to apply.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from relayguard.vocabulary import RECEIVE_CONNECTOR_PROPERTIES, ExchangeGeneration

ANONYMOUS = "NT AUTHORITY\\ANONYMOUS LOGON"
ACCEPT_ANY_RECIPIENT = "ms-Exch-SMTP-Accept-Any-Recipient"
EXTERNAL_AUTHORITATIVE = "ExternalAuthoritative"
RELAY_DOMAIN_TYPES = ("InternalRelay", "ExternalRelay")
CONNECTOR_PROPERTIES = RECEIVE_CONNECTOR_PROPERTIES


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
class Builder:
    platform: ExchangeGeneration
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


def flag_members(text: Any) -> list[str]:
    """A [Flags] enum's ToString() ("A, B"; "None") as its member names."""
    if isinstance(text, list):
        return [str(t) for t in text if str(t) != "None"]
    return [p.strip() for p in str(text or "").split(",") if p.strip() and p.strip() != "None"]


def range_bounds(text: str) -> tuple[int, int, int] | None:
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


def inside(ranges: Iterable[str], networks: Sequence[str]) -> bool:
    """Whether every remote range lies inside one of the allowed networks."""
    nets = [ipaddress.ip_network(n) for n in networks]
    for text in ranges:
        bounds = range_bounds(text)
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


def same_ranges(current: Iterable[str], wanted: Iterable[str]) -> bool:
    return {range_bounds(t) for t in current} == {range_bounds(t) for t in wanted}


def anonymous_relay_aces(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        p
        for p in config.get("AnonymousPermissions") or []
        if str(p.get("User", "")).lower() == ANONYMOUS.lower()
        and not p.get("Deny")
        and any(str(r).lower() == ACCEPT_ANY_RECIPIENT.lower() for r in p.get("ExtendedRights", []))
    ]


def connector_identity(config: Mapping[str, Any], name: str) -> str:
    return f"{config.get('Server', '')}\\{name}"


def set_connector(identity: str, props: Mapping[str, Any], summary: str) -> Step:
    return Step(
        "modern.write_config",
        {"Actions": [{"Cmdlet": "Set-ReceiveConnector", "Identity": identity, **props}]},
        summary,
    )


def one(cmdlet: str, summary: str, **params: Any) -> Step:
    return Step("modern.write_config", {"Actions": [{"Cmdlet": cmdlet, **params}]}, summary)
