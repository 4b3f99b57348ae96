"""Sendmail relay closure, facts and plan (pure): the rule table over SendmailFacts.

Sendmail refuses to relay by default since 8.9; what opens it is named in cf/README
("Anti-Spam Configuration Control", docs/sources.md#sendmail-cf-readme): mc features
(``promiscuous_relay`` relays for anyone; ``loose_relay_check`` lets ``user%site@host`` through;
``relay_based_on_MX`` relays to any domain whose MX is this host; ``relay_entire_domain``
relays for every host of the local domain; ``relay_local_from`` and ``relay_mail_from`` relay
on the envelope sender, which anyone can forge), ``RELAY`` entries of the access database
(``Connect:`` a client, ``To:`` a destination, ``From:`` a sender) and class R
(``relay-domains``). ``relay_hosts_only`` narrows class R to exact hosts and is left alone.
RFC 2505 section 2.1: relaying is decided by client address and recipient domain, never by
the sender's claim. Every removed client, destination or feature a site might rely on is named
in `Change.removes` (relay_backend.removal_refusal refuses it in enforce mode).

Standard library only (Python 3.7+).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay_backend import Change, Rule
else:
    try:  # as Ansible ships it
        from ansible_collections.relayguard.mail.plugins.module_utils.relay_backend import (
            Change,
            Rule,
        )
    except ImportError:  # loaded by path outside Ansible (tests, the lab)
        from relay_backend import Change, Rule

# feature -> whether dropping it may cut a path a site relies on (named in the diff)
OPENING_FEATURES = {
    "promiscuous_relay": False,  # relays for anyone: nothing legitimate depends on it
    "loose_relay_check": False,  # the %-hack
    "relay_based_on_MX": True,
    "relay_entire_domain": True,
    "relay_local_from": True,
    "relay_mail_from": True,
}
_FEATURE = re.compile(r"^\s*FEATURE\(\s*`?(\w+)'?")
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
SOURCE_FEATURES = "sendmail cf/README, Anti-Spam Configuration Control; RFC 2505 section 2.1"
SOURCE_ACCESS = "sendmail cf/README, access_db (Connect:/To:/From: RELAY); RFC 2505 section 2.1"


@dataclass(frozen=True)
class AccessEntry:
    key: str
    value: str
    line: int


@dataclass(frozen=True)
class SendmailFacts:
    """sendmail.mc (`mc_path`, `mc`), the access source (`access_path`, `access`) and its
    entries, and the relay-domains file's lines."""

    mc_path: str
    mc: str
    access_path: str
    access: str
    relay_domains: tuple[str, ...] = ()

    def features(self) -> list[tuple[str, int]]:
        """(feature, line) of every active FEATURE() line (``dnl`` lines are comments)."""
        found = []
        for index, line in enumerate(self.mc.splitlines()):
            match = _FEATURE.match(line)
            if match:
                found.append((match.group(1), index))
        return found

    def entries(self) -> list[AccessEntry]:
        out = []
        for index, line in enumerate(self.access.splitlines()):
            parts = line.split(None, 1)
            if len(parts) == 2 and not parts[0].startswith("#"):
                out.append(AccessEntry(parts[0], parts[1].strip(), index))
        return out


@dataclass(frozen=True)
class SendmailDesired:
    allowed_networks: tuple[str, ...]
    partner_domains: tuple[str, ...] = ()


# --- features -------------------------------------------------------------------------------


def _opening(facts: SendmailFacts) -> list[tuple[str, int]]:
    return [(name, line) for name, line in facts.features() if name in OPENING_FEATURES]


def check_features(facts: SendmailFacts, desired: SendmailDesired) -> str | None:
    opening = _opening(facts)
    if not opening:
        return None
    return "sendmail.mc opens relaying: " + ", ".join(f"FEATURE({n})" for n, line in opening)


def fix_features(facts: SendmailFacts, desired: SendmailDesired) -> list[Change]:
    lines = facts.mc.splitlines()
    return [
        Change(
            "sendmail-features",
            f"sendmail.mc line {line + 1}",
            lines[line],
            "dnl " + lines[line],
            f"FEATURE({name}) relays beyond the client and domain checks",
            (f"FEATURE({name})",) if OPENING_FEATURES[name] else (),
        )
        for name, line in _opening(facts)
    ]


