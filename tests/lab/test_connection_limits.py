"""The probe against a receive connector's MaxInboundConnectionPerSource (docs/probe.md).

A connection over the limit is answered 421 4.3.2 and closed by the twin, as Exchange does; the
probe ends that worker quietly, keeps the connections that got in as its bound and runs every
test once. Counted, never timed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from relayguard.lab.exchange import profiles
from relayguard.lab.exchange.state import TwinState
from relayguard.probe import ProbeOptions, probe_targets
from relayguard.vocabulary import Outcome, Platform, Verdict

from .conftest import UNTRUSTED, TwinServer, next_address

Make = Callable[[TwinState], TwinServer]
PER_SOURCE = 3


def limited_twin(make: Make) -> TwinServer:
    spec = profiles.TwinSpec(name="limited", server="EX19L", address=next_address())
    state = profiles.build("compliant", spec, Platform.EXCHANGE2019)
    state.lab.tarpit_seconds = 0.25
    assert state.modern is not None
    profiles.frontend(state.modern).MaxInboundConnectionPerSource = PER_SOURCE
    return make(state)


def test_the_probe_keeps_to_the_connections_the_connector_admits(twin_server: Make) -> None:
    server = limited_twin(twin_server)
    options = ProbeOptions(
        source_address=UNTRUSTED,
        local_domain="corp.example",
        command_timeout=10,
        connections_per_host=8,
        slow_reply_s=0.1,
    )
    (alone,) = probe_targets([server.target], replace(options, connections_per_host=1))
    (limited,) = probe_targets([server.target], options)
    turned_away = [
        line for who, line in limited.transcript if who == "S" and "per-source limit" in line
    ]
    assert limited.verdict is Verdict.CLOSED, limited.reason
    assert alone.verdict is Verdict.CLOSED, alone.reason
    assert all(line.startswith("421 4.3.2 ") for line in turned_away)
    # the extra connections over the limit were tried once, in the first burst: the bound then
    # fell to the connections that got in and never rose again
    assert 1 <= len(turned_away) <= options.connections_per_host - 1
    assert limited.connections - len(turned_away) >= 2  # the tarpit was still spread
    assert all(t.outcome is Outcome.REFUSED and t.attempts == 1 for t in limited.tests)
    assert [(t.id, t.outcome, t.code, t.reply) for t in limited.tests] == [
        (t.id, t.outcome, t.code, t.reply) for t in alone.tests
    ]
