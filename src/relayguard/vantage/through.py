"""Probe targets through one SSH vantage point with the probe's one engine.

Connects to the jump host, runs `probe_targets` with connections opened from there, closes.
If the jump host cannot be used at all (unreachable, host key unknown or changed, login
refused), every target is `inconclusive` with that reason: the verdict from this vantage
point is unknown, and the report says why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from relayguard.probe import HostResult, ProbeOptions, probe_targets
from relayguard.probe.targets import Target, expand_targets
from relayguard.vantage.errors import VantageError
from relayguard.vantage.opener import ssh_opener
from relayguard.vantage.spec import SshVantage
from relayguard.vantage.ssh import SshJump, SshSettings
from relayguard.vocabulary import Verdict


def probe_through(
    vantage: SshVantage,
    targets: Sequence[str | Target],
    options: ProbeOptions,
    settings: SshSettings | None = None,
) -> list[HostResult]:
    """Probe `targets` from `vantage`; results in the order given, `vantage` set on each."""
    labelled = dataclasses.replace(options, vantage=str(vantage))
    parsed = expand_targets(targets, options.default_ports)
    try:
        jump = SshJump(vantage, settings).connect()
    except VantageError as exc:
        return [
            HostResult(
                target=str(target),
                address=None,
                port=target.port,
                verdict=Verdict.INCONCLUSIVE,
                reason=f"vantage {vantage} unusable: {exc}",
                vantage=str(vantage),
            )
            for target in parsed
        ]
    with jump:
        return probe_targets(
            parsed, labelled, opener_factory=lambda o: ssh_opener(jump, o.connect_timeout)
        )
