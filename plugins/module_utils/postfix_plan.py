"""Postfix relay closure, plan (pure): the rule table over PostfixFacts.

Each rule has the shared shape of relay_backend.Rule (id, check, fix, source). Relay
permission is decided by `smtpd_relay_restrictions` (postconf(5), Postfix >= 2.10) and, before
2.10, by `smtpd_recipient_restrictions` (SMTPD_ACCESS_README); `reject_unauth_destination`
accepts only recipients in mydestination, virtual_alias_domains, virtual_mailbox_domains and
relay_domains (RFC 2505 section 2.1: decide relaying by client address and recipient domain).

Standard library only (Python 3.7+).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from postfix_facts import (
        MANAGED_PARAMETERS,
        REFERENCE,
        RELAY_SENSITIVE,
        PostfixFacts,
        is_conditional_default,
        is_table,
        network_key,
        only_reference,
        render_restrictions,
        split_list,
    )
    from postfix_validate import (
        DOMAIN_CLASSES,
        MIN_PREFIX,
        DesiredRelayState,
        PlanError,
    )
    from relay_backend import Rule
else:
    try:  # as Ansible ships it: the collection's module_utils beside this file
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_facts import (
            MANAGED_PARAMETERS,
            REFERENCE,
            RELAY_SENSITIVE,
            PostfixFacts,
            is_conditional_default,
            is_table,
            network_key,
            only_reference,
            render_restrictions,
            split_list,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_validate import (
            DOMAIN_CLASSES,
            MIN_PREFIX,
            DesiredRelayState,
            PlanError,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.relay_backend import Rule
    except ImportError:  # loaded by path outside Ansible (tests, the target-Python check)
        from postfix_facts import (
            MANAGED_PARAMETERS,
            REFERENCE,
            RELAY_SENSITIVE,
            PostfixFacts,
            is_conditional_default,
            is_table,
            network_key,
            only_reference,
            render_restrictions,
            split_list,
        )
        from postfix_validate import (
            DOMAIN_CLASSES,
            MIN_PREFIX,
            DesiredRelayState,
            PlanError,
        )
        from relay_backend import Rule


# --- plan (pure) -------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterChange:
    """One parameter to set: in main.cf, or (`service` "smtp/inet") as that master.cf
    service's `-o` override (master(5)). `removes` names the relay destinations or trusted
    networks the change drops; `rule` is the id of the rule that planned it."""

    name: str
    before: str
    after: str
    reason: str
    service: str = ""
    removes: tuple[str, ...] = ()
    rule: str = ""

    @property
    def key(self) -> str:
        """The name `postconf -e` (main.cf) or `postconf -P` (service/type/name) edits."""
        return f"{self.service}/{self.name}" if self.service else self.name

    @property
    def target(self) -> str:
        return (
            f"master.cf {self.service} -o {self.name}" if self.service else f"main.cf {self.name}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "parameter": self.key,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
            "target": self.target,
            "removes": list(self.removes),
            "rule": self.rule,
        }


@dataclass(frozen=True)
class RelayPlan:
    """The changes that bring an instance to the desired relay state (empty: compliant)."""

    changes: tuple[ParameterChange, ...]
    warnings: tuple[str, ...]
    values_before: Mapping[str, str]

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def values_after(self) -> dict[str, str]:
        after = dict(self.values_before)
        after.update({change.key: change.after for change in self.changes})
        return after

    def settings(self) -> dict[str, str]:
        """main.cf parameters to write (postconf -e)."""
        return {c.name: c.after for c in self.changes if not c.service}

    def override_settings(self) -> dict[str, str]:
        """master.cf overrides to write (postconf -P service/type/name=value)."""
        return {c.key: c.after for c in self.changes if c.service}

    def removals(self) -> tuple[str, ...]:
        """Everything the plan drops, "target: item" (relay_backend.Plan.removals)."""
        return tuple(f"{c.target}: {item}" for c in self.changes for item in c.removes)

    def diff(self, main_cf: str) -> dict[str, str]:
        """Ansible's diff: the relay parameters (main.cf, then master.cf overrides as
        service/type/name) before and after, one `name = value` line each; what the plan
        removes is named in `# removes:` lines of the after side."""

        def text(values: Mapping[str, str]) -> str:
            return "".join(f"{name} = {values[name]}\n" for name in sorted(values))

        removed = "".join(f"# removes: {item}\n" for item in self.removals())
        return {
            "before": text(self.values_before),
            "after": text(self.values_after()) + removed,
            "before_header": f"{main_cf} (relay parameters)",
            "after_header": f"{main_cf} (relay parameters)",
        }


def _source_tokens(facts: PostfixFacts, name: str) -> list[str]:
    """A parameter's items as the plan edits them: as written, or expanded when Postfix's
    value is a compatibility-level conditional that cannot be edited item by item."""
    raw = facts.raw.get(name, "")
    if name not in facts.explicit and is_conditional_default(raw):
        return split_list(facts.expanded.get(name, ""))
    return split_list(raw)


def _written(facts: PostfixFacts, name: str) -> str:
    return facts.raw.get(name, "")


def _expand_token(token: str, expanded: Mapping[str, str]) -> list[str] | None:
    """Items a token stands for after $reference expansion (None: an unknown parameter)."""
    missing: list[str] = []

    def value_of(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in expanded:
            missing.append(name)
            return ""
        return expanded[name]

    text = REFERENCE.sub(value_of, token)
    return None if missing else split_list(text)


def own_names(facts: PostfixFacts) -> frozenset[str]:
    """The host's own names, which mydestination keeps whatever inbound_domains says."""
    hostname = facts.expanded.get("myhostname", "").lower()
    mydomain = facts.expanded.get("mydomain", "").lower()
    names = {"localhost", "localhost.localdomain"}
    if hostname:
        names.add(hostname)
    if mydomain:
        names.add(f"localhost.{mydomain}")
    return frozenset(names)


