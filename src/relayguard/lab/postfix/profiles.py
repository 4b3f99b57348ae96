"""Lab Postfix profiles as data: named main.cf overrides that make a known kind of server.

Each profile is applied on top of `postfix_config.base_parameters` (which trusts only
127.0.0.1), so a probe bound to any other 127.x.y.z address is an untrusted, "remote" client
and a probe from 127.0.0.1 is a trusted one. `untrusted_verdict` is what a correct relay probe
must conclude from such an untrusted source; from 127.0.0.1 every profile relays (vantage
matters).

Sources: postconf(5) for each parameter; Debian's postfix.postinst for `debian_default`
(docs/sources.md#postfix-debian-defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from relayguard.vocabulary import Verdict


def _frozen(parameters: dict[str, str]) -> Mapping[str, str]:
    return MappingProxyType(parameters)


@dataclass(frozen=True)
class PostfixProfile:
    """One kind of server: its name, what it shows, its main.cf overrides, the right verdict."""

    name: str
    summary: str
    parameters: Mapping[str, str] = field(repr=False)
    untrusted_verdict: Verdict
    # Postfix parameter values a reader of a report may want to quote (e.g. the error limit).
    notes: str = ""


# The relay decision Postfix makes for every RCPT (postconf(5) smtpd_relay_restrictions).
_CLOSED_RELAY = "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"

OPEN_RELAY = PostfixProfile(
    name="open_relay",
    summary="trusts every client (mynetworks = 0.0.0.0/0): relays for anyone",
    parameters=_frozen(
        {
            # The classic misconfiguration: "my network" is the whole Internet.
            "mynetworks": "0.0.0.0/0",
            "smtpd_relay_restrictions": _CLOSED_RELAY,
            "smtpd_error_sleep_time": "0s",
        }
    ),
    untrusted_verdict=Verdict.OPEN,
)

CLOSED = PostfixProfile(
    name="closed",
    summary="trusts 127.0.0.1 only and rejects unauthorised relaying with 5xx",
    parameters=_frozen(
        {
            "mynetworks": "127.0.0.1/32",
            "smtpd_relay_restrictions": _CLOSED_RELAY,
            # Postfix's error limits stay at their defaults (soft 10, hard 20); only the
            # 1 s sleep per error after the soft limit goes, so long probes stay quick.
            "smtpd_error_sleep_time": "0s",
        }
    ),
    untrusted_verdict=Verdict.CLOSED,
)

DEBIAN_DEFAULT = PostfixProfile(
    name="debian_default",
    summary="Debian's packaged restrictions: unauthorised relaying deferred with 4xx",
    parameters=_frozen(
        {
            # Debian postfix.postinst on a fresh install (docs/sources.md#postfix-debian-defaults).
            "smtpd_relay_restrictions": (
                "permit_mynetworks permit_sasl_authenticated defer_unauth_destination"
            ),
            "smtpd_banner": "$myhostname ESMTP $mail_name (Debian/GNU)",
            # Debian's debconf default is 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128, which
            # on loopback would trust every probe source; the lab narrows it to the host so a
            # 127.x probe stands for a remote client, as it is on a real network.
            "mynetworks": "127.0.0.1/32",
            "smtpd_error_sleep_time": "0s",
        }
    ),
    untrusted_verdict=Verdict.CLOSED,
    notes="defer_unauth_destination answers 454 4.7.1 Relay access denied",
)

DROP_AFTER_ERRORS = PostfixProfile(
    name="drop_after_errors",
    summary="closed, and hangs up after 3 errors (smtpd_hard_error_limit = 3)",
    parameters=_frozen(
        {
            **CLOSED.parameters,
            # After this many errors smtpd answers "421 4.7.0 ... Error: too many errors" and
            # disconnects; a one-connection prober (nmap) cannot finish its tests.
            "smtpd_hard_error_limit": "3",
            "smtpd_soft_error_limit": "3",
            "smtpd_error_sleep_time": "0s",
        }
    ),
    untrusted_verdict=Verdict.CLOSED,
    notes="smtpd_hard_error_limit = 3",
)

PROFILES: Mapping[str, PostfixProfile] = MappingProxyType(
    {profile.name: profile for profile in (OPEN_RELAY, CLOSED, DEBIAN_DEFAULT, DROP_AFTER_ERRORS)}
)


def profile(name: str) -> PostfixProfile:
    """The profile called `name`; KeyError names the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown Postfix profile {name!r}; known: {', '.join(PROFILES)}") from None
