"""Exchange analysis: pure judgements over `ExchangeFacts` — relay exposure and patch status.

The analysers' room (compare HealthChecker's analysers over its collected data): no I/O, no
WinRM, only records in and records out, so each rule is tested on hand-built facts.

`relay_exposure` lists every setting that lets anonymous clients relay, each finding with a
reason and a source, and gives the host a verdict: open when a finding opens relay to the
world, inconclusive when a deciding fact is unknown, closed otherwise. Findings that do not
open the relay by themselves (a relay-type accepted domain, recipient validation off) are
reported with `opens_relay` false. `patch_status` says whether the relay fix is in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from relayguard.exchange.catalog import Catalog, InvalidVersionError, load_catalog, parse_version
from relayguard.exchange.facts import (
    Exchange55Relay,
    ExchangeFacts,
    ModernRelay,
    ReceiveConnector,
)
from relayguard.exchange.patch_level import PatchLevel, PatchPolicy, patch_level
from relayguard.vocabulary import Platform, Verdict

# A relay grant wider than this many prefix bits counts as "everyone" (a /8 allow list lets a
# whole network of strangers relay). Callers with a different policy pass their own.
DEFAULT_MAX_GRANT_PREFIX = 16

# KB Q193922: RelayFlags bits of the IMS routing restrictions.
RELAY_DENY = 1
RELAY_ALLOW = 2
RELAY_LOCAL_IP = 4
RELAY_AUTHENTICATED = 8

ACCEPT_ANY_RECIPIENT = "ms-Exch-SMTP-Accept-Any-Recipient"
ANONYMOUS_LOGON = "NT AUTHORITY\\ANONYMOUS LOGON"
RELAY_DOMAIN_TYPES = ("InternalRelay", "ExternalRelay")

SRC_Q193922 = "KB Q193922 (IMS routing restrictions in the registry)"
SRC_Q169683 = "KB Q169683 / Q259531 (IMS Routing tab); RFC 2505 sections 1.5, 1.6"
SRC_Q237927 = "KB Q237927 (MS99-027, encapsulated SMTP address relay)"
SRC_ANON_RIGHT = (
    "ms-Exch-SMTP-Accept-Any-Recipient granted to ANONYMOUS LOGON (Add-ADPermission; "
    "learn.microsoft.com 'Allow anonymous relay on Exchange servers')"
)
SRC_EXTERNAL_AUTH = (
    "AuthMechanism ExternalAuthoritative with PermissionGroups ExchangeServers "
    "(learn.microsoft.com 'Allow anonymous relay on Exchange servers')"
)
SRC_STAR_DOMAIN = "accepted domain '*' (CSS-Exchange HealthChecker OpenRelayDomain)"
SRC_RELAY_DOMAIN = "accepted domain types InternalRelay/ExternalRelay (learn.microsoft.com)"
SRC_VALIDATION = "recipient filtering, RecipientValidationEnabled (learn.microsoft.com)"


class PatchState(StrEnum):
    PRESENT = "present"
    MISSING = "missing"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ExposureFinding:
    """One setting that lets (or may let) anonymous clients relay."""

    id: str  # e.g. "anonymous-accept-any-recipient"
    subject: str  # the connector identity, registry value or accepted domain concerned
    opens_relay: bool  # true: anonymous clients from the Internet can relay through it
    reason: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject": self.subject,
            "opens_relay": self.opens_relay,
            "reason": self.reason,
            "source": self.source,
        }


@dataclass(frozen=True)
class RelayExposure:
    verdict: Verdict
    findings: tuple[ExposureFinding, ...]
    unknowns: tuple[str, ...]  # facts that could not be established and would decide

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "findings": [f.to_dict() for f in self.findings],
            "unknowns": list(self.unknowns),
        }


@dataclass(frozen=True)
class PatchStatus:
    state: PatchState
    reasons: tuple[str, ...]
    level: str | None
    security_update: str | None
    supported: bool | None
    # 2013 and later: the build compliance requires and the patch level (patch_level)
    required: str | None = None
    detail: PatchLevel | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "reasons": list(self.reasons),
            "level": self.level,
            "security_update": self.security_update,
            "supported": self.supported,
            "required": self.required,
            "patch_level": None if self.detail is None else self.detail.to_dict(),
        }


# --- address ranges ------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_net_mask(entry: str) -> ipaddress.IPv4Network | None:
    """An IMS list entry "net;mask" (KB Q193922), or None when malformed (the IMS skips it)."""
    parts = entry.strip().split(";")
    if len(parts) != 2:
        return None
    try:
        return ipaddress.IPv4Network(f"{parts[0].strip()}/{parts[1].strip()}", strict=False)
    except ValueError:
        return None


def parse_remote_range(text: str) -> list[Network] | None:
    """A connector RemoteIPRanges item: "a.b.c.d", "a.b.c.0/24" or "first-last"."""
    try:
        if "-" in text:
            first, last = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
            return list(ipaddress.summarize_address_range(first, last))
        return [ipaddress.ip_network(text.strip(), strict=False)]
    except (ValueError, TypeError):
        return None


def _too_wide(networks: Iterable[Network], max_prefix: int) -> bool:
    """Wider than /max_prefix for IPv4 (the IPv6 bound is scaled to /(max_prefix*4))."""
    networks = list(networks)
    for network in networks:
        limit = max_prefix if network.version == 4 else max_prefix * 4
        if network.prefixlen < limit:
            return True
    # A range split into many blocks can be wide without any single block being wide.
    total4: int = sum(n.num_addresses for n in networks if n.version == 4)
    return total4 > 1 << (32 - max_prefix)


def _world_ranges(connector: ReceiveConnector, max_prefix: int) -> bool | None:
    """Whether a connector accepts clients from too wide a range (None: unreadable range)."""
    networks: list[Network] = []
    for item in connector.remote_ip_ranges:
        parsed = parse_remote_range(item)
        if parsed is None:
            return None
        networks.extend(parsed)
    return _too_wide(networks, max_prefix)


# --- Exchange 5.5 --------------------------------------------------------------------------


def _exchange55_findings(
    relay: Exchange55Relay, max_prefix: int
) -> tuple[list[ExposureFinding], list[str]]:
    findings: list[ExposureFinding] = []
    unknowns: list[str] = []
    flags = relay.relay_flags
    subject = f"{relay.parameters_path}\\RelayFlags"
    if not flags:
        findings.append(
            ExposureFinding(
                "ims-no-routing-restrictions",
                subject,
                True,
                "RelayFlags is "
                + ("absent" if flags is None else "0")
                + ": no routing restrictions, every client may relay",
                SRC_Q193922,
            )
        )
    else:
        grants = flags & (RELAY_ALLOW | RELAY_LOCAL_IP | RELAY_AUTHENTICATED)
        if not grants:
            findings.append(
                ExposureFinding(
                    "ims-deny-list-only",
                    subject,
                    True,
                    f"RelayFlags is {flags}: a deny list only, every client not on it may relay",
                    SRC_Q193922,
                )
            )
        if flags & RELAY_ALLOW:
            findings.extend(_allow_list_findings(relay, max_prefix))
        if flags & RELAY_LOCAL_IP and relay.relay_local_ip_list:
            findings.append(
                ExposureFinding(
                    "ims-local-ip-list",
                    f"{relay.parameters_path}\\RelayLocalIPList",
                    False,
                    "every client connecting to one of the server addresses "
                    + ", ".join(relay.relay_local_ip_list)
                    + " may relay; open if one of them faces the Internet",
                    SRC_Q193922,
                )
            )
    if relay.reroute_incoming is None:
        unknowns.append(
            "the IMS Routing tab (reroute switch, inbound domains) could not be read "
            f"(source: {relay.routing_source})"
        )
    elif not relay.reroute_incoming:
        findings.append(
            ExposureFinding(
                "ims-do-not-reroute",
                "IMS Routing tab: Do not reroute incoming SMTP mail",
                True,
                "'Do not reroute' accepts RCPT for every domain and sends an NDR after DATA: "
                "to any client it is an open relay at RCPT time",
                SRC_Q169683,
            )
        )
    return findings, unknowns


def _allow_list_findings(relay: Exchange55Relay, max_prefix: int) -> list[ExposureFinding]:
    out: list[ExposureFinding] = []
    subject = f"{relay.parameters_path}\\RelayAllowList"
    for entry in relay.relay_allow_list or ():
        network = parse_net_mask(entry)
        if network is None:
            continue  # malformed lines are skipped by the IMS: they grant nothing
        if _too_wide([network], max_prefix):
            out.append(
                ExposureFinding(
                    "ims-allow-list-too-wide",
                    subject,
                    True,
                    f"allow-list entry {entry!r} ({network}) lets a network wider than "
                    f"/{max_prefix} relay",
                    SRC_Q193922,
                )
            )
    return out


def _encapsulation_finding(facts: ExchangeFacts) -> ExposureFinding | None:
    status = patch_status(facts)
    if status.state is not PatchState.MISSING:
        return None
    missing = [] if facts.build is None else [f for f in facts.build.fixes if f.present is False]
    basis = "; ".join(f"{f.kb}: {f.basis}" for f in missing[:1]) or "; ".join(status.reasons)
    return ExposureFinding(
        "ims-encapsulated-address-relay",
        "msexcimc.exe " + ("unknown" if facts.msexcimc is None else facts.msexcimc.version),
        True,
        "the IMS relays IMCEASMTP- encapsulated addresses at a local domain despite routing "
        f"restrictions ({basis})",
        SRC_Q237927,
    )


# --- Exchange 2013 and later ---------------------------------------------------------------


def _modern_findings(
    modern: ModernRelay, max_prefix: int
) -> tuple[list[ExposureFinding], list[str]]:
    findings: list[ExposureFinding] = []
    unknowns: list[str] = []
    by_identity = {c.identity.lower(): c for c in modern.receive_connectors}
    denied = {
        p.identity.lower()
        for p in modern.anonymous_permissions
        if p.deny and _is_anonymous(p.user) and _has_relay_right(p.extended_rights)
    }
    flagged: set[str] = set()
    for ace in modern.anonymous_permissions:
        key = ace.identity.lower()
        if ace.deny or not _is_anonymous(ace.user) or not _has_relay_right(ace.extended_rights):
            continue
        if key in denied or key in flagged:
            continue  # a deny ACE of the same right wins over every allow
        flagged.add(key)
        connector = by_identity.get(key)
        if connector is not None and not connector.enabled:
            continue
        wide = None if connector is None else _world_ranges(connector, max_prefix)
        inherited = " (inherited)" if ace.is_inherited else ""
        if wide is None:
            unknowns.append(f"remote IP ranges of {ace.identity} could not be read")
        findings.append(
            ExposureFinding(
                "anonymous-accept-any-recipient",
                ace.identity,
                bool(wide),
                f"ANONYMOUS LOGON holds {ACCEPT_ANY_RECIPIENT}{inherited}; "
                + (
                    "its RemoteIPRanges reach anyone, so any client may relay"
                    if wide
                    else "limited to its RemoteIPRanges "
                    + ", ".join(connector.remote_ip_ranges if connector else ())
                    + " (a dedicated relay connector)"
                ),
                SRC_ANON_RIGHT,
            )
        )
    for connector in modern.receive_connectors:
        if not connector.enabled or "ExternalAuthoritative" not in connector.auth_mechanism:
            continue
        wide = _world_ranges(connector, max_prefix)
        if wide is None:
            unknowns.append(f"remote IP ranges of {connector.identity} could not be read")
        findings.append(
            ExposureFinding(
                "external-authoritative",
                connector.identity,
                bool(wide),
                "AuthMechanism ExternalAuthoritative treats every client as an authenticated "
                "Exchange server (relay included); "
                + (
                    "the connector faces the Internet (RemoteIPRanges reach anyone)"
                    if wide
                    else "limited to " + ", ".join(connector.remote_ip_ranges)
                ),
                SRC_EXTERNAL_AUTH,
            )
        )
    for domain in modern.accepted_domains:
        name = domain.domain_name.strip()
        if name == "*":
            findings.append(
                ExposureFinding(
                    "accepted-domain-star",
                    domain.name,
                    True,
                    f"accepted domain '*' ({domain.domain_type}) accepts mail for every domain: "
                    "the organisation relays for anyone",
                    SRC_STAR_DOMAIN,
                )
            )
        elif domain.domain_type in RELAY_DOMAIN_TYPES:
            findings.append(
                ExposureFinding(
                    "accepted-domain-relay",
                    domain.name,
                    False,
                    f"accepted domain {name} is {domain.domain_type}: anyone may send mail "
                    "through this server to it; keep it only if the organisation relays for it",
                    SRC_RELAY_DOMAIN,
                )
            )
    rf = modern.recipient_filter
    if not (rf.enabled and rf.recipient_validation_enabled):
        findings.append(
            ExposureFinding(
                "recipient-validation-off",
                "RecipientFilterConfig",
                False,
                "unknown recipients at the accepted domains are accepted and bounced later "
                "(backscatter), not refused at RCPT time",
                SRC_VALIDATION,
            )
        )
    return findings, unknowns


def _is_anonymous(user: str) -> bool:
    return user.strip().lower() == ANONYMOUS_LOGON.lower()


def _has_relay_right(rights: Iterable[str]) -> bool:
    return any(r.strip().lower() == ACCEPT_ANY_RECIPIENT.lower() for r in rights)


# --- the judgements -----------------------------------------------------------------------


def relay_exposure(
    facts: ExchangeFacts, *, max_grant_prefix: int = DEFAULT_MAX_GRANT_PREFIX
) -> RelayExposure:
    """Which connectors or settings let anonymous clients relay, and the host's verdict."""
    findings: list[ExposureFinding] = []
    unknowns: list[str] = []
    if facts.platform is Platform.EXCHANGE55:
        if facts.exchange55 is None:
            unknowns.append("the IMS relay configuration was not read")
        else:
            found, unknown = _exchange55_findings(facts.exchange55, max_grant_prefix)
            findings += found
            unknowns += unknown
        encapsulation = _encapsulation_finding(facts)
        if encapsulation is not None:
            findings.append(encapsulation)
    elif facts.modern is not None:
        found, unknown = _modern_findings(facts.modern, max_grant_prefix)
        findings += found
        unknowns += unknown
    else:
        unknowns.append("no relay configuration was read (Exchange not detected)")
    if any(f.opens_relay for f in findings):
        verdict = Verdict.OPEN
    elif unknowns:
        verdict = Verdict.INCONCLUSIVE
    else:
        verdict = Verdict.CLOSED
    return RelayExposure(verdict, tuple(findings), tuple(unknowns))


