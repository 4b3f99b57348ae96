"""Exim relay closure, facts and plan (pure): the rule table over EximFacts.

Exim relays for a client when the RCPT ACL accepts it before the statement that refuses
foreign domains: the default configuration accepts ``hosts = +relay_from_hosts`` and
``authenticated = *``, then refuses any domain not in ``+local_domains`` /
``+relay_to_domains`` (``deny domains = !+local_domains`` or Debian's ``require domains =
+local_domains : +relay_to_domains``), then ``require verify = recipient`` (Exim
specification, chapter 42, docs/sources.md#exim-acl). So a relay is open when
relay_from_hosts is wider than the site's networks, when relay_to_domains matches every
domain, or when the ACL has no refusing statement (or accepts everyone before it). RFC 2505
section 2.1: relaying is decided by client address and recipient domain.

Two layouts: Debian's update-exim4.conf.conf (dc_relay_nets, dc_relay_domains; the ACL is
Debian's template, which closes) and a plain exim.conf (named lists and the ACL itself).
Never silently drops a legitimate path: every network or domain a change removes is named
in `Change.removes` (relay_backend.removal_refusal refuses it in enforce mode). What matches
anyone (`*`, a network wider than /8 or IPv6 /16, a domain wildcard) is the open relay
itself: its closing is said in the change's reason, not counted as a removal.

Standard library only (Python 3.7+).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exim_config import (
        AclStatement,
        acl_statements,
        debian_values,
        insert_lines,
        join_debian_list,
        join_exim_list,
        main_option,
        named_list,
        remove_lines,
        set_debian_value,
        set_named_list,
        split_debian_list,
        split_exim_list,
    )
    from relay_backend import Change, Origin, Rule, Setting
else:
    try:  # as Ansible ships it
        from ansible_collections.relayguard.mail.plugins.module_utils.exim_config import (
            AclStatement,
            acl_statements,
            debian_values,
            insert_lines,
            join_debian_list,
            join_exim_list,
            main_option,
            named_list,
            remove_lines,
            set_debian_value,
            set_named_list,
            split_debian_list,
            split_exim_list,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.relay_backend import (
            Change,
            Origin,
            Rule,
            Setting,
        )
    except ImportError:  # loaded by path outside Ansible (tests, the lab)
        from exim_config import (
            AclStatement,
            acl_statements,
            debian_values,
            insert_lines,
            join_debian_list,
            join_exim_list,
            main_option,
            named_list,
            remove_lines,
            set_debian_value,
            set_named_list,
            split_debian_list,
            split_exim_list,
        )
        from relay_backend import Change, Origin, Rule, Setting

DEBIAN = "debian"
PLAIN = "plain"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
# relay_to_domains items that match every domain: a relay for anyone to anywhere.
_EVERY_DOMAIN = ("*", "^.*", "^", "@mx_any")
# A relay_from_hosts item this wide trusts most of the Internet: dropping it is the closing of
# the open relay, said in the change's reason, never a legitimate path to name as a removal
# (the bound postfix_validate.MIN_PREFIX puts on an allowed network: /8, IPv6 /16).
_MIN_PREFIX = {4: 8, 6: 16}
_EVERY_HOST = ("*",)
REFUSAL = (
    "deny",
    "message = relay not permitted",
    "domains = !+local_domains : !+relay_to_domains",
)
KEEP, TRUE, FALSE = "keep", "true", "false"
SOURCE_ACL = "Exim specification ch. 42 (acl_check_rcpt); RFC 2505 section 2.1"
SOURCE_LISTS = "Exim specification ch. 10 (host and domain lists); update-exim4.conf.conf(5)"


@dataclass(frozen=True)
class EximFacts:
    """The relay-relevant configuration of one Exim: `style` debian or plain, the file a
    change writes (`path`, `text`), the two relay lists and local_domains as Settings, and
    (plain) the RCPT ACL's statements (None: no ACL found or Debian's template)."""

    style: str
    path: str
    text: str
    relay_nets: Setting
    relay_domains: Setting
    local_domains: Setting
    rcpt_acl: tuple[AclStatement, ...] | None
    acl_name: str = ""

    def nets(self) -> list[str]:
        return _split(self, self.relay_nets.value)

    def domains(self) -> list[str]:
        return _split(self, self.relay_domains.value)

    def render(self, items: list[str]) -> str:
        return join_debian_list(items) if self.style == DEBIAN else join_exim_list(items)


def _split(facts: EximFacts, value: str) -> list[str]:
    return split_debian_list(value) if facts.style == DEBIAN else split_exim_list(value)


@dataclass(frozen=True)
class EximDesired:
    allowed_networks: tuple[str, ...]
    partner_domains: tuple[str, ...] = ()
    relay_authenticated: str = KEEP


def debian_facts(path: str, text: str) -> EximFacts:
    values = debian_values(text)

    def setting(name: str) -> Setting:
        kind = "main" if name in values else "default"
        return Setting(name, values.get(name, ""), Origin(kind, path))

    return EximFacts(
        DEBIAN,
        path,
        text,
        setting("dc_relay_nets"),
        setting("dc_relay_domains"),
        setting("dc_other_hostnames"),
        None,
    )


def plain_facts(path: str, text: str) -> EximFacts:
    def setting(name: str) -> Setting:
        found = named_list(text, name)
        if found is None:
            return Setting(name, "", Origin("default", path))
        return Setting(name, found[2], Origin("main", path, f"line {found[0] + 1}"))

    acl_name = main_option(text, "acl_smtp_rcpt") or ""
    statements = acl_statements(text, acl_name) if acl_name else None
    return EximFacts(
        PLAIN,
        path,
        text,
        setting("relay_from_hosts"),
        setting("relay_to_domains"),
        setting("local_domains"),
        tuple(statements) if statements is not None else None,
        acl_name,
    )


# --- networks -------------------------------------------------------------------------------


def _network(item: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(item.strip("[]"), strict=False)
    except ValueError:
        return None


def covered(item: str, allowed: tuple[str, ...]) -> bool:
    """Whether a relay_from_hosts item only names hosts inside `allowed` or loopback."""
    network = _network(item)
    if network is None:
        return False  # a name, a lookup or "*": not provably inside the allowed networks
    scopes = list(LOOPBACK) + [n for n in (_network(a) for a in allowed) if n is not None]
    return any(
        network.subnet_of(scope)  # type: ignore[arg-type]
        if network.version == scope.version
        else False
        for scope in scopes
    )


def opens_relay(item: str) -> bool:
    """Whether a relay_from_hosts item lets (most of) the Internet relay: `*`, or a network
    wider than /8 (IPv6 /16)."""
    if item.strip() in _EVERY_HOST:
        return True
    network = _network(item)
    return network is not None and network.prefixlen < _MIN_PREFIX[network.version]


def _closing(dropped: list[str], opens: Any) -> tuple[list[str], str]:
    """The dropped items that are legitimate paths (removals) and a note on the rest."""
    removes = [item for item in dropped if not opens(item)]
    closed = [item for item in dropped if opens(item)]
    return removes, (f"; closes {', '.join(closed)} (matches anyone)" if closed else "")


def _wanted_nets(facts: EximFacts, desired: EximDesired) -> tuple[list[str], list[str]]:
    current = facts.nets()
    kept = [item for item in current if covered(item, desired.allowed_networks)]
    removed = [item for item in current if item not in kept]
    present = set(kept)
    added = [net for net in desired.allowed_networks if net not in present]
    return kept + added, removed


def check_nets(facts: EximFacts, desired: EximDesired) -> str | None:
    wanted, removed = _wanted_nets(facts, desired)
    if removed:
        listed = ", ".join(removed)
        return f"{facts.relay_nets.name} lets {listed} relay (outside the allowed networks)"
    if wanted != facts.nets():
        return f"{facts.relay_nets.name} lacks allowed networks"
    return None


def fix_nets(facts: EximFacts, desired: EximDesired) -> list[Change]:
    wanted, dropped = _wanted_nets(facts, desired)
    removed, closes = _closing(dropped, opens_relay)
    reason = "relay only for the allowed networks (and this host)" + closes
    return [_list_change(facts, facts.relay_nets, "exim-relay-nets", wanted, reason, removed)]


def _list_change(
    facts: EximFacts, setting: Setting, rule: str, items: list[str], reason: str, removed: list[str]
) -> Change:
    target = f"{_file_label(facts)} {setting.name}"
    return Change(rule, target, setting.value, facts.render(items), reason, tuple(removed))


def _file_label(facts: EximFacts) -> str:
    return "update-exim4.conf.conf" if facts.style == DEBIAN else "exim.conf"


# --- domains --------------------------------------------------------------------------------


def _wanted_domains(facts: EximFacts, desired: EximDesired) -> tuple[list[str], list[str]]:
    current = facts.domains()
    removed = [item for item in current if item in _EVERY_DOMAIN]
    kept = [item for item in current if item not in removed]
    added = [domain for domain in desired.partner_domains if domain not in kept]
    return kept + added, removed


def check_domains(facts: EximFacts, desired: EximDesired) -> str | None:
    wanted, removed = _wanted_domains(facts, desired)
    if removed:
        return f"{facts.relay_domains.name} {', '.join(removed)} matches every domain"
    if wanted != facts.domains():
        return f"{facts.relay_domains.name} lacks partner domains"
    return None


def fix_domains(facts: EximFacts, desired: EximDesired) -> list[Change]:
    wanted, dropped = _wanted_domains(facts, desired)
    removed, closes = _closing(dropped, lambda item: item in _EVERY_DOMAIN)
    reason = "relay only to named domains; partner domains stay" + closes
    return [_list_change(facts, facts.relay_domains, "exim-relay-domains", wanted, reason, removed)]


# --- the RCPT ACL (plain exim.conf) ---------------------------------------------------------


def _refuses(statement: AclStatement) -> bool:
    """deny domains = !+local_domains..., or require domains = +local_domains..."""
    domains = statement.condition("domains")
    if domains is None:
        return False
    others = {pair[0] for pair in statement.conditions} - {"domains", "message", "log_message"}
    if statement.verb == "deny":
        return not others and "!+local_domains" in domains.replace(" ", "")
    return statement.verb == "require" and domains.replace(" ", "").startswith("+local_domains")


def _open_accept(statement: AclStatement) -> bool:
    """An accept with no condition: everyone's RCPT passes here."""
    return statement.verb == "accept" and not statement.conditions


