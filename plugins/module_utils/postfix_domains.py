"""Postfix relay closure, the domain rule (pure): mydestination, virtual_alias_domains,
virtual_mailbox_domains and relay_domains accept the inbound domains, the partner domains
(relay_partner_domains, added to relay_domains when missing) and the host's own names; with
prune_domains other literal domains go, each named in the change's `removes`
(postconf(5) relay_domains; RFC 2505 section 2.1). Lookup tables are never edited.

Standard library only (Python 3.7+).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from postfix_change import (
        ParameterChange,
        expand_token,
        source_tokens,
        table_entries,
        written,
    )
    from postfix_facts import (
        PostfixFacts,
        is_conditional_default,
        is_table,
        only_reference,
        split_list,
    )
    from postfix_validate import (
        DOMAIN_CLASSES,
        DesiredRelayState,
        PlanError,
    )
else:
    try:  # as Ansible ships it: the collection's module_utils beside this file
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_change import (
            ParameterChange,
            expand_token,
            source_tokens,
            table_entries,
            written,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_facts import (
            PostfixFacts,
            is_conditional_default,
            is_table,
            only_reference,
            split_list,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_validate import (
            DOMAIN_CLASSES,
            DesiredRelayState,
            PlanError,
        )
    except ImportError:  # loaded by path outside Ansible (tests, the target-Python check)
        from postfix_change import (
            ParameterChange,
            expand_token,
            source_tokens,
            table_entries,
            written,
        )
        from postfix_facts import (
            PostfixFacts,
            is_conditional_default,
            is_table,
            only_reference,
            split_list,
        )
        from postfix_validate import (
            DOMAIN_CLASSES,
            DesiredRelayState,
            PlanError,
        )


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
    before = source_tokens(facts, name)
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
            items = expand_token(token, facts.expanded)
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
        items = expand_token(token, facts.expanded) if "$" in token else [token]
        for item in items or []:
            if item.lower() == domain:
                return True
            if is_table(item) and domain in facts.table_hits.get(item, frozenset()):
                return True
    return False


def _holds_now(domain: str, name: str, facts: PostfixFacts) -> bool:
    """Whether class `name` itself lists `domain` today (references to other classes aside)."""
    for token in source_tokens(facts, name):
        if only_reference(token) in DOMAIN_CLASSES:
            continue
        items = expand_token(token, facts.expanded) if "$" in token else [token]
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
        expanded = expand_token(token, facts.expanded) if "$" in token else [token]
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
        written(facts, plan.name),
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


def domain_warnings(facts: PostfixFacts, desired: DesiredRelayState) -> list[str]:
    if desired.inbound_domains is None:
        return []
    wanted = {*desired.inbound_domains, *desired.partner_domains}
    warnings = []
    for name in DOMAIN_CLASSES:
        for token in split_list(facts.expanded.get(name, "")):
            if desired.prune_domains and is_table(token):
                entries = table_entries(facts, token)
                extra = [e for e in entries or [] if e.lower() not in wanted]
                listed = f" (beyond them: {', '.join(extra)})" if extra else ""
                warnings.append(
                    f"{name} uses the lookup table {token}; postfix_relay does not edit tables, "
                    f"so domains listed there beyond inbound_domains stay accepted{listed}"
                )
        for token in source_tokens(facts, name):
            unknown = "$" in token and expand_token(token, facts.expanded) is None
            if unknown and only_reference(token) not in DOMAIN_CLASSES:
                warnings.append(f"{name} refers to an unknown parameter in {token}; kept as is")
    return warnings