@dataclass
class _DomainClassPlan:
    name: str
    before: list[str]
    after: list[str]
    from_default: bool


def _plan_domain_class(
    facts: PostfixFacts,
    name: str,
    desired: DesiredRelayState,
    inbound: frozenset[str],
    own: frozenset[str],
) -> _DomainClassPlan:
    raw = facts.raw.get(name, "")
    before = _source_tokens(facts, name)
    from_default = name not in facts.explicit and is_conditional_default(raw)

    def allowed(item: str) -> bool:
        item = item.lower()
        return is_table(item) or item in inbound or (name == "mydestination" and item in own)

    after: list[str] = []
    for token in before:
        if is_table(token):
            after.append(token)
            continue
        if "$" in token:
            reference = only_reference(token)
            if reference in DOMAIN_CLASSES:
                after.append(token)  # that class is planned on its own
                continue
            items = _expand_token(token, facts.expanded)
            if items is None:
                after.append(token)
                continue
            if not desired.prune_domains or all(allowed(item) for item in items):
                after.append(token)
                continue
            after.extend(item for item in items if allowed(item) and item not in after)
            continue
        if not desired.prune_domains or allowed(token):
            after.append(token)
    return _DomainClassPlan(name, before, after, from_default)


def _covered(
    domain: str,
    name: str,
    plans: Mapping[str, _DomainClassPlan],
    facts: PostfixFacts,
    seen: frozenset[str] = frozenset(),
) -> bool:
    """Whether class `name`, as planned, accepts `domain` (literal, $reference or table)."""
    if name in seen:
        return False
    for token in plans[name].after:
        if is_table(token):
            if domain in facts.table_hits.get(token, frozenset()):
                return True
            continue
        reference = only_reference(token)
        if reference is not None and reference in plans:
            if _covered(domain, reference, plans, facts, seen | {name}):
                return True
            continue
        items = _expand_token(token, facts.expanded) if "$" in token else [token]
        for item in items or []:
            if item.lower() == domain:
                return True
            if is_table(item) and domain in facts.table_hits.get(item, frozenset()):
                return True
    return False


