"""Sendmail relay closure: the rule table over SendmailFacts and the files it writes (pure).

Sendmail refuses to relay by default since 8.9: a client relays only when the access
database, class R or an authenticated session allows it (cf/README, "Anti-Spam
Configuration Control"; Sendmail Installation and Operation Guide, docs/sources.md
#sendmail-cf-readme, #sendmail-op-guide). The mc FEATUREs that widen that are removed:
promiscuous_relay (relays for anyone), loose_relay_check (``user%site@host`` routes),
relay_based_on_MX (any domain whose MX record names this host: anyone can publish one),
relay_local_from and relay_mail_from (decided by the envelope sender, which any client
forges: RFC 2505 section 2.1 asks to decide by client address and recipient domain).
relay_entire_domain trusts every host of the local domain: removing it drops trusted
clients, so it is named as a removal. relay_hosts_only narrows relaying and stays.

Legitimate paths stay: ``To:`` RELAY entries and class R (relay destinations), ``Connect:``
RELAY entries (trusted networks) unless `relay_allowed_networks` lists the networks, and
TRUST_AUTH_MECH (authenticated relay) unless relay_authenticated is true or false. Every
network a change drops is named in `Change.removes` (relay_backend.removal_refusal).

Standard library only (Python 3.7+).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay_backend import Change, Plan, Rule, evaluate
    from sendmail_facts import (
        SendmailFacts,
        SendmailFactsError,
        connect_network,
        network_key,
    )
else:
    try:  # as Ansible ships it
        from ansible_collections.relayguard.mail.plugins.module_utils.relay_backend import (
            Change,
            Plan,
            Rule,
            evaluate,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.sendmail_facts import (
            SendmailFacts,
            SendmailFactsError,
            connect_network,
            network_key,
        )
    except ImportError:  # loaded by path outside Ansible (tests)
        from relay_backend import Change, Plan, Rule, evaluate
        from sendmail_facts import (
            SendmailFacts,
            SendmailFactsError,
            connect_network,
            network_key,
        )

KEEP, TRUE, FALSE = "keep", "true", "false"
# Features that let an unauthorised client relay; relay_entire_domain trusts local hosts.
OPENING = (
    "promiscuous_relay",
    "loose_relay_check",
    "relay_based_on_MX",
    "relay_local_from",
    "relay_mail_from",
)
TRUSTING = ("relay_entire_domain",)
# cf/README's example list of mechanisms (TRUST_AUTH_MECH).
AUTH_MECHANISMS = "EXTERNAL DIGEST-MD5 CRAM-MD5 LOGIN PLAIN"
SOURCE_FEATURES = (
    "Sendmail cf/README, Anti-Spam Configuration Control (relaying denied by default since "
    "8.9; FEATUREs that allow it); RFC 2505 section 2.1"
)
SOURCE_ACCESS = "Sendmail cf/README, The Access Database (Connect:, To:, From: RELAY)"
SOURCE_AUTH = "Sendmail cf/README, SMTP AUTHENTICATION (TRUST_AUTH_MECH); RFC 4954"
SOURCE_CLASS_R = "Sendmail cf/README, Anti-Spam Configuration Control (class R, confCR_FILE)"


@dataclass(frozen=True)
class SendmailDesired:
    """Validated options: allowed networks (None: Connect: entries unmanaged), partner
    domains kept in class R, and authenticated relay keep/true/false."""

    allowed_networks: tuple[str, ...] | None = None
    partner_domains: tuple[str, ...] = ()
    relay_authenticated: str = KEEP


@dataclass(frozen=True)
class SendmailChange(Change):
    """A Change with the edit it makes: in `path`, drop line `line` (1-based) or, when
    `line` is 0, add `text` (to the mc before its MAILER lines, to a table at its end)."""

    path: str = ""
    line: int = 0
    text: str = ""


def _drop(rule: str, facts_path: str, origin_line: str, target: str, reason: str) -> Change:
    number = int(origin_line.split(":")[0].split()[-1])
    return SendmailChange(rule, target, "present", "removed", reason, (), facts_path, number)


# -- rules ---------------------------------------------------------------------------------


def _features(facts: SendmailFacts, names: tuple[str, ...]) -> list[str]:
    return [f.name for f in facts.features if f.name in names]


def check_opening(facts: SendmailFacts, desired: SendmailDesired) -> str | None:
    found = _features(facts, OPENING)
    return f"FEATUREs that let any client relay: {', '.join(found)}" if found else None


def fix_opening(facts: SendmailFacts, desired: SendmailDesired) -> list[Change]:
    return [
        _drop(
            "sendmail-opening-feature",
            facts.mc_path,
            f.origin.scope,
            f"sendmail.mc FEATURE({f.name})",
            f"FEATURE(`{f.name}') lets clients relay without authorisation",
        )
        for f in facts.features
        if f.name in OPENING
    ]


def check_trusting(facts: SendmailFacts, desired: SendmailDesired) -> str | None:
    if desired.allowed_networks is None:
        return None
    found = _features(facts, TRUSTING)
    return f"FEATUREs that trust clients by name: {', '.join(found)}" if found else None


def fix_trusting(facts: SendmailFacts, desired: SendmailDesired) -> list[Change]:
    changes: list[Change] = []
    for feature in facts.features:
        if feature.name in TRUSTING:
            change = _drop(
                "sendmail-trusting-feature",
                facts.mc_path,
                feature.origin.scope,
                f"sendmail.mc FEATURE({feature.name})",
                "only relay_allowed_networks relay without authentication",
            )
            changes.append(_with_removes(change, ("every host of the local domain ($=m)",)))
    return changes


def _with_removes(change: Change, removes: tuple[str, ...]) -> Change:
    if not isinstance(change, SendmailChange):
        raise TypeError(f"not a SendmailChange: {change!r}")
    return SendmailChange(
        change.rule,
        change.target,
        change.before,
        change.after,
        change.reason,
        removes,
        change.path,
        change.line,
        change.text,
    )


def _allowed(desired: SendmailDesired) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=True) for n in desired.allowed_networks or ()]


def _untrusted_entries(facts: SendmailFacts, desired: SendmailDesired) -> list[str]:
    allowed = _allowed(desired)
    wrong: list[str] = []
    for entry in facts.access_relays:
        if entry.name.lower().startswith(("to:", "from:")):
            continue
        network = connect_network(entry.name)
        if network is None:
            continue  # a host or domain name (verified reverse DNS): not a network, kept
        fits = network is not None and any(
            network.version == a.version and network.subnet_of(a)  # type: ignore[arg-type]
            for a in allowed
        )
        if not fits:
            wrong.append(entry.name)
    return wrong


def _missing_networks(facts: SendmailFacts, desired: SendmailDesired) -> list[str]:
    present = {e.name.lower() for e in facts.access_relays}
    bare = {k[len("connect:") :] for k in present if k.startswith("connect:")}
    return [
        n
        for n in desired.allowed_networks or ()
        if network_key(n).lower() not in present and network_key(n)[8:].lower() not in bare
    ]


def check_networks(facts: SendmailFacts, desired: SendmailDesired) -> str | None:
    if desired.allowed_networks is None:
        return None
    wrong = _untrusted_entries(facts, desired)
    missing = _missing_networks(facts, desired)
    if not wrong and not missing:
        return None
    return f"access RELAY clients not in relay_allowed_networks: {wrong}; missing: {missing}"


def fix_networks(facts: SendmailFacts, desired: SendmailDesired) -> list[Change]:
    if not facts.access_path:
        raise SendmailFactsError(
            "relay_allowed_networks needs FEATURE(`access_db') in the mc (none found)"
        )
    wrong = set(_untrusted_entries(facts, desired))
    changes: list[Change] = []
    for entry in facts.access_relays:
        if entry.name in wrong:
            change = _drop(
                "sendmail-access-networks",
                facts.access_path,
                entry.origin.scope,
                f"access {entry.name}",
                "only relay_allowed_networks relay without authentication",
            )
            changes.append(_with_removes(change, (entry.name,)))
    for network in _missing_networks(facts, desired):
        key = network_key(network)
        changes.append(
            SendmailChange(
                "sendmail-access-networks",
                f"access {key}",
                "absent",
                "RELAY",
                f"relay_allowed_networks lists {network}",
                (),
                facts.access_path,
                0,
                f"{key}\tRELAY",
            )
        )
    return changes


def _in_class_r(facts: SendmailFacts, domain: str) -> bool:
    names = {d.name for d in facts.relay_domains}
    names |= {
        e.name.lower().split(":", 1)[-1]
        for e in facts.access_relays
        if e.name.lower().startswith("to:") or ":" not in e.name
    }
    parts = domain.lower().split(".")
    # a whole top-level domain does not count: sendmail-wide-destinations removes it
    return any(".".join(parts[i:]) in names for i in range(len(parts) - 1))


def check_partners(facts: SendmailFacts, desired: SendmailDesired) -> str | None:
    missing = [d for d in desired.partner_domains if not _in_class_r(facts, d)]
    return f"partner domains not relayed: {', '.join(missing)}" if missing else None


def fix_partners(facts: SendmailFacts, desired: SendmailDesired) -> list[Change]:
    changes: list[Change] = []
    for domain in desired.partner_domains:
        if _in_class_r(facts, domain):
            continue
        if facts.relay_domains_file:
            path, target, text = facts.relay_domains_file, "relay-domains", domain
        else:
            path, target, text = facts.mc_path, "sendmail.mc", f"RELAY_DOMAIN(`{domain}')dnl"
        changes.append(
            SendmailChange(
                "sendmail-partner-domains",
                f"{target} {domain}",
                "absent",
                "relayed",
                "relay_partner_domains: a partner's mail must stay accepted",
                (),
                path,
                0,
                text,
            )
        )
    return changes


def _is_wide(domain: str) -> bool:
    """A class R or To: name that matches a whole top-level domain (or every domain)."""
    name = domain.strip(".").lower()
    return "." not in name and not name.startswith("[") and connect_network(name) is None


def _wide_destinations(facts: SendmailFacts) -> list[tuple[str, str, str, str]]:
    """(name, path, origin scope, target) of each destination matching a whole TLD."""
    found = [
        (d.name, d.origin.path, d.origin.scope, f"{_short(d.origin.path, facts)} {d.name}")
        for d in facts.relay_domains
        if _is_wide(d.name)
    ]
    for entry in facts.access_relays:
        lowered = entry.name.lower()
        if lowered.startswith("to:") or ":" not in lowered:
            name = lowered.split(":", 1)[-1]
            if _is_wide(name):
                found.append((name, facts.access_path, entry.origin.scope, f"access {entry.name}"))
    return found


def _short(path: str, facts: SendmailFacts) -> str:
    return "sendmail.mc" if path == facts.mc_path else "relay-domains"


def check_wide(facts: SendmailFacts, desired: SendmailDesired) -> str | None:
    wide = [name for name, _path, _scope, _target in _wide_destinations(facts)]
    return f"relay destinations matching a whole top-level domain: {wide}" if wide else None


def fix_wide(facts: SendmailFacts, desired: SendmailDesired) -> list[Change]:
    changes: list[Change] = []
    for name, path, scope, target in _wide_destinations(facts):
        if any(p in (f"{name}.", name) for p in desired.partner_domains):
            continue
        change = _drop(
            "sendmail-wide-destinations",
            path,
            scope,
            target,
            f"{name} relays to every domain under it for any client",
        )
        # a RELAY_DOMAIN line goes whole: every domain on it is named
        same_line = tuple(
            d.name for d in facts.relay_domains if (d.origin.path, d.origin.scope) == (path, scope)
        )
        changes.append(_with_removes(change, same_line or (name,)))
    return changes


def check_auth(facts: SendmailFacts, desired: SendmailDesired) -> str | None:
    if desired.relay_authenticated == TRUE and not facts.trust_auth:
        return "relay_authenticated is true and no TRUST_AUTH_MECH is set"
    if desired.relay_authenticated == FALSE and facts.trust_auth:
        return "relay_authenticated is false and TRUST_AUTH_MECH lets authenticated clients relay"
    return None


def fix_auth(facts: SendmailFacts, desired: SendmailDesired) -> list[Change]:
    if desired.relay_authenticated == FALSE:
        return [
            _drop(
                "sendmail-authenticated",
                facts.mc_path,
                s.origin.scope,
                "sendmail.mc TRUST_AUTH_MECH",
                "relay_authenticated: false",
            )
            for s in facts.trust_auth
        ]
    return [
        SendmailChange(
            "sendmail-authenticated",
            "sendmail.mc TRUST_AUTH_MECH",
            "absent",
            AUTH_MECHANISMS,
            "relay_authenticated: true (SASL itself is not configured by this module)",
            (),
            facts.mc_path,
            0,
            f"TRUST_AUTH_MECH(`{AUTH_MECHANISMS}')dnl",
        )
    ]


RULES: tuple[Rule[SendmailFacts, SendmailDesired, Change], ...] = (
    Rule("sendmail-opening-feature", check_opening, fix_opening, SOURCE_FEATURES),
    Rule("sendmail-trusting-feature", check_trusting, fix_trusting, SOURCE_FEATURES),
    Rule("sendmail-access-networks", check_networks, fix_networks, SOURCE_ACCESS),
    Rule("sendmail-wide-destinations", check_wide, fix_wide, SOURCE_CLASS_R),
    Rule("sendmail-partner-domains", check_partners, fix_partners, SOURCE_CLASS_R),
    Rule("sendmail-authenticated", check_auth, fix_auth, SOURCE_AUTH),
)


def warnings(facts: SendmailFacts) -> tuple[str, ...]:
    notes: list[str] = []
    if facts.feature("relay_mail_from") and any(
        e.name.lower().startswith("from:") for e in facts.access_relays
    ):
        notes.append("access From: RELAY entries stay but do nothing without relay_mail_from")
    if not facts.access_path:
        notes.append("no FEATURE(`access_db'): the host itself relays only by class R")
    if facts.feature("relay_based_on_MX"):
        notes.append(
            "relay_based_on_MX goes: a domain relayed only because its MX names this host is "
            "refused afterwards; list such domains in relay_partner_domains"
        )
    return tuple(notes)


def plan(facts: SendmailFacts, desired: SendmailDesired) -> Plan:
    """Pure: the changes that close the relay and keep the legitimate paths."""
    made = evaluate(RULES, facts, desired)
    return Plan(made.changes, warnings(facts), made.findings)


# -- the files a plan writes ----------------------------------------------------------------


def _insert_in_mc(lines: list[str], added: list[str]) -> list[str]:
    at = next(
        (i for i, line in enumerate(lines) if line.lstrip().startswith(("MAILER", "MAILER_"))),
        len(lines),
    )
    return lines[:at] + added + lines[at:]


def rendered(facts: SendmailFacts, made: Plan) -> dict[str, str]:
    """Pure: path -> new text of every file the plan edits."""
    texts = {
        facts.mc_path: facts.mc_text,
        facts.access_path: facts.access_text,
        facts.relay_domains_file: facts.relay_domains_text,
    }
    out: dict[str, str] = {}
    for path in dict.fromkeys(c.path for c in made.changes if isinstance(c, SendmailChange)):
        edits = [c for c in made.changes if isinstance(c, SendmailChange) and c.path == path]
        dropped = {c.line for c in edits if c.line}
        lines = texts.get(path, "").splitlines()
        kept = [line for n, line in enumerate(lines, start=1) if n not in dropped]
        added = [c.text for c in edits if not c.line]
        kept = _insert_in_mc(kept, added) if path == facts.mc_path else kept + added
        out[path] = "".join(line + "\n" for line in kept)
    return out
