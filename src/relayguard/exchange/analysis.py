"""Exchange analysis: pure judgements over `ExchangeFacts` — relay exposure and patch status.

The analysers' room (compare HealthChecker's analysers over its collected data): no I/O, no
WinRM, only records in and records out, so each rule is tested on hand-built facts.

`relay_exposure` lists every setting that lets anonymous clients relay, each finding with a
reason and a source, and gives the host a verdict: open when a finding opens relay to the
world, inconclusive when a deciding fact is unknown, closed otherwise. Findings that do not
open the relay by themselves (a relay-type accepted domain, recipient validation off) are
reported with `opens_relay` false. `patch_status` says whether the relay fix is in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from relayguard.exchange.catalog import Catalog, InvalidVersionError, load_catalog, parse_version
from relayguard.exchange.facts import ExchangeFacts
from relayguard.exchange.findings import ExposureFinding
from relayguard.exchange.patch_level import PatchLevel, PatchPolicy, patch_level
from relayguard.exchange.rules import (
    ACCEPT_ANY_RECIPIENT,
    ANONYMOUS_LOGON,
    RELAY_DOMAIN_TYPES,
    SRC_ANON_RIGHT,
    SRC_EXTERNAL_AUTH,
    SRC_RELAY_DOMAIN,
    SRC_STAR_DOMAIN,
    SRC_VALIDATION,
    parse_remote_range,
    run_modern_rules,
)
from relayguard.exchange.rules55 import (
    RELAY_ALLOW,
    RELAY_AUTHENTICATED,
    RELAY_DENY,
    RELAY_LOCAL_IP,
    SRC_Q193922,
    SRC_Q237927,
    parse_net_mask,
    run_exchange55_rules,
)
from relayguard.vocabulary import Platform, RuleResult, Verdict

__all__ = [
    "ACCEPT_ANY_RECIPIENT",
    "ANONYMOUS_LOGON",
    "RELAY_ALLOW",
    "RELAY_AUTHENTICATED",
    "RELAY_DENY",
    "RELAY_DOMAIN_TYPES",
    "RELAY_LOCAL_IP",
    "SRC_ANON_RIGHT",
    "SRC_EXTERNAL_AUTH",
    "SRC_Q193922",
    "SRC_RELAY_DOMAIN",
    "SRC_STAR_DOMAIN",
    "SRC_VALIDATION",
    "ExposureFinding",
    "PatchState",
    "PatchStatus",
    "RelayExposure",
    "parse_net_mask",
    "parse_remote_range",
    "patch_status",
    "relay_exposure",
]

# A relay grant wider than this many prefix bits counts as "everyone" (a /8 allow list lets a
# whole network of strangers relay). Callers with a different policy pass their own.
DEFAULT_MAX_GRANT_PREFIX = 16


class PatchState(StrEnum):
    PRESENT = "present"
    MISSING = "missing"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RelayExposure:
    verdict: Verdict
    findings: tuple[ExposureFinding, ...]  # the failing ones
    unknowns: tuple[str, ...]  # facts that could not be established and would decide
    # Every rule's result on every subject (pass, fail, unknown); Exchange 2013+ only so far
    checks: tuple[ExposureFinding, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "findings": [f.to_dict() for f in self.findings],
            "unknowns": list(self.unknowns),
            "checks": [f.to_dict() for f in self.checks],
        }


@dataclass(frozen=True)
class PatchStatus:
    state: PatchState
    reasons: tuple[str, ...]
    level: str | None
    security_update: str | None
    supported: bool | None
    # 2013 and later: the build compliance requires and the patch level (patch_level)
    required: str | None = None
    detail: PatchLevel | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "reasons": list(self.reasons),
            "level": self.level,
            "security_update": self.security_update,
            "supported": self.supported,
            "required": self.required,
            "patch_level": None if self.detail is None else self.detail.to_dict(),
        }


# --- Exchange 5.5 --------------------------------------------------------------------------


def _encapsulation_finding(facts: ExchangeFacts) -> ExposureFinding | None:
    status = patch_status(facts)
    if status.state is not PatchState.MISSING:
        return None
    missing = [] if facts.build is None else [f for f in facts.build.fixes if f.present is False]
    basis = "; ".join(f"{f.kb}: {f.basis}" for f in missing[:1]) or "; ".join(status.reasons)
    return ExposureFinding(
        "ims-encapsulated-address-relay",
        "msexcimc.exe " + ("unknown" if facts.msexcimc is None else facts.msexcimc.version),
        True,
        "the IMS relays IMCEASMTP- encapsulated addresses at a local domain despite routing "
        f"restrictions ({basis})",
        SRC_Q237927,
    )


# --- the judgements -----------------------------------------------------------------------


def relay_exposure(
    facts: ExchangeFacts, *, max_grant_prefix: int = DEFAULT_MAX_GRANT_PREFIX
) -> RelayExposure:
    """Which connectors or settings let anonymous clients relay, and the host's verdict."""
    findings: list[ExposureFinding] = []
    unknowns: list[str] = []
    checks: list[ExposureFinding] = []
    if facts.platform is Platform.EXCHANGE55:
        if facts.exchange55 is None:
            unknowns.append("the IMS relay configuration was not read")
        else:
            checks, unknowns = run_exchange55_rules(facts.exchange55, max_grant_prefix)
            findings = [f for f in checks if f.result is RuleResult.FAIL]
        encapsulation = _encapsulation_finding(facts)
        if encapsulation is not None:
            findings.append(encapsulation)
    elif facts.modern is not None:
        checks, unknowns = run_modern_rules(facts.modern, max_grant_prefix)
        findings = [f for f in checks if f.result is RuleResult.FAIL]
    else:
        unknowns.append("no relay configuration was read (Exchange not detected)")
    if any(f.opens_relay for f in findings):
        verdict = Verdict.OPEN
    elif unknowns:
        verdict = Verdict.INCONCLUSIVE
    else:
        verdict = Verdict.CLOSED
    return RelayExposure(verdict, tuple(findings), tuple(unknowns), tuple(checks))


