"""Lab Exim profiles as data: the relay lists that make a known kind of server.

Every profile is rendered into the same plain exim.conf (`relayguard.lab.exim.config`), whose
RCPT ACL is the one of Exim's default configuration: accept `+relay_from_hosts` and
authenticated clients, then refuse any domain that is not local or a relay domain, then
`require verify = recipient` (docs/sources.md#exim-acl). The host 127.0.0.1 is always trusted,
so a probe from any other 127.x address is an untrusted, "remote" client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from relayguard.vocabulary import Verdict


@dataclass(frozen=True)
class EximProfile:
    name: str
    summary: str
    relay_from_hosts: tuple[str, ...]
    relay_to_domains: tuple[str, ...]
    untrusted_verdict: Verdict


OPEN_RELAY = EximProfile(
    name="open_relay",
    summary="relay_from_hosts is every address (0.0.0.0/0 and ::/0): relays for anyone",
    relay_from_hosts=("127.0.0.1", "0.0.0.0/0", "::/0"),
    relay_to_domains=(),
    untrusted_verdict=Verdict.OPEN,
)

CLOSED = EximProfile(
    name="closed",
    summary="relays for 127.0.0.1 only; refuses other domains with 550 relay not permitted",
    relay_from_hosts=("127.0.0.1", "::1"),
    relay_to_domains=(),
    untrusted_verdict=Verdict.CLOSED,
)

PROFILES: Mapping[str, EximProfile] = MappingProxyType({p.name: p for p in (OPEN_RELAY, CLOSED)})


def profile(name: str) -> EximProfile:
    """The profile called `name`; KeyError names the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown Exim profile {name!r}; known: {', '.join(PROFILES)}") from None