# --- the access database --------------------------------------------------------------------


def client_network(key: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network an access key names: ``Connect:10.1`` or a bare ``10.1`` is 10.1.0.0/16
    (sendmail matches IPv4 by leading octets), ``Connect:IPv6:2001:db8`` an IPv6 prefix."""
    text = key[len("Connect:") :] if key.startswith("Connect:") else key
    if text.startswith("IPv6:"):
        try:
            return ipaddress.ip_network(text[5:], strict=False)
        except ValueError:
            return None
    octets = text.split(".")
    if not 1 <= len(octets) <= 4 or not all(o.isdigit() and int(o) < 256 for o in octets):
        return None
    padded = octets + ["0"] * (4 - len(octets))
    return ipaddress.ip_network(f"{'.'.join(padded)}/{8 * len(octets)}")


def _covered(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network, allowed: tuple[str, ...]
) -> bool:
    scopes = list(LOOPBACK) + [ipaddress.ip_network(a, strict=False) for a in allowed]
    return any(
        network.subnet_of(scope) if network.version == scope.version else False  # type: ignore[arg-type]
        for scope in scopes
    )


def _bad_entries(facts: SendmailFacts, desired: SendmailDesired) -> list[AccessEntry]:
    """RELAY entries for clients outside the allowed networks, and every From: RELAY."""
    bad = []
    for entry in facts.entries():
        if entry.value.upper() != "RELAY" or entry.key.startswith("To:"):
            continue
        if entry.key.startswith("From:"):
            bad.append(entry)
            continue
        network = client_network(entry.key)
        if network is None or not _covered(network, desired.allowed_networks):
            bad.append(entry)
    return bad


def _missing_partners(facts: SendmailFacts, desired: SendmailDesired) -> list[str]:
    relayed = {e.key[3:].lower() for e in facts.entries() if e.key.startswith("To:")}
    relayed |= {d.lower() for d in facts.relay_domains}
    return [d for d in desired.partner_domains if d.lower() not in relayed]


def check_access(facts: SendmailFacts, desired: SendmailDesired) -> str | None:
    bad = _bad_entries(facts, desired)
    if bad:
        return "access relays for " + ", ".join(f"{e.key}" for e in bad)
    if _missing_partners(facts, desired):
        return "access lacks partner domains"
    return None


def fix_access(facts: SendmailFacts, desired: SendmailDesired) -> list[Change]:
    changes = [
        Change(
            "sendmail-access",
            f"access line {entry.line + 1}",
            f"{entry.key}\t{entry.value}",
            "",
            "relay only for the allowed networks, never on the sender's claim",
            (f"{entry.key} RELAY",),
        )
        for entry in _bad_entries(facts, desired)
    ]
    changes += [
        Change("sendmail-access", "access (end)", "", f"To:{d}\tRELAY", "partner domain kept")
        for d in _missing_partners(facts, desired)
    ]
    return changes


SENDMAIL_RULES: tuple[Rule[SendmailFacts, SendmailDesired, Change], ...] = (
    Rule("sendmail-features", check_features, fix_features, SOURCE_FEATURES),
    Rule("sendmail-access", check_access, fix_access, SOURCE_ACCESS),
)


def _line(change: Change) -> int:
    match = re.search(r" line (\d+)$", change.target)
    return int(match.group(1)) - 1 if match else -1


def planned_files(facts: SendmailFacts, changes: tuple[Change, ...]) -> tuple[str, str]:
    """(new sendmail.mc, new access source) with `changes` applied (pure)."""
    mc = facts.mc.splitlines()
    access = facts.access.splitlines()
    for change in changes:
        if change.rule == "sendmail-features":
            mc[_line(change)] = change.after
    removed = {_line(c) for c in changes if c.rule == "sendmail-access" and not c.after}
    access = [line for index, line in enumerate(access) if index not in removed]
    access += [c.after for c in changes if c.rule == "sendmail-access" and c.after]
    return "\n".join(mc) + "\n", ("\n".join(access) + "\n") if access else ""