def _holds_now(domain: str, name: str, facts: PostfixFacts) -> bool:
    """Whether class `name` itself lists `domain` today (references to other classes aside)."""
    for token in _source_tokens(facts, name):
        if only_reference(token) in DOMAIN_CLASSES:
            continue
        items = _expand_token(token, facts.expanded) if "$" in token else [token]
        for item in items or []:
            if item.lower() == domain:
                return True
            if is_table(item) and domain in facts.table_hits.get(item, frozenset()):
                return True
    return False


def _inbound_target(facts: PostfixFacts, desired: DesiredRelayState, missing: list[str]) -> str:
    if desired.inbound_domain_class != "auto":
        return desired.inbound_domain_class
    inbound = desired.inbound_domains or ()
    used = [
        name
        for name in DOMAIN_CLASSES
        if any(_holds_now(domain, name, facts) for domain in inbound if domain not in missing)
    ]
    if len(used) == 1:
        return used[0]
    how = (
        "none of the other inbound domains is accepted today"
        if not used
        else f"the host uses {' and '.join(used)} for them"
    )
    raise PlanError(
        f"inbound domain(s) {', '.join(missing)} are not accepted by this host and "
        f"inbound_domain_class is auto, but {how}: set inbound_domain_class to mydestination "
        "(local delivery), relay_domains (forward to an inner server), virtual_alias_domains "
        "or virtual_mailbox_domains"
    )


def _domain_scope(desired: DesiredRelayState) -> DesiredRelayState | None:
    """The desired state the domain rule plans: inbound and partner domains together; only
    the partners (added, never pruned) when inbound_domains is not managed."""
    partners = desired.partner_domains
    if desired.inbound_domains is None:
        if not partners:
            return None
        return replace(desired, inbound_domains=partners, prune_domains=False)
    merged = tuple(dict.fromkeys([*desired.inbound_domains, *partners]))
    return replace(desired, inbound_domains=merged)


def _domain_items(facts: PostfixFacts, tokens: Sequence[str]) -> list[str]:
    """The domains tokens stand for ($references expanded, other classes left to their own
    plan), lower-cased: what a change of the class really stops accepting."""
    items: list[str] = []
    for token in tokens:
        if only_reference(token) in DOMAIN_CLASSES:
            continue
        expanded = _expand_token(token, facts.expanded) if "$" in token else [token]
        items.extend(item.lower() for item in expanded or [token])
    return items


def _class_change(facts: PostfixFacts, plan: _DomainClassPlan) -> ParameterChange:
    kept = set(_domain_items(facts, plan.after))
    gone = tuple(dict.fromkeys(i for i in _domain_items(facts, plan.before) if i not in kept))
    removed = [t for t in plan.before if t not in plan.after]
    added = [t for t in plan.after if t not in plan.before]
    why = []
    if removed:
        why.append(f"not inbound domains: {', '.join(removed)}")
    if added:
        why.append(f"accept inbound domains: {', '.join(added)}")
    return ParameterChange(
        plan.name,
        _written(facts, plan.name),
        ", ".join(plan.after),
        "; ".join(why),
        removes=gone,
    )


