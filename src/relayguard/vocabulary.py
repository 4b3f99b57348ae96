"""The fixed vocabulary every room of relayguard speaks: outcomes, verdicts, statuses.

One small set of words, used by the probe, the planner, the lab and every report renderer
(compare OpenSCAP's pass/fail/error/notapplicable/fixed).
"""

from __future__ import annotations

from enum import StrEnum

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
    UNKNOWN = "unknown"
