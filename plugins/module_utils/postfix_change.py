"""Postfix relay closure, the plan's vocabulary (pure): a change (main.cf parameter or
master.cf service override), the plan, and the helpers every Postfix rule shares — a
parameter's tokens as written or expanded, networks and their prefixes, the unauth-destination
gate and `close_restrictions` (SMTPD_ACCESS_README: a restriction list is evaluated in order,
the first permit or reject decides, a list that runs out permits).

Standard library only (Python 3.7+).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from postfix_facts import (
        REFERENCE,
        PostfixFacts,
        is_conditional_default,
        network_key,
        split_list,
    )
    from postfix_validate import (
        MIN_PREFIX,
        DesiredRelayState,
    )
else:
    try:  # as Ansible ships it: the collection's module_utils beside this file
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_facts import (
            REFERENCE,
            PostfixFacts,
            is_conditional_default,
            network_key,
            split_list,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_validate import (
            MIN_PREFIX,
            DesiredRelayState,
        )
    except ImportError:  # loaded by path outside Ansible (tests, the target-Python check)
        from postfix_facts import (
            REFERENCE,
            PostfixFacts,
            is_conditional_default,
            network_key,
            split_list,
        )
        from postfix_validate import (
            MIN_PREFIX,
            DesiredRelayState,
        )


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


def source_tokens(facts: PostfixFacts, name: str) -> list[str]:
    """A parameter's items as the plan edits them: as written, or expanded when Postfix's
    value is a compatibility-level conditional that cannot be edited item by item."""
    raw = facts.raw.get(name, "")
    if name not in facts.explicit and is_conditional_default(raw):
        return split_list(facts.expanded.get(name, ""))
    return split_list(raw)


def written(facts: PostfixFacts, name: str) -> str:
    return facts.raw.get(name, "")


def expand_token(token: str, expanded: Mapping[str, str]) -> list[str] | None:
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


def table_entries(facts: PostfixFacts, token: str) -> list[str] | None:
    contents = facts.tables.get(token)
    if contents is None or contents.error:
        return None
    return list(contents.keys())


def is_wide(key: str) -> bool:
    return prefix_length(key) < MIN_PREFIX[ip_version(key)]


def covered_by(item: str, wanted: Sequence[str]) -> bool:
    key = network_key(item)
    if key is None:
        return item in wanted
    network = as_network(key)
    return any(
        network.version == as_network(w).version and network.subnet_of(as_network(w))  # type: ignore[arg-type]
        for w in wanted
    )


def as_network(key: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(key.replace("[", "").replace("]", ""))


def ip_version(key: str) -> int:
    return 6 if key.startswith("[") else 4


def prefix_length(key: str) -> int:
    return int(key.rsplit("/", 1)[1])


def is_loopback(key: str) -> bool:
    text = key.replace("[", "").replace("]", "")
    return ipaddress.ip_network(text).overlaps(
        ipaddress.ip_network("127.0.0.0/8" if ip_version(key) == 4 else "::1/128")
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


def gate_for(facts: PostfixFacts, desired: DesiredRelayState, tokens: Sequence[str]) -> str:
    if desired.relay_refusal != "keep":
        return UNAUTH_DESTINATION[desired.relay_refusal]
    for token in [*tokens, *source_tokens(facts, "smtpd_relay_restrictions")]:
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


def too_old(facts: PostfixFacts) -> bool:
    version = version_tuple(facts.mail_version)
    return bool(version) and version < (2, 10)


def version_tuple(text: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", text)[:3]
    return tuple(int(n) for n in numbers)