def patch_status(
    facts: ExchangeFacts,
    *,
    policy: PatchPolicy = PatchPolicy.LATEST,
    as_of: date | None = None,
    catalog: Catalog | None = None,
) -> PatchStatus:
    """Exchange 5.5: msexcimc.exe >= 5.5.2650.1 (KB Q237927, threshold from the catalog);
    2013 and later: the patch level against the catalog under `policy` (`patch_level`):
    present only at the newest update of an accepted CU. `as_of` is the day the product's
    lifecycle is judged on (reported, never deciding); `catalog` defaults to builds.yml."""
    build = facts.build
    level = None if build is None else build.level
    update = None if build is None else build.security_update
    supported = None if build is None else build.supported

    def status(
        state: PatchState, reasons: Iterable[str], detail: PatchLevel | None = None
    ) -> PatchStatus:
        required = None if detail is None else detail.required
        return PatchStatus(state, tuple(reasons), level, update, supported, required, detail)

    if build is None or facts.version is None:
        return status(PatchState.UNKNOWN, ["the build could not be read"])
    if facts.platform is Platform.EXCHANGE55:
        reasons = [f"{f.id} ({f.kb}): {f.basis}" for f in build.fixes]
        if build.relay_fix is True:
            return status(PatchState.PRESENT, reasons)
        if build.relay_fix is False:
            return status(PatchState.MISSING, reasons)
        return status(PatchState.UNKNOWN, reasons or ["no relay fix evidence for this build"])
    try:
        detail = patch_level(
            catalog or load_catalog(), parse_version(facts.version), policy=policy, as_of=as_of
        )
    except InvalidVersionError:
        detail = None
    if detail is None:
        return status(PatchState.UNKNOWN, [f"{facts.version} is not an Exchange 2013+ build"])
    reasons = list(detail.reasons)
    if not build.known:
        nearest = ", ".join(v for v in (build.nearest_below, build.nearest_above) if v)
        reasons.insert(
            0, f"{build.version} is not in the catalog (nearest known: {nearest or 'none'})"
        )
    state = {True: PatchState.PRESENT, False: PatchState.MISSING, None: PatchState.UNKNOWN}
    return status(state[detail.compliant], reasons, detail)