def patch_status(
    facts: ExchangeFacts,
    *,
    policy: PatchPolicy = PatchPolicy.LATEST,
    as_of: date | None = None,
    catalog: Catalog | None = None,
) -> PatchStatus:
    """Exchange 5.5: msexcimc.exe >= 5.5.2650.1 (KB Q237927, threshold from the catalog);
    2013 and later: the patch level against the catalog under `policy` (`patch_level`):
    present only at the newest update of an accepted CU. `as_of` is the day the product's
    lifecycle is judged on (reported, never deciding); `catalog` defaults to builds.yml."""
    build = facts.build
    level = None if build is None else build.level
    update = None if build is None else build.security_update
    supported = None if build is None else build.supported

    def status(
        state: PatchState, reasons: Iterable[str], detail: PatchLevel | None = None
    ) -> PatchStatus:
        required = None if detail is None else detail.required
        return PatchStatus(state, tuple(reasons), level, update, supported, required, detail)

    if build is None or facts.version is None:
        return status(PatchState.UNKNOWN, ["the build could not be read"])
    if facts.platform is Platform.EXCHANGE55:
        reasons = [f"{f.id} ({f.kb}): {f.basis}" for f in build.fixes]
        if build.relay_fix is True:
            return status(PatchState.PRESENT, reasons)
        if build.relay_fix is False:
            return status(PatchState.MISSING, reasons)
        return status(PatchState.UNKNOWN, reasons or ["no relay fix evidence for this build"])
    try:
        detail = patch_level(
            catalog or load_catalog(), parse_version(facts.version), policy=policy, as_of=as_of
        )
    except InvalidVersionError:
        detail = None
    if detail is None:
        return status(PatchState.UNKNOWN, [f"{facts.version} is not an Exchange 2013+ build"])
    reasons = list(detail.reasons)
    if not build.known:
        nearest = ", ".join(v for v in (build.nearest_below, build.nearest_above) if v)
        reasons.insert(
            0, f"{build.version} is not in the catalog (nearest known: {nearest or 'none'})"
        )
    state = {True: PatchState.PRESENT, False: PatchState.MISSING, None: PatchState.UNKNOWN}
    return status(state[detail.compliant], reasons, detail)
