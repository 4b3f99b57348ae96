"""The record every Exchange rule produces: one result of one rule on one subject.

A finding names its rule (`id`), what it is about (`subject`: a connector's identity, an
accepted domain, a registry value), the result (pass / fail / unknown), whether a failure opens
the relay to the world, why, and the primary source of the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relayguard.vocabulary import RuleResult


@dataclass(frozen=True)
class ExposureFinding:
    """One setting that lets (or may let) anonymous clients relay — or a rule that passed."""

    id: str  # the rule, e.g. "anonymous-accept-any-recipient"
    subject: str  # the connector identity, registry value or accepted domain concerned
    opens_relay: bool  # true: anonymous clients from the Internet can relay through it
    reason: str
    source: str
    result: RuleResult = RuleResult.FAIL

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "result": self.result.value,
            "subject": self.subject,
            "opens_relay": self.opens_relay,
            "reason": self.reason,
            "source": self.source,
        }