def refusal_index(statements: tuple[AclStatement, ...]) -> int | None:
    """Index of the statement that refuses foreign domains, unless an unconditional accept
    comes first (then None: the ACL relays for everyone)."""
    for index, statement in enumerate(statements):
        if _open_accept(statement):
            return None
        if _refuses(statement):
            return index
    return None


def check_acl(facts: EximFacts, desired: EximDesired) -> str | None:
    if facts.style == DEBIAN or facts.rcpt_acl is None:
        return None
    if refusal_index(facts.rcpt_acl) is None:
        return f"ACL {facts.acl_name} accepts foreign domains (no refusal before an accept)"
    return None


def _insert_point(facts: EximFacts) -> int:
    """The line before which the refusal goes: right after the last relay accept (hosts,
    authenticated) that precedes the first unconditional accept, else before that accept,
    else at the ACL's end."""
    statements = facts.rcpt_acl or ()
    after_relay = None
    for statement in statements:
        if _open_accept(statement):
            return after_relay if after_relay is not None else statement.first
        if statement.verb == "accept":
            after_relay = statement.last + 1
    if after_relay is not None:
        return after_relay
    return statements[-1].last + 1 if statements else 0


def fix_acl(facts: EximFacts, desired: EximDesired) -> list[Change]:
    line = _insert_point(facts)
    text = "  " + "\n          ".join(REFUSAL)
    target = f"exim.conf acl {facts.acl_name} line {line + 1}"
    reason = "refuse recipients outside local_domains and relay_to_domains"
    return [Change("exim-rcpt-acl", target, "", text, reason)]


