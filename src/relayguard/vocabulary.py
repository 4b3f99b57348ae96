"""The fixed vocabulary every room of relayguard speaks: outcomes, verdicts, statuses, platforms.

One small set of words, used by the probe, the planner, the lab and every report renderer
(compare OpenSCAP's pass/fail/error/notapplicable/fixed). The platform words are one table:
`Platform` (what a host runs), `Family` (which remediation backend closes it), the Exchange
generation (where Exchange keeps its relay settings) and the inventory groups that name them.
The roles cannot import Python: roles/relay/defaults/main.yml holds the same group tables
(`relay_group_platforms`, `relay_group_families`, `relay_platform_families`), held equal to
these by tests/suite/test_vocabulary.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

PROBE_SCHEMA = "relayguard.probe/1"
REPORT_SCHEMA = "relayguard.report/1"


class Outcome(StrEnum):
    """What one relay test observed at the SMTP level."""

    RELAYED = "relayed"  # 2xx to RCPT of a foreign recipient
    # 2xx to a routed address at one of the server's own domains on a server that accepts any
    # mailbox there (its control was accepted too): relay and later bounce look the same at RCPT
    ACCEPTED = "accepted"
    REFUSED = "refused"  # 5xx at MAIL or RCPT
    DEFERRED = "deferred"  # 4xx at MAIL or RCPT
    AUTH_REQUIRED = "auth_required"  # 530 or enhanced status 5.7.0
    ERROR = "error"  # the dialogue failed (timeout, dropped, garbage)
    SKIPPED = "skipped"  # never run (unreachable host, budget exhausted)


class Verdict(StrEnum):
    """The host-level judgement derived from all relay tests."""

    OPEN = "open"
    CLOSED = "closed"
    INCONCLUSIVE = "inconclusive"


class FindingResult(StrEnum):
    """Result of one RFC 2505 conformance finding."""

    PASS = "pass"  # noqa: S105 - a result word, not a password
    FAIL = "fail"
    ERROR = "error"
    NOT_APPLICABLE = "notapplicable"


class AuditResult(StrEnum):
    """Result of one finding in a report (issue 20): a FindingResult, or waived."""

    PASS = "pass"  # noqa: S105 - a result word, not a password
    FAIL = "fail"
    ERROR = "error"
    NOT_APPLICABLE = "notapplicable"
    WAIVED = "waived"


class RuleResult(StrEnum):
    """Result of one configuration rule on one subject (a connector, a domain, a setting)."""

    PASS = "pass"  # noqa: S105 - a result word, not a password
    FAIL = "fail"
    UNKNOWN = "unknown"  # a fact the rule needs could not be read


class HostStatus(StrEnum):
    """Where a host ended after a relayguard run (report schema)."""

    COMPLIANT = "compliant"
    REMEDIATED = "remediated"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    AUDIT_FAILED = "audit_failed"


class Platform(StrEnum):
    """Mail server platforms relayguard knows how to detect and remediate."""

    EXCHANGE55 = "exchange55"
    EXCHANGE2013 = "exchange2013"
    EXCHANGE2016 = "exchange2016"
    EXCHANGE2019 = "exchange2019"
    EXCHANGESE = "exchangese"
    POSTFIX = "postfix"
    EXIM = "exim"
    SENDMAIL = "sendmail"
    UNKNOWN = "unknown"


class Family(StrEnum):
    """Which remediation backend closes a platform's relay: one row per backend.

    A new backend (exim, sendmail) is one row here, its platforms in `PLATFORM_FAMILY` and its
    inventory group in `GROUP_FAMILY`.
    """

    EXCHANGE = "exchange"  # WinRM, PowerShell payloads (relayguard.exchange)
    POSTFIX = "postfix"  # SSH, postconf (plugins/module_utils/postfix_relay_backend.py)
    EXIM = "exim"  # SSH, Exim's configuration (Debian update-exim4.conf.conf or exim.conf)
    SENDMAIL = "sendmail"  # SSH, sendmail.mc + m4, access db + makemap


class ExchangeGeneration(StrEnum):
    """Where an Exchange server keeps its relay settings; the values are the `platform`
    option of exchange_relay (`auto` aside), which users already pass.

    5.5: the IMS's registry parameters and Routing tab (KB Q193922); 2013 and later: receive
    connector permissions and accepted domains (docs/sources.md#learn-anonymous-relay).
    """

    EXCHANGE55 = "exchange55"
    MODERN = "modern"


class RunMode(StrEnum):
    """What a relayguard run was asked to do (report schema, run.mode)."""

    ENFORCE = "enforce"
    AUDIT = "audit"
    PROBE = "probe"


PLATFORM_FAMILY: Mapping[Platform, Family] = MappingProxyType(
    {
        Platform.EXCHANGE55: Family.EXCHANGE,
        Platform.EXCHANGE2013: Family.EXCHANGE,
        Platform.EXCHANGE2016: Family.EXCHANGE,
        Platform.EXCHANGE2019: Family.EXCHANGE,
        Platform.EXCHANGESE: Family.EXCHANGE,
        Platform.POSTFIX: Family.POSTFIX,
        Platform.EXIM: Family.EXIM,
        Platform.SENDMAIL: Family.SENDMAIL,
    }
)

# The inventory groups a host may be put in (inventory/example, the lab's inventory), in the
# order inventories list them, with the family each names.
GROUP_FAMILY: Mapping[str, Family] = MappingProxyType(
    {
        "exchange55": Family.EXCHANGE,
        "exchange_modern": Family.EXCHANGE,
        "postfix": Family.POSTFIX,
        "exim": Family.EXIM,
        "sendmail": Family.SENDMAIL,
    }
)
# The platform a group fixes; exchange_modern leaves the exact version to detection.
GROUP_PLATFORM: Mapping[str, Platform] = MappingProxyType(
    {
        "exchange55": Platform.EXCHANGE55,
        "postfix": Platform.POSTFIX,
        "exim": Platform.EXIM,
        "sendmail": Platform.SENDMAIL,
    }
)


# The receive-connector properties the Exchange 2013+ payloads write (docs/payloads.md, the
# New-ReceiveConnector / Set-ReceiveConnector rows): the planner backs up and restores exactly
# these, and the lab's twin accepts exactly these. Words of the payload protocol both sides speak.
RECEIVE_CONNECTOR_PROPERTIES = (
    "Bindings",
    "RemoteIPRanges",
    "PermissionGroups",
    "AuthMechanism",
    "Enabled",
    "Fqdn",
    "TarpitInterval",
    "MaxRecipientsPerMessage",
)


class UnknownPlatform(ValueError):
    """A platform without a family: nothing relayguard can remediate."""


def family_of(platform: Platform | str) -> Family:
    """The remediation family of `platform`; `UnknownPlatform` for `unknown` or a stray word."""
    try:
        return PLATFORM_FAMILY[Platform(platform)]
    except (KeyError, ValueError):
        raise UnknownPlatform(f"no remediation family for platform {platform!r}") from None


def is_legacy_exchange(platform: Platform | str) -> bool:
    """Exchange 5.5 (relay settings in the IMS registry), as opposed to 2013 and later."""
    return platform in (Platform.EXCHANGE55, ExchangeGeneration.EXCHANGE55)


def exchange_generation(platform: Platform | str) -> ExchangeGeneration:
    """The generation of an Exchange platform (`UnknownPlatform` when it is no Exchange)."""
    if family_of(platform) is not Family.EXCHANGE:
        raise UnknownPlatform(f"{platform!r} is not an Exchange platform")
    if is_legacy_exchange(platform):
        return ExchangeGeneration.EXCHANGE55
    return ExchangeGeneration.MODERN


def inventory_group(platform: Platform | str) -> str:
    """The inventory group of a host of `platform`: exchange55, exchange_modern, postfix,
    exim or sendmail."""
    family = family_of(platform)
    for group, fixed in GROUP_PLATFORM.items():
        if fixed == platform:
            return group
    (group,) = (g for g, f in GROUP_FAMILY.items() if f is family and g not in GROUP_PLATFORM)
    return group
