"""Probe the same targets from several vantage points: directly and through SSH jump hosts.

Relay restrictions depend on the client's address (RFC 2505 §2.1), so one target can be
closed from the Internet and open from inside; each vantage yields its own HostResult, with
`vantage` naming where it was probed from.
"""

from __future__ import annotations

from collections.abc import Sequence

from relayguard.probe import HostResult, ProbeOptions, probe_targets
from relayguard.probe.targets import Target
from relayguard.validate import InputError
from relayguard.vantage.spec import SshVantage, parse_vantage
from relayguard.vantage.ssh import SshSettings
from relayguard.vantage.through import probe_through

DIRECT = "direct"

Vantage = SshVantage | str  # an SSH jump host, or DIRECT


def parse_vantages(specs: Sequence[object], source_address: str | None) -> list[Vantage]:
    """`direct` or `ssh://user@host[:port]` each, no duplicates; a source address only makes
    sense for direct probing, so it is refused together with a jump host."""
    vantages: list[Vantage] = []
    for index, spec in enumerate(specs):
        field = f"via[{index}]"
        vantage: Vantage = DIRECT if spec == DIRECT else parse_vantage(spec, field)
        if vantage in vantages:
            raise InputError(field, spec, "is given twice")
        if isinstance(vantage, SshVantage) and source_address is not None:
            raise InputError(
                "source_address",
                source_address,
                "cannot be combined with an SSH vantage (the jump host's address is the source)",
            )
        vantages.append(vantage)
    return vantages


def probe_from(
    vantages: Sequence[Vantage],
    targets: Sequence[Target],
    options: ProbeOptions,
    settings: SshSettings | None = None,
) -> list[HostResult]:
    """Every target from every vantage, grouped by vantage in the order given."""
    results: list[HostResult] = []
    for vantage in vantages or [DIRECT]:
        if isinstance(vantage, SshVantage):
            results.extend(probe_through(vantage, targets, options, settings))
        else:
            results.extend(probe_targets(targets, options))
    return results