# --- authenticated relay (plain exim.conf) --------------------------------------------------


def _auth_accepts(facts: EximFacts) -> list[AclStatement]:
    return [
        s
        for s in facts.rcpt_acl or ()
        if s.verb == "accept" and s.condition("authenticated") is not None
    ]


def check_authenticated(facts: EximFacts, desired: EximDesired) -> str | None:
    if facts.style == DEBIAN or facts.rcpt_acl is None or desired.relay_authenticated == KEEP:
        return None
    present = bool(_auth_accepts(facts))
    if desired.relay_authenticated == FALSE and present:
        return "authenticated clients may relay (relay_authenticated: false)"
    if desired.relay_authenticated == TRUE and not present:
        return "authenticated clients may not relay (relay_authenticated: true)"
    return None


def fix_authenticated(facts: EximFacts, desired: EximDesired) -> list[Change]:
    target = f"exim.conf acl {facts.acl_name}"
    if desired.relay_authenticated == FALSE:
        return [
            Change(
                "exim-authenticated",
                f"{target} line {s.first + 1}",
                "accept authenticated = " + (s.condition("authenticated") or ""),
                "",
                "relay_authenticated: false",
                ("authenticated relay",),
            )
            for s in _auth_accepts(facts)
        ]
    statements = facts.rcpt_acl or ()
    index = refusal_index(statements)
    line = statements[index].first if index is not None else _insert_point(facts)
    text = "  accept  authenticated = *"
    return [
        Change(
            "exim-authenticated", f"{target} line {line + 1}", "", text, "relay_authenticated: true"
        )
    ]


