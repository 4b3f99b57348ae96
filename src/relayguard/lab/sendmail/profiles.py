"""Lab Sendmail profiles as data: the mc features and access entries of a known kind of server.

Sendmail refuses to relay by default since 8.9 (cf/README, "Anti-Spam Configuration Control");
the access database's ``Connect:127.0.0.1 RELAY`` keeps the machine itself trusted, so a probe
from any other 127.x address is an untrusted, "remote" client. ``promiscuous_relay`` is the
feature that turns every check off (docs/sources.md#sendmail-cf-readme).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from relayguard.vocabulary import Verdict


@dataclass(frozen=True)
class SendmailProfile:
    name: str
    summary: str
    features: tuple[str, ...]  # FEATURE() lines beyond the lab's plumbing
    access: tuple[tuple[str, str], ...]  # access db: (key, value)
    relay_domains: tuple[str, ...]  # the relay-domains file (class R)
    untrusted_verdict: Verdict


_LOCALHOST = (("Connect:127.0.0.1", "RELAY"), ("Connect:IPv6:::1", "RELAY"))

OPEN_RELAY = SendmailProfile(
    name="open_relay",
    summary="FEATURE(`promiscuous_relay'): relays for anyone",
    features=("promiscuous_relay",),
    access=_LOCALHOST,
    relay_domains=(),
    untrusted_verdict=Verdict.OPEN,
)

CLOSED = SendmailProfile(
    name="closed",
    summary="stock relaying rules: 127.0.0.1 relays, everyone else gets 550 Relaying denied",
    features=(),
    access=_LOCALHOST,
    relay_domains=(),
    untrusted_verdict=Verdict.CLOSED,
)

PROFILES: Mapping[str, SendmailProfile] = MappingProxyType(
    {p.name: p for p in (OPEN_RELAY, CLOSED)}
)


def profile(name: str) -> SendmailProfile:
    """The profile called `name`; KeyError names the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise KeyError(f"unknown Sendmail profile {name!r}; known: {known}") from None