def plan_domains(facts: PostfixFacts, desired: DesiredRelayState) -> list[ParameterChange]:
    """The domain classes accept the inbound domains, the partner domains (a missing one is
    added to relay_domains) and the host's own names; with prune_domains, other literal
    domains go, each named in `removes` (postconf(5) relay_domains, mydestination)."""
    scoped = _domain_scope(desired)
    if scoped is None or scoped.inbound_domains is None:
        return []
    inbound = frozenset(scoped.inbound_domains)
    own = own_names(facts)
    plans = {name: _plan_domain_class(facts, name, scoped, inbound, own) for name in DOMAIN_CLASSES}

    def missing(domains: Sequence[str]) -> list[str]:
        return [d for d in domains if not any(_covered(d, n, plans, facts) for n in DOMAIN_CLASSES)]

    partners = missing(desired.partner_domains)
    plans["relay_domains"].after.extend(partners)
    absent = [d for d in missing(desired.inbound_domains or ()) if d not in partners]
    if absent:
        plans[_inbound_target(facts, desired, absent)].after.extend(absent)
    return [
        _class_change(facts, plans[name])
        for name in DOMAIN_CLASSES
        if plans[name].after != plans[name].before
    ]


def _table_entries(facts: PostfixFacts, token: str) -> list[str] | None:
    contents = facts.tables.get(token)
    if contents is None or contents.error:
        return None
    return list(contents.keys())


def _wide(key: str) -> bool:
    return _prefix(key) < MIN_PREFIX[_version(key)]


def _covered_by(item: str, wanted: Sequence[str]) -> bool:
    key = network_key(item)
    if key is None:
        return item in wanted
    network = _network(key)
    return any(
        network.version == _network(w).version and network.subnet_of(_network(w))  # type: ignore[arg-type]
        for w in wanted
    )