EXIM_RULES: tuple[Rule[EximFacts, EximDesired, Change], ...] = (
    Rule("exim-relay-nets", check_nets, fix_nets, SOURCE_LISTS),
    Rule("exim-relay-domains", check_domains, fix_domains, SOURCE_LISTS),
    Rule(
        "exim-authenticated", check_authenticated, fix_authenticated, "RFC 2505 section 2; RFC 4954"
    ),
    Rule("exim-rcpt-acl", check_acl, fix_acl, SOURCE_ACL),
)


def line_of(change: Change) -> int:
    """The 0-based line an ACL change targets ("... line N")."""
    match = re.search(r" line (\d+)$", change.target)
    return int(match.group(1)) - 1 if match else 0


def plan_text(facts: EximFacts, changes: tuple[Change, ...]) -> str:
    """The file's new text with `changes` applied (pure): ACL edits bottom-up first (they
    sit below the main section), then the lists."""
    text = facts.text
    acl = sorted((c for c in changes if c.target.startswith("exim.conf acl")), key=line_of)
    for change in reversed(acl):
        line = line_of(change)
        if change.after:
            text = insert_lines(text, line, change.after.split("\n"))
        else:
            statement = next(s for s in facts.rcpt_acl or () if s.first == line)
            text = remove_lines(text, statement.first, statement.last)
    for change in (c for c in changes if c not in acl):
        name = change.target.split()[-1]
        if facts.style == DEBIAN:
            text = set_debian_value(text, name, change.after)
        else:
            kind = "hostlist" if name == "relay_from_hosts" else "domainlist"
            text = set_named_list(text, kind, name, _split(facts, change.after))
    return text


def desired_state(params: dict[str, Any]) -> EximDesired:
    """The module options as an EximDesired; ValueError names a bad option (nothing read or
    written yet)."""
    networks = tuple(str(n) for n in params.get("relay_allowed_networks") or ())
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=True)
        except ValueError:
            raise ValueError(
                f"relay_allowed_networks: {network!r} is not a network (CIDR)"
            ) from None
    partners = tuple(str(d) for d in params.get("relay_partner_domains") or ())
    for domain in partners:
        if not re.match(r"^([A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}$", domain):
            raise ValueError(f"relay_partner_domains: {domain!r} is not a domain name")
    authenticated = str(params.get("relay_authenticated", KEEP)).lower()
    authenticated = {"yes": TRUE, "no": FALSE, "1": TRUE, "0": FALSE}.get(
        authenticated, authenticated
    )
    if authenticated not in (KEEP, TRUE, FALSE):
        raise ValueError(f"relay_authenticated: {authenticated!r} is not keep, true or false")
    return EximDesired(networks, partners, authenticated)
