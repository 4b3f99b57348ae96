"""The rule table of Exchange Server 5.5's Internet Mail Service: what lets clients relay. Pure.

The same shape as `rules.py` (Exchange 2013 and later): one row per rule, each a check over
typed facts (`Exchange55Relay`) returning findings. `analysis.relay_exposure` runs it. The IMS
semantics below are those of the Microsoft KBs, each cited where it is applied
(docs/sources.md#kb-q193922, #kb-q169683, #kb-q255695, #ms99-027):

- KB Q193922: `RelayFlags` bits 1 deny list, 2 allow list, 4 local-IP list, 8 authenticated
  clients. A list line is `net;mask`; a line without `;mask` means mask 255.255.255.255; a
  client matches when `(IP AND mask) == net`, so a net with host bits set matches nothing
  (no widening to the enclosing network).
- KB Q169683 / Q259531: a Routing-tab domain matches its subdomains too; `#domain` matches
  that domain only. Only entries with "Override relay restrictions. Always relay." relay for
  every client; the others obey the routing restrictions.
- KB Q255695 / Q237927: "Do not reroute incoming SMTP mail" answers 250 to RCPT for any
  domain and sends a non-delivery report after DATA.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from relayguard.exchange.facts import Exchange55Relay, RoutingEntry
from relayguard.exchange.findings import ExposureFinding
from relayguard.vocabulary import RuleResult

# KB Q193922: RelayFlags bits of the IMS routing restrictions.
RELAY_DENY = 1
RELAY_ALLOW = 2
RELAY_LOCAL_IP = 4
RELAY_AUTHENTICATED = 8
HOST_MASK = 0xFFFFFFFF  # KB Q193922: a line without ";mask" is one host

SRC_Q193922 = "KB Q193922 (IMS routing restrictions in the registry)"
SRC_ROUTING = "KB Q169683 / Q259531 (IMS Routing tab, 'Override relay restrictions')"
SRC_DO_NOT_REROUTE = "KB Q255695 / Q237927 ('Do not reroute': 250 at RCPT, NDR after DATA)"
SRC_Q237927 = "KB Q237927 (MS99-027, encapsulated SMTP address relay)"

# Where the Routing tab's "Reroute incoming SMTP mail" switch and its list are stored is not
# documented (docs/sources.md#exchange55-routing-storage, docs/exchange.md): every reader
# that cannot read it reports this source; the rules make it an unknown, never a verdict.
ROUTING_STORAGE_UNKNOWN = "unknown"

Check = Callable[[Exchange55Relay, int], list[ExposureFinding]]


@dataclass(frozen=True)
class Rule55:
    id: str
    title: str
    reads: tuple[str, ...]  # the Exchange55Relay fields the check reads
    decides_relay: bool  # an unknown result leaves the relay verdict inconclusive
    source: str
    check: Check


# --- IMS list entries (KB Q193922) ----------------------------------------------------------


@dataclass(frozen=True)
class ImsEntry:
    """One `net;mask` line as the IMS applies it: `(IP AND mask) == net` (KB Q193922)."""

    net: int
    mask: int

    def matches(self, address: str) -> bool:
        try:
            ip = int(ipaddress.IPv4Address(address.strip()))
        except ValueError:
            return False
        return ip & self.mask == self.net

    @property
    def addresses(self) -> int:
        """How many client addresses match: none when the net has host bits set."""
        if self.net & self.mask != self.net:
            return 0
        return 1 << (32 - bin(self.mask).count("1"))

    def __str__(self) -> str:
        return f"{ipaddress.IPv4Address(self.net)};{ipaddress.IPv4Address(self.mask)}"


def parse_net_mask(entry: str) -> ImsEntry | None:
    """An IMS list line (KB Q193922): "net;mask", or "net" alone (mask 255.255.255.255).
    None when a part is not a dotted IPv4 address (the line grants nothing)."""
    net_text, sep, mask_text = entry.strip().partition(";")
    try:
        net = int(ipaddress.IPv4Address(net_text.strip()))
        mask = int(ipaddress.IPv4Address(mask_text.strip())) if sep else HOST_MASK
    except ValueError:
        return None
    return ImsEntry(net, mask)


def in_ims_list(address: str, entries: Iterable[str] | None) -> bool:
    """Whether `address` matches a line of an IMS list (KB Q193922)."""
    for line in entries or ():
        entry = parse_net_mask(line)
        if entry is not None and entry.matches(address):
            return True
    return False


# --- Routing-tab domains (KB Q169683, Q259531) ----------------------------------------------


def routing_domain_matches(pattern: str, domain: str) -> bool:
    """A Routing-tab entry matches its domain and every subdomain; `#domain` only itself."""
    wanted = domain.strip().lower().rstrip(".")
    text = pattern.strip().lower().rstrip(".")
    if text.startswith("#"):
        return wanted == text[1:]
    return wanted == text or wanted.endswith("." + text)


def always_relay_entries(relay: Exchange55Relay) -> list[RoutingEntry]:
    """Routing entries that relay for every client ("Override relay restrictions")."""
    return [e for e in relay.routing_list or () if e.always_relay]


# --- the checks ------------------------------------------------------------------------------


def _fail(rule: str, subject: str, opens: bool, reason: str, source: str) -> ExposureFinding:
    return ExposureFinding(rule, subject, opens, reason, source, RuleResult.FAIL)


def _pass(rule: str, subject: str, reason: str, source: str) -> ExposureFinding:
    return ExposureFinding(rule, subject, False, reason, source, RuleResult.PASS)


def _unknown(rule: str, subject: str, reason: str, source: str) -> ExposureFinding:
    return ExposureFinding(rule, subject, False, reason, source, RuleResult.UNKNOWN)


def check_restrictions(relay: Exchange55Relay, max_prefix: int) -> list[ExposureFinding]:
    """No RelayFlags, 0, or the deny bit alone: every client not denied may relay."""
    flags = relay.relay_flags
    subject = f"{relay.parameters_path}\\RelayFlags"
    if not flags:
        state = "absent" if flags is None else "0"
        reason = f"RelayFlags is {state}: no routing restrictions, every client may relay"
        return [_fail("ims-no-routing-restrictions", subject, True, reason, SRC_Q193922)]
    if not flags & (RELAY_ALLOW | RELAY_LOCAL_IP | RELAY_AUTHENTICATED):
        reason = f"RelayFlags is {flags}: a deny list only, every client not on it may relay"
        return [_fail("ims-deny-list-only", subject, True, reason, SRC_Q193922)]
    return [_pass("ims-routing-restrictions", subject, f"RelayFlags is {flags}", SRC_Q193922)]


def check_allow_list(relay: Exchange55Relay, max_prefix: int) -> list[ExposureFinding]:
    """Allow-list lines wider than /max_prefix let strangers relay; lines that match nothing
    (host bits set, KB Q193922) are reported so nobody believes they grant anything."""
    if not (relay.relay_flags or 0) & RELAY_ALLOW:
        return []
    subject = f"{relay.parameters_path}\\RelayAllowList"
    out: list[ExposureFinding] = []
    for line in relay.relay_allow_list or ():
        entry = parse_net_mask(line)
        if entry is None:
            continue  # not an address: the IMS grants nothing for it
        if entry.addresses == 0:
            reason = (
                f"allow-list entry {line!r} has host bits set outside its mask: "
                "it matches no client"
            )
            out.append(
                _fail("ims-allow-entry-matches-nothing", subject, False, reason, SRC_Q193922)
            )
        elif entry.addresses > 1 << (32 - max_prefix):
            reason = (
                f"allow-list entry {line!r} lets {entry.addresses} addresses relay "
                f"(wider than /{max_prefix})"
            )
            out.append(_fail("ims-allow-list-too-wide", subject, True, reason, SRC_Q193922))
    return out


def check_local_ip_list(relay: Exchange55Relay, max_prefix: int) -> list[ExposureFinding]:
    if not (relay.relay_flags or 0) & RELAY_LOCAL_IP or not relay.relay_local_ip_list:
        return []
    reason = (
        "every client connecting to one of the server addresses "
        + ", ".join(relay.relay_local_ip_list)
        + " may relay; open if one of them faces the Internet"
    )
    subject = f"{relay.parameters_path}\\RelayLocalIPList"
    return [_fail("ims-local-ip-list", subject, False, reason, SRC_Q193922)]


def check_reroute(relay: Exchange55Relay, max_prefix: int) -> list[ExposureFinding]:
    """The Routing tab: unknown where its storage is (ROUTING_STORAGE_UNKNOWN)."""
    subject = "IMS Routing tab"
    if relay.reroute_incoming is None:
        reason = (
            "the reroute switch and inbound domains could not be read "
            f"(source: {relay.routing_source})"
        )
        return [_unknown("ims-routing-tab", subject, reason, SRC_ROUTING)]
    if not relay.reroute_incoming:
        reason = (
            "'Do not reroute' accepts RCPT for every domain and sends an NDR after DATA: "
            "to any client it is an open relay at RCPT time"
        )
        return [
            _fail(
                "ims-do-not-reroute", f"{subject}: Do not reroute", True, reason, SRC_DO_NOT_REROUTE
            )
        ]
    return [_pass("ims-routing-tab", subject, "Reroute incoming SMTP mail", SRC_ROUTING)]


def check_always_relay(relay: Exchange55Relay, max_prefix: int) -> list[ExposureFinding]:
    """Routing entries with "Override relay restrictions. Always relay." relay for anyone to
    that domain and its subdomains (KB Q169683, Q259531): intended for a few domains only."""
    out = []
    for entry in always_relay_entries(relay):
        scope = "only" if entry.domain.startswith("#") else "and its subdomains"
        reason = f"every client may relay to {entry.domain.lstrip('#')} {scope}"
        subject = f"IMS Routing tab: {entry.domain}"
        out.append(_fail("ims-routing-always-relay", subject, False, reason, SRC_ROUTING))
    return out


RULES_55: tuple[Rule55, ...] = (
    Rule55("ims-routing-restrictions", "routing restrictions set", ("relay_flags",), True,
           SRC_Q193922, check_restrictions),
    Rule55("ims-allow-list", "allow list not too wide", ("relay_flags", "relay_allow_list"),
           True, SRC_Q193922, check_allow_list),
    Rule55("ims-local-ip-list", "local-IP list", ("relay_flags", "relay_local_ip_list"), False,
           SRC_Q193922, check_local_ip_list),
    Rule55("ims-routing-tab", "reroute incoming SMTP mail", ("reroute_incoming",), True,
           SRC_ROUTING, check_reroute),
    Rule55("ims-routing-always-relay", "Always relay entries", ("routing_list",), False,
           SRC_ROUTING, check_always_relay),
)  # fmt: skip


def run_exchange55_rules(
    relay: Exchange55Relay, max_prefix: int, rules: Iterable[Rule55] = RULES_55
) -> tuple[list[ExposureFinding], list[str]]:
    """Every rule's findings, and the unknowns that leave the relay verdict undecided."""
    findings: list[ExposureFinding] = []
    unknowns: list[str] = []
    for rule in rules:
        for finding in rule.check(relay, max_prefix):
            findings.append(finding)
            if finding.result is RuleResult.UNKNOWN and rule.decides_relay:
                unknowns.append(f"{finding.subject}: {finding.reason}")
    return findings, unknowns