def _network(key: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(key.replace("[", "").replace("]", ""))


def _network_items(facts: PostfixFacts, tokens: Sequence[str]) -> tuple[list[str], list[str]]:
    """mynetworks' items with each readable table replaced by its entries (DATABASE_README:
    a cidr: table's keys are networks; the result value is ignored for mynetworks), and the
    tables that were expanded."""
    items: list[str] = []
    tables: list[str] = []
    for token in tokens:
        entries = _table_entries(facts, token) if is_table(token) else None
        if entries is None:
            items.append(token)
        else:
            items.extend(entries)
            tables.append(token)
    return items, tables


def plan_networks(facts: PostfixFacts, desired: DesiredRelayState) -> list[ParameterChange]:
    """mynetworks becomes relay_allowed_networks. A lookup table in it is read: when its
    entries are exactly the wanted networks it stays, else the plan names every entry that
    replacing it drops. Networks narrower than MIN_PREFIX that go are `removes`; wider ones
    are the open relay being closed (RFC 2505 section 2.1)."""
    if desired.relay_allowed_networks is None:
        return []
    wanted = list(desired.relay_allowed_networks)
    items, tables = _network_items(facts, split_list(facts.expanded.get("mynetworks", "")))
    keys = [network_key(item) for item in items]
    if None not in keys and set(keys) == set(wanted) and len(keys) == len(set(keys)):
        return []
    dropped = [item for item in items if not _covered_by(item, wanted)]
    removes = tuple(i for i in dropped if network_key(i) is None or not _wide(network_key(i) or ""))
    opened = [i for i in dropped if i not in removes]
    reason = "only relay_allowed_networks may relay without authentication"
    for table in tables:
        entries = _table_entries(facts, table) or []
        reason += f"; replaces {table} (entries: {', '.join(entries) or 'none'})"
    if removes:
        reason += f"; drops trusted networks {', '.join(removes)}"
    if opened:
        reason += f"; closes {', '.join(opened)} (wider than the allowed prefix)"
    return [
        ParameterChange(
            "mynetworks", _written(facts, "mynetworks"), ", ".join(wanted), reason, removes=removes
        )
    ]


def _version(key: str) -> int:
    return 6 if key.startswith("[") else 4


def _prefix(key: str) -> int:
    return int(key.rsplit("/", 1)[1])


def _loopback(key: str) -> bool:
    text = key.replace("[", "").replace("]", "")
    return ipaddress.ip_network(text).overlaps(
        ipaddress.ip_network("127.0.0.0/8" if _version(key) == 4 else "::1/128")
    )


UNAUTH_DESTINATION = {
    "permanent": "reject_unauth_destination",
    "temporary": "defer_unauth_destination",
}
# Restrictions that end the relay decision for a client that got this far without a permit
# (postconf(5) smtpd_relay_restrictions; SMTPD_ACCESS_README "Restriction lists").
GATES = ("reject_unauth_destination", "defer_unauth_destination", "reject", "defer")
PERMIT_SASL = "permit_sasl_authenticated"
PERMIT_ALL = "permit"  # unconditional: a relay for anyone before a gate


def _gate(facts: PostfixFacts, desired: DesiredRelayState, tokens: Sequence[str]) -> str:
    if desired.relay_refusal != "keep":
        return UNAUTH_DESTINATION[desired.relay_refusal]
    for token in [*tokens, *_source_tokens(facts, "smtpd_relay_restrictions")]:
        if token in UNAUTH_DESTINATION.values():
            return token
    return UNAUTH_DESTINATION["permanent"]


def close_restrictions(tokens: Sequence[str], authenticated: bool | None, gate: str) -> list[str]:
    """A restriction list that can no longer permit relaying to anyone: the first bare
    `permit` before a gate, or the end of a list without a gate (a list that runs out
    permits), becomes permit_mynetworks (and permit_sasl_authenticated when `authenticated` is
    True), then the gate. permit_sasl_authenticated goes only when `authenticated` is False.
    A list that already gates before any permit is unchanged."""
    out: list[str] = []
    for index, token in enumerate(tokens):
        if token in GATES:
            return [*out, *tokens[index:]]
        if token == PERMIT_ALL:
            return [*out, *_trusted(out, authenticated), gate, *tokens[index + 1 :]]
        if token == PERMIT_SASL and authenticated is False:
            continue
        out.append(token)
    return [*out, *_trusted(out, authenticated), gate]


def _trusted(before: Sequence[str], authenticated: bool | None) -> list[str]:
    wanted = ["permit_mynetworks", *([PERMIT_SASL] if authenticated else [])]
    return [token for token in wanted if token not in before]


def _can_grant(token: str) -> bool:
    """A restriction that can permit a client or destination (a relay path someone set up)."""
    return token.startswith(("permit_", "check_")) and token not in ("permit_mynetworks",)


def plan_relay_restrictions(
    facts: PostfixFacts, desired: DesiredRelayState
) -> list[ParameterChange]:
    """smtpd_relay_restrictions (Postfix >= 2.10): permit_mynetworks,
    [permit_sasl_authenticated: kept as it is by default, added or removed when
    relay_authenticated says so], then the unauth-destination gate; what followed the old gate
    stays after it (postconf(5) smtpd_relay_restrictions)."""
    if _too_old(facts):
        return []
    name = "smtpd_relay_restrictions"
    current = _source_tokens(facts, name)
    gates = [i for i, t in enumerate(current) if t in UNAUTH_DESTINATION.values()]
    before_gate = current[: gates[0] if gates else len(current)]
    tail = current[gates[0] + 1 :] if gates else []
    action = _gate(facts, desired, current)
    sasl = desired.relay_authenticated
    head = ["permit_mynetworks"]
    if sasl or (sasl is None and PERMIT_SASL in before_gate):
        head.append(PERMIT_SASL)
    wanted = [*head, action, *tail]
    if wanted == current:
        return []
    reason = f"relay only for mynetworks{' and SASL clients' if PERMIT_SASL in head else ''}"
    reason += f", then {action}"
    dropped = [t for t in before_gate if t not in head]
    if dropped:
        reason += f" (dropped before it: {', '.join(dropped)})"
    removes = tuple(
        t for t in dropped if _can_grant(t) and not (t == PERMIT_SASL and sasl is False)
    )
    return [
        ParameterChange(
            name, _written(facts, name), render_restrictions(wanted), reason, removes=removes
        )
    ]


def _too_old(facts: PostfixFacts) -> bool:
    version = _version_tuple(facts.mail_version)
    return bool(version) and version < (2, 10)


def plan_recipient_restrictions(
    facts: PostfixFacts, desired: DesiredRelayState
) -> list[ParameterChange]:
    """Before Postfix 2.10 the relay decision is in smtpd_recipient_restrictions
    (SMTPD_ACCESS_README): it must reach reject_unauth_destination before any bare permit."""
    if not _too_old(facts):
        return []
    name = "smtpd_recipient_restrictions"
    current = _source_tokens(facts, name)
    wanted = close_restrictions(
        current, desired.relay_authenticated, _gate(facts, desired, current)
    )
    if wanted == current:
        return []
    return [
        ParameterChange(
            name,
            _written(facts, name),
            render_restrictions(wanted),
            f"Postfix {facts.mail_version} decides relaying here (no smtpd_relay_restrictions): "
            "no permit before the unauth-destination gate",
        )
    ]


def plan_routing(facts: PostfixFacts, desired: DesiredRelayState) -> list[ParameterChange]:
    """allow_untrusted_routing = no (postconf(5)): sender-specified routes are a relay path."""
    name = "allow_untrusted_routing"
    if facts.expanded.get(name, "no").strip().lower() == "no":
        return []
    return [
        ParameterChange(
            name,
            _written(facts, name),
            "no",
            "sender-specified routing (user%domain@host, host!user) from untrusted clients is "
            "a relay path",
        )
    ]


def _override_networks(
    facts: PostfixFacts, desired: DesiredRelayState, service: str, value: str
) -> ParameterChange | None:
    """A service's `-o mynetworks=...` (master(5)): entries wider than the allowed prefix, or
    outside relay_allowed_networks when it is managed, go (a table with such an entry goes
    whole, its entries named); when nothing is left the service gets main.cf's networks."""
    wanted = list(desired.relay_allowed_networks or ())
    kept: list[str] = []
    dropped: list[str] = []
    for token in split_list(value):
        items = _table_entries(facts, token) if is_table(token) else [token]
        bad = [i for i in items or [] if _bad_network(i, wanted)]
        if bad:
            dropped.extend(bad)
        else:
            kept.append(token)
    if not dropped:
        return None
    main = wanted or [i for i in split_list(facts.expanded.get("mynetworks", "")) if "$" not in i]
    after = kept or [n for n in main if not _bad_network(n, wanted)]
    removes = tuple(i for i in dropped if network_key(i) is None or not _wide(network_key(i) or ""))
    return ParameterChange(
        "mynetworks",
        value,
        ",".join(after),
        f"the {service} service trusts {', '.join(dropped)} by its own -o mynetworks: "
        "an open relay on that service, fixed where it is set",
        service=service,
        removes=removes,
    )


def _bad_network(item: str, wanted: Sequence[str]) -> bool:
    key = network_key(item)
    if key is None:
        return False  # a host name, a negation, $mynetworks: main.cf's rules apply
    return _wide(key) or (bool(wanted) and not _covered_by(item, wanted))


def _service_value(facts: PostfixFacts, service: str, name: str) -> str:
    for override in facts.master_overrides:
        if f"{override.service}/{override.service_type}" == service and override.name == name:
            return override.value
    return facts.expanded.get(name, "")


def _override_restrictions(
    facts: PostfixFacts, desired: DesiredRelayState, service: str, name: str, value: str
) -> ParameterChange | None:
    """A service's own relay decision (`-o smtpd_relay_restrictions=`, and
    `-o smtpd_recipient_restrictions=` where that decides: Postfix < 2.10 or an empty relay
    list) closed in place with close_restrictions; a list that already gates is unchanged
    (Debian's submission `permit_sasl_authenticated,reject` stays)."""
    if name == "smtpd_recipient_restrictions" and not (
        _too_old(facts)
        or not split_list(_service_value(facts, service, "smtpd_relay_restrictions"))
    ):
        return None
    tokens = split_list(value)
    if name == "smtpd_relay_restrictions" and not tokens:
        recipient = split_list(_service_value(facts, service, "smtpd_recipient_restrictions"))
        gate = _gate(facts, desired, recipient)
        if close_restrictions(recipient, desired.relay_authenticated, gate) == recipient:
            return None  # the recipient list decides, and it is closed
        sasl = [PERMIT_SASL] if desired.relay_authenticated is not False else []
        tokens = ["permit_mynetworks", *sasl]
    wanted = close_restrictions(tokens, desired.relay_authenticated, _gate(facts, desired, tokens))
    if wanted == split_list(value):
        return None
    return ParameterChange(
        name,
        value,
        ",".join(wanted),
        f"the {service} service decides relaying by its own -o {name}: closed where it is set",
        service=service,
    )


OVERRIDDEN_RELAY = ("mynetworks", "smtpd_relay_restrictions", "smtpd_recipient_restrictions")


def plan_master_overrides(facts: PostfixFacts, desired: DesiredRelayState) -> list[ParameterChange]:
    """Every smtpd service's relay overrides (postconf -P; master(5) -o name=value), planned
    and fixed in master.cf: main.cf alone cannot close a relay a service opens itself."""
    smtpd = set(facts.smtpd_services())
    changes = []
    for override in facts.master_overrides:
        service = f"{override.service}/{override.service_type}"
        if service not in smtpd or override.name not in OVERRIDDEN_RELAY:
            continue
        if override.name == "mynetworks":
            change = _override_networks(facts, desired, service, override.value)
        else:
            change = _override_restrictions(facts, desired, service, override.name, override.value)
        if change is not None:
            changes.append(change)
    return changes


def _version_tuple(text: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", text)[:3]
    return tuple(int(n) for n in numbers)


if TYPE_CHECKING:
    PlanFix = Callable[[PostfixFacts, DesiredRelayState], list[ParameterChange]]


def _rule(
    rule_id: str, fix: PlanFix, source: str
) -> Rule[PostfixFacts, DesiredRelayState, ParameterChange]:
    """A rule of the shared shape whose check is "its fix has something to do"."""

    def check(facts: PostfixFacts, desired: DesiredRelayState) -> str | None:
        reasons = [change.reason for change in fix(facts, desired)]
        return "; ".join(reasons) if reasons else None

    return Rule(rule_id, check, fix, source)


# The Postfix rule table, in plan order (docs/sources.md has each source).
RULES = (
    _rule("postfix-mynetworks", plan_networks, "postconf(5) mynetworks; RFC 2505 section 2.1"),
    _rule(
        "postfix-relay-restrictions",
        plan_relay_restrictions,
        "postconf(5) smtpd_relay_restrictions; RFC 2505 section 2",
    ),
    _rule(
        "postfix-recipient-restrictions",
        plan_recipient_restrictions,
        "SMTPD_ACCESS_README; postconf(5) smtpd_recipient_restrictions (before 2.10)",
    ),
    _rule("postfix-untrusted-routing", plan_routing, "postconf(5) allow_untrusted_routing"),
    _rule(
        "postfix-domains", plan_domains, "postconf(5) relay_domains, mydestination; RFC 2505 2.1"
    ),
    _rule(
        "postfix-master-overrides",
        plan_master_overrides,
        "master(5) -o name=value; postconf(1) -P",
    ),
)


def plan_relay(facts: PostfixFacts, desired: DesiredRelayState) -> RelayPlan:
    """The parameter changes that close the relay as `desired` says (pure): each rule of
    RULES whose check finds a problem contributes its fix."""
    changes: list[ParameterChange] = []
    for rule in RULES:
        if rule.check(facts, desired) is not None:
            changes.extend(replace(change, rule=rule.id) for change in rule.fix(facts, desired))
    before = {name: _written(facts, name) for name in MANAGED_PARAMETERS}
    if _too_old(facts):
        before["smtpd_recipient_restrictions"] = _written(facts, "smtpd_recipient_restrictions")
        del before["smtpd_relay_restrictions"]
    for override in facts.master_overrides:
        if override.name in RELAY_SENSITIVE:
            key = f"{override.service}/{override.service_type}/{override.name}"
            before[key] = override.value
    return RelayPlan(tuple(changes), plan_warnings(facts, desired), before)


def _network_warnings(facts: PostfixFacts, desired: DesiredRelayState) -> list[str]:
    items = _network_items(facts, split_list(facts.expanded.get("mynetworks", "")))[0]
    if desired.relay_allowed_networks is not None:
        if not any(_loopback(key) for key in desired.relay_allowed_networks):
            return [
                "relay_allowed_networks has no loopback network: programs on the host that send "
                "through SMTP on localhost can no longer relay (sendmail/pickup is not affected)"
            ]
        return []
    wide = [i for i in items if network_key(i) is not None and _wide(network_key(i) or "")]
    if not wide:
        return []
    return [
        f"mynetworks trusts {', '.join(wide)} (most of the Internet) and is not managed: "
        "set relay_allowed_networks"
    ]


def _domain_warnings(facts: PostfixFacts, desired: DesiredRelayState) -> list[str]:
    if desired.inbound_domains is None:
        return []
    wanted = {*desired.inbound_domains, *desired.partner_domains}
    warnings = []
    for name in DOMAIN_CLASSES:
        for token in split_list(facts.expanded.get(name, "")):
            if desired.prune_domains and is_table(token):
                entries = _table_entries(facts, token)
                extra = [e for e in entries or [] if e.lower() not in wanted]
                listed = f" (beyond them: {', '.join(extra)})" if extra else ""
                warnings.append(
                    f"{name} uses the lookup table {token}; postfix_relay does not edit tables, "
                    f"so domains listed there beyond inbound_domains stay accepted{listed}"
                )
        for token in _source_tokens(facts, name):
            unknown = "$" in token and _expand_token(token, facts.expanded) is None
            if unknown and only_reference(token) not in DOMAIN_CLASSES:
                warnings.append(f"{name} refers to an unknown parameter in {token}; kept as is")
    return warnings


def _override_warnings(facts: PostfixFacts) -> list[str]:
    smtpd = set(facts.smtpd_services())
    warnings = []
    for override in facts.master_overrides:
        service = f"{override.service}/{override.service_type}"
        if override.name not in RELAY_SENSITIVE:
            continue
        if service in smtpd and override.name in OVERRIDDEN_RELAY:
            continue  # planned by plan_master_overrides
        warnings.append(
            f"master.cf service {service} overrides {override.name} "
            f"(-o {override.name}={override.value}); that service keeps its own value"
        )
    return warnings


def plan_warnings(facts: PostfixFacts, desired: DesiredRelayState) -> tuple[str, ...]:
    """What the plan cannot or does not change but the operator should know (pure)."""
    warnings = [
        *_network_warnings(facts, desired),
        *_domain_warnings(facts, desired),
        *_override_warnings(facts),
    ]
    if desired.relay_authenticated and facts.expanded.get("smtpd_sasl_auth_enable") != "yes":
        warnings.append(
            "relay_authenticated is true but smtpd_sasl_auth_enable is not yes: no client can "
            "authenticate, so only mynetworks can relay"
        )
    for table, error in sorted(facts.table_errors.items()):
        if table == "master.cf":
            warnings.append(f"master.cf {error}")
        else:
            warnings.append(f"postmap could not query {table}: {error}")
    for table, contents in sorted(facts.tables.items()):
        if contents.error:
            warnings.append(f"could not read {table}: {contents.error}")
    return tuple(dict.fromkeys(warnings))
