"""Postfix relay closure, the master.cf rule (pure): an smtpd service whose own `-o`
override (master(5): "-o name=value ... override the named main.cf configuration parameter")
opens the relay is fixed where it is, with `postconf -P` (postconf(1)), not only in main.cf.

Standard library only (Python 3.7+).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from postfix_change import (
        PERMIT_SASL,
        ParameterChange,
        close_restrictions,
        covered_by,
        gate_for,
        is_wide,
        table_entries,
        too_old,
    )
    from postfix_facts import (
        RELAY_SENSITIVE,
        PostfixFacts,
        is_table,
        network_key,
        split_list,
    )
    from postfix_services import describe_service, is_postscreen
    from postfix_validate import (
        DesiredRelayState,
    )
else:
    try:  # as Ansible ships it: the collection's module_utils beside this file
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_change import (
            PERMIT_SASL,
            ParameterChange,
            close_restrictions,
            covered_by,
            gate_for,
            is_wide,
            table_entries,
            too_old,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_facts import (
            RELAY_SENSITIVE,
            PostfixFacts,
            is_table,
            network_key,
            split_list,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_services import (
            describe_service,
            is_postscreen,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_validate import (
            DesiredRelayState,
        )
    except ImportError:  # loaded by path outside Ansible (tests, the target-Python check)
        from postfix_change import (
            PERMIT_SASL,
            ParameterChange,
            close_restrictions,
            covered_by,
            gate_for,
            is_wide,
            table_entries,
            too_old,
        )
        from postfix_facts import (
            RELAY_SENSITIVE,
            PostfixFacts,
            is_table,
            network_key,
            split_list,
        )
        from postfix_services import describe_service, is_postscreen
        from postfix_validate import (
            DesiredRelayState,
        )


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
        items = table_entries(facts, token) if is_table(token) else [token]
        bad = [i for i in items or [] if _bad_network(i, wanted)]
        if bad:
            dropped.extend(bad)
        else:
            kept.append(token)
    if not dropped:
        return None
    main = wanted or [i for i in split_list(facts.expanded.get("mynetworks", "")) if "$" not in i]
    after = kept or [n for n in main if not _bad_network(n, wanted)]
    removes = tuple(
        i for i in dropped if network_key(i) is None or not is_wide(network_key(i) or "")
    )
    return ParameterChange(
        "mynetworks",
        value,
        ",".join(after),
        f"the {describe_service(facts, service)} trusts {', '.join(dropped)} by its own "
        "-o mynetworks: "
        "an open relay on that service, fixed where it is set",
        service=service,
        removes=removes,
    )


def _bad_network(item: str, wanted: Sequence[str]) -> bool:
    key = network_key(item)
    if key is None:
        return False  # a host name, a negation, $mynetworks: main.cf's rules apply
    return is_wide(key) or (bool(wanted) and not covered_by(item, wanted))


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
        too_old(facts) or not split_list(_service_value(facts, service, "smtpd_relay_restrictions"))
    ):
        return None
    tokens = split_list(value)
    if name == "smtpd_relay_restrictions" and not tokens:
        recipient = split_list(_service_value(facts, service, "smtpd_recipient_restrictions"))
        gate = gate_for(facts, desired, recipient)
        if close_restrictions(recipient, desired.relay_authenticated, gate) == recipient:
            return None  # the recipient list decides, and it is closed
        sasl = [PERMIT_SASL] if desired.relay_authenticated is not False else []
        tokens = ["permit_mynetworks", *sasl]
    wanted = close_restrictions(
        tokens, desired.relay_authenticated, gate_for(facts, desired, tokens)
    )
    if wanted == split_list(value):
        return None
    return ParameterChange(
        name,
        value,
        ",".join(wanted),
        f"the {describe_service(facts, service)} decides relaying by its own -o {name}: "
        "closed where it is set",
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


def override_warnings(facts: PostfixFacts) -> list[str]:
    smtpd = set(facts.smtpd_services())
    warnings = []
    for override in facts.master_overrides:
        service = f"{override.service}/{override.service_type}"
        if override.name not in RELAY_SENSITIVE:
            continue
        if service in smtpd and override.name in OVERRIDDEN_RELAY:
            continue  # planned by plan_master_overrides
        if is_postscreen(facts, service):
            warnings.append(
                f"master.cf service {service} runs postscreen, which never relays: its "
                f"-o {override.name}={override.value} is not a relay path (POSTSCREEN_README); "
                "the smtpd it hands sessions to decides"
            )
            continue
        warnings.append(
            f"master.cf service {service} overrides {override.name} "
            f"(-o {override.name}={override.value}); that service keeps its own value"
        )
    return warnings
