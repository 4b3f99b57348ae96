"""Postfix relay closure, plan (pure): the rule table over PostfixFacts.

Each rule has the shared shape of relay_backend.Rule (id, check, fix, source). Relay
permission is decided by `smtpd_relay_restrictions` (postconf(5), Postfix >= 2.10) and, before
2.10, by `smtpd_recipient_restrictions` (SMTPD_ACCESS_README); `reject_unauth_destination`
accepts only recipients in mydestination, virtual_alias_domains, virtual_mailbox_domains and
relay_domains (RFC 2505 section 2.1: decide relaying by client address and recipient domain).
The domain rule is postfix_domains.py, the master.cf rule postfix_overrides.py, their shared
vocabulary postfix_change.py.

Standard library only (Python 3.7+).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from postfix_change import (
        PERMIT_SASL,
        UNAUTH_DESTINATION,
        ParameterChange,
        RelayPlan,
        close_restrictions,
        covered_by,
        gate_for,
        is_loopback,
        is_wide,
        source_tokens,
        table_entries,
        too_old,
        written,
    )
    from postfix_domains import (
        domain_warnings,
        plan_domains,
    )
    from postfix_facts import (
        MANAGED_PARAMETERS,
        RELAY_SENSITIVE,
        PostfixFacts,
        is_table,
        network_key,
        render_restrictions,
        split_list,
    )
    from postfix_overrides import (
        override_warnings,
        plan_master_overrides,
    )
    from postfix_services import (
        postscreen_warnings,
    )
    from postfix_validate import (
        DesiredRelayState,
    )
    from relay_backend import (
        Rule,
    )
else:
    try:  # as Ansible ships it: the collection's module_utils beside this file
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_change import (
            PERMIT_SASL,
            UNAUTH_DESTINATION,
            ParameterChange,
            RelayPlan,
            close_restrictions,
            covered_by,
            gate_for,
            is_loopback,
            is_wide,
            source_tokens,
            table_entries,
            too_old,
            written,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_domains import (
            domain_warnings,
            plan_domains,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_facts import (
            MANAGED_PARAMETERS,
            RELAY_SENSITIVE,
            PostfixFacts,
            is_table,
            network_key,
            render_restrictions,
            split_list,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_overrides import (
            override_warnings,
            plan_master_overrides,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_services import (
            postscreen_warnings,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_validate import (
            DesiredRelayState,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.relay_backend import (
            Rule,
        )
    except ImportError:  # loaded by path outside Ansible (tests, the target-Python check)
        from postfix_change import (
            PERMIT_SASL,
            UNAUTH_DESTINATION,
            ParameterChange,
            RelayPlan,
            close_restrictions,
            covered_by,
            gate_for,
            is_loopback,
            is_wide,
            source_tokens,
            table_entries,
            too_old,
            written,
        )
        from postfix_domains import (
            domain_warnings,
            plan_domains,
        )
        from postfix_facts import (
            MANAGED_PARAMETERS,
            RELAY_SENSITIVE,
            PostfixFacts,
            is_table,
            network_key,
            render_restrictions,
            split_list,
        )
        from postfix_overrides import (
            override_warnings,
            plan_master_overrides,
        )
        from postfix_services import (
            postscreen_warnings,
        )
        from postfix_validate import (
            DesiredRelayState,
        )
        from relay_backend import (
            Rule,
        )


def _network_items(facts: PostfixFacts, tokens: Sequence[str]) -> tuple[list[str], list[str]]:
    """mynetworks' items with each readable table replaced by its entries (DATABASE_README:
    a cidr: table's keys are networks; the result value is ignored for mynetworks), and the
    tables that were expanded."""
    items: list[str] = []
    tables: list[str] = []
    for token in tokens:
        entries = table_entries(facts, token) if is_table(token) else None
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
    dropped = [item for item in items if not covered_by(item, wanted)]
    removes = tuple(
        i for i in dropped if network_key(i) is None or not is_wide(network_key(i) or "")
    )
    opened = [i for i in dropped if i not in removes]
    reason = "only relay_allowed_networks may relay without authentication"
    for table in tables:
        entries = table_entries(facts, table) or []
        reason += f"; replaces {table} (entries: {', '.join(entries) or 'none'})"
    if removes:
        reason += f"; drops trusted networks {', '.join(removes)}"
    if opened:
        reason += f"; closes {', '.join(opened)} (wider than the allowed prefix)"
    return [
        ParameterChange(
            "mynetworks", written(facts, "mynetworks"), ", ".join(wanted), reason, removes=removes
        )
    ]


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
    if too_old(facts):
        return []
    name = "smtpd_relay_restrictions"
    current = source_tokens(facts, name)
    gates = [i for i, t in enumerate(current) if t in UNAUTH_DESTINATION.values()]
    before_gate = current[: gates[0] if gates else len(current)]
    tail = current[gates[0] + 1 :] if gates else []
    action = gate_for(facts, desired, current)
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
    if sasl is False and PERMIT_SASL in dropped:  # the inventory asked: said, not refused
        reason += (
            "; removes the authenticated relay path (permit_sasl_authenticated) as "
            "relay_authenticated: false asks: SASL clients can no longer relay"
        )
    removes = tuple(
        t for t in dropped if _can_grant(t) and not (t == PERMIT_SASL and sasl is False)
    )
    return [
        ParameterChange(
            name, written(facts, name), render_restrictions(wanted), reason, removes=removes
        )
    ]


def plan_recipient_restrictions(
    facts: PostfixFacts, desired: DesiredRelayState
) -> list[ParameterChange]:
    """Before Postfix 2.10 the relay decision is in smtpd_recipient_restrictions
    (SMTPD_ACCESS_README): it must reach reject_unauth_destination before any bare permit."""
    if not too_old(facts):
        return []
    name = "smtpd_recipient_restrictions"
    current = source_tokens(facts, name)
    wanted = close_restrictions(
        current, desired.relay_authenticated, gate_for(facts, desired, current)
    )
    if wanted == current:
        return []
    return [
        ParameterChange(
            name,
            written(facts, name),
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
            written(facts, name),
            "no",
            "sender-specified routing (user%domain@host, host!user) from untrusted clients is "
            "a relay path",
        )
    ]


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
    before = {name: written(facts, name) for name in MANAGED_PARAMETERS}
    if too_old(facts):
        before["smtpd_recipient_restrictions"] = written(facts, "smtpd_recipient_restrictions")
        del before["smtpd_relay_restrictions"]
    for override in facts.master_overrides:
        if override.name in RELAY_SENSITIVE:
            key = f"{override.service}/{override.service_type}/{override.name}"
            before[key] = override.value
    return RelayPlan(tuple(changes), plan_warnings(facts, desired), before)


def _network_warnings(facts: PostfixFacts, desired: DesiredRelayState) -> list[str]:
    items = _network_items(facts, split_list(facts.expanded.get("mynetworks", "")))[0]
    if desired.relay_allowed_networks is not None:
        if not any(is_loopback(key) for key in desired.relay_allowed_networks):
            return [
                "relay_allowed_networks has no loopback network: programs on the host that send "
                "through SMTP on localhost can no longer relay (sendmail/pickup is not affected)"
            ]
        return []
    wide = [i for i in items if network_key(i) is not None and is_wide(network_key(i) or "")]
    if not wide:
        return []
    return [
        f"mynetworks trusts {', '.join(wide)} (most of the Internet) and is not managed: "
        "set relay_allowed_networks"
    ]


def plan_warnings(facts: PostfixFacts, desired: DesiredRelayState) -> tuple[str, ...]:
    """What the plan cannot or does not change but the operator should know (pure)."""
    warnings = [
        *_network_warnings(facts, desired),
        *domain_warnings(facts, desired),
        *override_warnings(facts),
        *postscreen_warnings(facts, bool(plan_networks(facts, desired))),
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
