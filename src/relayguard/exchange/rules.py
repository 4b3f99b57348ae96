"""The rule table of Exchange 2013 and later: what lets anonymous clients relay. Pure.

One row per rule: its id, the facts it reads, whether an unknown result leaves the relay
verdict undecided, its primary source, and a check over typed facts (`ModernRelay`) that
returns one finding per subject — pass, fail or unknown. `analysis.relay_exposure` runs the
table; `relayguard facts` (live or `--capture`), the modules and the report read its findings.
A new rule is a new row and its tests.

Sources: docs/sources.md#learn-anonymous-relay, #learn-receive-connectors,
#learn-accepted-domains, #healthchecker-openrelaydomain, #public-suffix-list,
#learn-recipient-filtering, #learn-antispam-mailbox-servers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

from publicsuffixlist import PublicSuffixList

from relayguard.exchange.facts import AdPermission, ModernRelay, ReceiveConnector
from relayguard.exchange.findings import ExposureFinding
from relayguard.vocabulary import RuleResult

ACCEPT_ANY_RECIPIENT = "ms-Exch-SMTP-Accept-Any-Recipient"
ANONYMOUS_LOGON = "NT AUTHORITY\\ANONYMOUS LOGON"
RELAY_DOMAIN_TYPES = ("InternalRelay", "ExternalRelay")
RECIPIENT_FILTER_AGENT = "recipient filter agent"

SRC_ANON_RIGHT = (
    "ms-Exch-SMTP-Accept-Any-Recipient granted to ANONYMOUS LOGON (Add-ADPermission; "
    "learn.microsoft.com 'Allow anonymous relay on Exchange servers')"
)
SRC_EXTERNAL_AUTH = (
    "AuthMechanism ExternalAuthoritative with PermissionGroups ExchangeServers "
    "(learn.microsoft.com 'Allow anonymous relay on Exchange servers')"
)
SRC_STAR_DOMAIN = "accepted domain '*' (CSS-Exchange HealthChecker OpenRelayDomain)"
SRC_PUBLIC_WILDCARD = (
    "a relay accepted domain '*.<public suffix>' (learn.microsoft.com 'Accepted domains in "
    "Exchange Server'; the Public Suffix List)"
)
SRC_RELAY_DOMAIN = "accepted domain types InternalRelay/ExternalRelay (learn.microsoft.com)"
SRC_VALIDATION = (
    "recipient filtering, RecipientValidationEnabled; the anti-spam agents on Mailbox servers "
    "(learn.microsoft.com 'Enable antispam functionality on Mailbox servers')"
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Check = Callable[[ModernRelay, int], list[ExposureFinding]]


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    reads: tuple[str, ...]  # the ModernRelay fields the check reads
    decides_relay: bool  # an unknown result leaves the relay verdict inconclusive
    source: str
    check: Check


# --- address ranges ------------------------------------------------------------------------


def parse_remote_range(text: str) -> list[Network] | None:
    """A connector RemoteIPRanges item: "a.b.c.d", "a.b.c.0/24" or "first-last"."""
    try:
        if "-" in text:
            first, last = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
            return list(ipaddress.summarize_address_range(first, last))
        return [ipaddress.ip_network(text.strip(), strict=False)]
    except (ValueError, TypeError):
        return None


def too_wide(networks: Iterable[Network], max_prefix: int) -> bool:
    """Wider than /max_prefix for IPv4 (the IPv6 bound is scaled to /(max_prefix*4))."""
    networks = list(networks)
    for network in networks:
        limit = max_prefix if network.version == 4 else max_prefix * 4
        if network.prefixlen < limit:
            return True
    # A range split into many blocks can be wide without any single block being wide.
    total4: int = sum(n.num_addresses for n in networks if n.version == 4)
    return total4 > 1 << (32 - max_prefix)


def world_ranges(connector: ReceiveConnector, max_prefix: int) -> bool | None:
    """Whether a connector accepts clients from too wide a range (None: unreadable range)."""
    networks: list[Network] = []
    for item in connector.remote_ip_ranges:
        parsed = parse_remote_range(item)
        if parsed is None:
            return None
        networks.extend(parsed)
    return too_wide(networks, max_prefix)


# --- helpers ---------------------------------------------------------------------------------


def _passed(rule: str, subject: str, reason: str, source: str) -> ExposureFinding:
    return ExposureFinding(rule, subject, False, reason, source, RuleResult.PASS)


def _unknown(rule: str, subject: str, reason: str, source: str) -> ExposureFinding:
    return ExposureFinding(rule, subject, False, reason, source, RuleResult.UNKNOWN)


def _is_anonymous(user: str) -> bool:
    return user.strip().lower() == ANONYMOUS_LOGON.lower()


def _has_relay_right(rights: Iterable[str]) -> bool:
    return any(r.strip().lower() == ACCEPT_ANY_RECIPIENT.lower() for r in rights)


def _relay_aces(aces: Iterable[AdPermission]) -> list[AdPermission]:
    """Allow ACEs of the relay right to ANONYMOUS LOGON, one per connector; a deny of the
    same right on the connector wins over every allow."""
    aces = [a for a in aces if _is_anonymous(a.user) and _has_relay_right(a.extended_rights)]
    denied = {a.identity.lower() for a in aces if a.deny}
    seen: set[str] = set()
    out = []
    for ace in aces:
        key = ace.identity.lower()
        if ace.deny or key in denied or key in seen:
            continue
        seen.add(key)
        out.append(ace)
    return out


def _range_text(connector: ReceiveConnector | None) -> str:
    return ", ".join(connector.remote_ip_ranges) if connector else "unknown"


# --- the checks ------------------------------------------------------------------------------


def check_anonymous_relay(modern: ModernRelay, max_prefix: int) -> list[ExposureFinding]:
    rule, subject = "anonymous-accept-any-recipient", "receive connectors (ANONYMOUS LOGON)"
    if modern.anonymous_permissions is None or modern.receive_connectors is None:
        reason = "the receive connectors or their ANONYMOUS LOGON permissions were not read"
        return [_unknown(rule, subject, reason, SRC_ANON_RIGHT)]
    by_identity = {c.identity.lower(): c for c in modern.receive_connectors}
    out: list[ExposureFinding] = []
    for ace in _relay_aces(modern.anonymous_permissions):
        connector = by_identity.get(ace.identity.lower())
        if connector is not None and not connector.enabled:
            continue
        wide = None if connector is None else world_ranges(connector, max_prefix)
        if wide is None:
            reason = "its remote IP ranges could not be read"
            out.append(_unknown(rule, ace.identity, reason, SRC_ANON_RIGHT))
        inherited = " (inherited)" if ace.is_inherited else ""
        scope = (
            "its RemoteIPRanges reach anyone, so any client may relay"
            if wide
            else f"limited to its RemoteIPRanges {_range_text(connector)} (a dedicated relay "
            "connector)"
        )
        reason = f"ANONYMOUS LOGON holds {ACCEPT_ANY_RECIPIENT}{inherited}; {scope}"
        if wide is False:  # a dedicated relay connector: the desired ranges are the plan's
            out.append(_passed(rule, ace.identity, reason, SRC_ANON_RIGHT))
        else:
            out.append(ExposureFinding(rule, ace.identity, bool(wide), reason, SRC_ANON_RIGHT))
    if not out:
        reason = f"no enabled connector grants {ACCEPT_ANY_RECIPIENT} to ANONYMOUS LOGON"
        out.append(_passed(rule, subject, reason, SRC_ANON_RIGHT))
    return out


def check_external_authoritative(modern: ModernRelay, max_prefix: int) -> list[ExposureFinding]:
    rule = "external-authoritative"
    if modern.receive_connectors is None:
        reason = "the receive connectors (Get-ReceiveConnector) were not read"
        return [_unknown(rule, "receive connectors", reason, SRC_EXTERNAL_AUTH)]
    out: list[ExposureFinding] = []
    for connector in modern.receive_connectors:
        if not connector.enabled or "ExternalAuthoritative" not in connector.auth_mechanism:
            continue
        wide = world_ranges(connector, max_prefix)
        if wide is None:
            reason = "its remote IP ranges could not be read"
            out.append(_unknown(rule, connector.identity, reason, SRC_EXTERNAL_AUTH))
        scope = (
            "the connector faces the Internet (RemoteIPRanges reach anyone)"
            if wide
            else "limited to " + _range_text(connector)
        )
        reason = (
            "AuthMechanism ExternalAuthoritative treats every client as an authenticated "
            f"Exchange server (relay included); {scope}"
        )
        if wide is False:  # externally secured for a known network only
            out.append(_passed(rule, connector.identity, reason, SRC_EXTERNAL_AUTH))
        else:
            finding = ExposureFinding(
                rule, connector.identity, bool(wide), reason, SRC_EXTERNAL_AUTH
            )
            out.append(finding)
    if not out:
        reason = "no enabled connector uses AuthMechanism ExternalAuthoritative"
        out.append(_passed(rule, "receive connectors", reason, SRC_EXTERNAL_AUTH))
    return out


@cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list the package ships; nothing is fetched


def public_wildcard(domain_name: str) -> str | None:
    """For "*.<suffix>", the suffix when it is a public suffix ("*.com", "*.co.uk"), else None."""
    name = domain_name.strip().lower().rstrip(".")
    if not name.startswith("*.") or len(name) < 3:
        return None
    suffix = name[2:]
    return suffix if _public_suffixes().is_public(suffix) else None


def _domains_unknown(rule: str, source: str) -> list[ExposureFinding]:
    reason = "the accepted domains (Get-AcceptedDomain) were not read"
    return [_unknown(rule, "accepted domains", reason, source)]


def check_star_domain(modern: ModernRelay, max_prefix: int) -> list[ExposureFinding]:
    """An accepted domain `*`, of any type, makes the whole organisation relay for anyone."""
    rule = "accepted-domain-star"
    if modern.accepted_domains is None:
        return _domains_unknown(rule, SRC_STAR_DOMAIN)
    out = [
        ExposureFinding(
            rule,
            domain.name,
            True,
            f"accepted domain '*' ({domain.domain_type}) accepts mail for every domain: "
            "the organisation relays for anyone",
            SRC_STAR_DOMAIN,
        )
        for domain in modern.accepted_domains
        if domain.domain_name.strip() == "*"
    ]
    return out or [_passed(rule, "accepted domains", "no accepted domain is '*'", SRC_STAR_DOMAIN)]


def check_public_wildcard(modern: ModernRelay, max_prefix: int) -> list[ExposureFinding]:
    """A relay-type wildcard over a public suffix: `*.com` relays for every .com recipient."""
    rule = "accepted-domain-public-wildcard"
    if modern.accepted_domains is None:
        return _domains_unknown(rule, SRC_PUBLIC_WILDCARD)
    out: list[ExposureFinding] = []
    for domain in modern.accepted_domains:
        name = domain.domain_name.strip()
        suffix = public_wildcard(name)
        if suffix is None or domain.domain_type not in RELAY_DOMAIN_TYPES:
            continue
        reason = (
            f"accepted domain {name} is {domain.domain_type} over the public suffix "
            f".{suffix}: mail to every domain under .{suffix} is relayed for anyone"
        )
        out.append(ExposureFinding(rule, domain.name, True, reason, SRC_PUBLIC_WILDCARD))
    reason = "no relay accepted domain is a wildcard over a public suffix"
    return out or [_passed(rule, "accepted domains", reason, SRC_PUBLIC_WILDCARD)]


def check_relay_domains(modern: ModernRelay, max_prefix: int) -> list[ExposureFinding]:
    """A relay-type accepted domain relays for anyone, but only to that domain: a note."""
    rule = "accepted-domain-relay"
    if modern.accepted_domains is None:
        return _domains_unknown(rule, SRC_RELAY_DOMAIN)
    out: list[ExposureFinding] = []
    for domain in modern.accepted_domains:
        name = domain.domain_name.strip()
        if name == "*" or domain.domain_type not in RELAY_DOMAIN_TYPES or public_wildcard(name):
            continue
        reason = (
            f"accepted domain {name} is {domain.domain_type}: anyone may send mail through "
            "this server to it; keep it only if the organisation relays for it"
        )
        out.append(ExposureFinding(rule, domain.name, False, reason, SRC_RELAY_DOMAIN))
    if not out:
        reason = "no other accepted domain is InternalRelay or ExternalRelay"
        out.append(_passed(rule, "accepted domains", reason, SRC_RELAY_DOMAIN))
    return out


def check_recipient_validation(modern: ModernRelay, max_prefix: int) -> list[ExposureFinding]:
    """Unknown recipients refused at RCPT time: recipient filtering needs the Recipient Filter
    agent, which Mailbox servers have only after Install-AntiSpamAgents.ps1."""
    rule, subject = "recipient-validation-off", "RecipientFilterConfig"
    agents = modern.antispam_agent_names
    rf = modern.recipient_filter
    if agents is not None and RECIPIENT_FILTER_AGENT not in agents:
        reason = (
            "the Recipient Filter agent is not installed on this server (anti-spam agents: "
            "Install-AntiSpamAgents.ps1): unknown recipients are accepted and bounced later"
        )
        return [ExposureFinding(rule, subject, False, reason, SRC_VALIDATION)]
    if rf is None:
        reason = "recipient filtering (Get-RecipientFilterConfig) was not read"
        return [_unknown(rule, subject, reason, SRC_VALIDATION)]
    if rf.enabled and rf.recipient_validation_enabled:
        reason = "recipient validation refuses unknown recipients at RCPT time"
        return [_passed(rule, subject, reason, SRC_VALIDATION)]
    reason = (
        "unknown recipients at the accepted domains are accepted and bounced later "
        "(backscatter), not refused at RCPT time"
    )
    return [ExposureFinding(rule, subject, False, reason, SRC_VALIDATION)]


MODERN_RULES: tuple[Rule, ...] = (
    Rule(
        "anonymous-accept-any-recipient",
        "No anonymous relay right on a connector that faces the Internet",
        ("receive_connectors", "anonymous_permissions"),
        True,
        "docs/sources.md#learn-anonymous-relay",
        check_anonymous_relay,
    ),
    Rule(
        "external-authoritative",
        "No externally secured (ExternalAuthoritative) connector that faces the Internet",
        ("receive_connectors",),
        True,
        "docs/sources.md#learn-anonymous-relay",
        check_external_authoritative,
    ),
    Rule(
        "accepted-domain-star",
        "No accepted domain '*'",
        ("accepted_domains",),
        True,
        "docs/sources.md#healthchecker-openrelaydomain",
        check_star_domain,
    ),
    Rule(
        "accepted-domain-public-wildcard",
        "No relay accepted domain over a public suffix ('*.com')",
        ("accepted_domains",),
        True,
        "docs/sources.md#public-suffix-list",
        check_public_wildcard,
    ),
    Rule(
        "accepted-domain-relay",
        "Relay accepted domains are the organisation's partners only",
        ("accepted_domains",),
        False,
        "docs/sources.md#learn-accepted-domains",
        check_relay_domains,
    ),
    Rule(
        "recipient-validation-off",
        "Unknown recipients refused at RCPT time",
        ("recipient_filter", "transport_agents"),
        False,
        "docs/sources.md#learn-recipient-filtering",
        check_recipient_validation,
    ),
)


def run_modern_rules(
    modern: ModernRelay, max_prefix: int, rules: Iterable[Rule] = MODERN_RULES
) -> tuple[list[ExposureFinding], list[str]]:
    """Every rule's findings, and the unknowns that leave the relay verdict undecided."""
    findings: list[ExposureFinding] = []
    unknowns: list[str] = []
    for rule in rules:
        for finding in rule.check(modern, max_prefix):
            findings.append(finding)
            if finding.result is RuleResult.UNKNOWN and rule.decides_relay:
                unknowns.append(f"{finding.subject}: {finding.reason}")
    return findings, unknowns
