"""Fleet-scale behaviour of the engine: pipelining, tarpit-aware scheduling, bounds.

Functional only: no timing assertions (timings live in benchmarks/).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from typing import Any

from support.scripted_smtp import Script, Session, relay_policy, serve

from relayguard.probe import ProbeOptions, probe_targets
from relayguard.probe.catalog import CONFORMANCE_CHECKS, RELAY_TESTS
from relayguard.probe.fleet import event_loop_factory
from relayguard.probe.results import HostResult
from relayguard.probe.runner import HostProbe
from relayguard.probe.session import direct_opener
from relayguard.vocabulary import Verdict

BASE = ProbeOptions(command_timeout=5, local_domain="test.example")


def outcomes(target: str, options: ProbeOptions) -> dict[str, str]:
    (result,) = probe_targets([target], options)
    assert result.verdict is not Verdict.INCONCLUSIVE, result.reason
    return {t.id: t.outcome.value for t in result.tests}


def test_pipelining_on_and_off_give_identical_outcomes() -> None:
    for open_relay in (True, False):
        with serve(Script(relay_policy(open_relay)), host="127.0.3.1") as srv:
            piped = outcomes(srv.target, BASE)
            piped_writes = len(srv.stats.commands)
        with serve(Script(relay_policy(open_relay)), host="127.0.3.1") as srv:
            plain = outcomes(srv.target, replace(BASE, pipelining=False))
            plain_writes = len(srv.stats.commands)
        assert piped == plain
        assert piped_writes == plain_writes or not open_relay  # same commands, fewer waits


def test_pipelining_is_used_only_when_advertised() -> None:
    base = relay_policy(False)

    def no_pipelining(session: Session, line: str) -> bytes | None:
        if line.upper().startswith("EHLO"):
            return b"250-mx.test.example\r\n250 8BITMIME\r\n"
        return base(session, line)

    with serve(Script(no_pipelining), host="127.0.3.2") as srv:
        (result,) = probe_targets([srv.target], BASE)
    assert result.verdict is Verdict.CLOSED
    # without PIPELINING every RCPT follows a MAIL reply: the transcript alternates C/S
    said = [who for who, _ in result.transcript if who in "CS"]
    assert "CC" not in "".join(said)


def test_tarpit_spreads_tests_over_bounded_connections_each_test_once() -> None:
    script = Script(relay_policy(False), error_delay=0.3)
    options = replace(BASE, connections_per_host=3, slow_reply_s=0.2)
    with serve(script, host="127.0.3.3") as srv:
        (result,) = probe_targets([srv.target], options)
        rcpts = Counter(c for c in srv.stats.commands if c.upper().startswith("RCPT"))
        most, connections = srv.stats.max_concurrent, srv.stats.connections
    assert result.verdict is Verdict.CLOSED, result.reason
    assert most <= 3  # the per-host bound holds
    assert connections > 1  # and the tarpit really was worked around
    controls = sum(n for r, n in rcpts.items() if "relayguard-no-such-mailbox" in r)
    envelope_checks = sum(1 for c in CONFORMANCE_CHECKS if c.kind.value == "envelope")
    # every relay test, envelope check and control was sent exactly once
    assert sum(rcpts.values()) == len(RELAY_TESTS) + envelope_checks + controls
    assert all(n == 1 for r, n in rcpts.items() if "relayguard-no-such-mailbox" in r)
    assert all(t.attempts == 1 for t in result.tests)
    assert len(result.tests) == len(RELAY_TESTS)
    assert len({f.id for f in result.rfc2505}) >= len(CONFORMANCE_CHECKS)


def test_a_server_that_admits_one_connection_lowers_the_bound() -> None:
    script = Script(relay_policy(False), error_delay=0.2, max_connections=1)
    options = replace(BASE, connections_per_host=4, slow_reply_s=0.1)
    with serve(script, host="127.0.3.4") as srv:
        (result,) = probe_targets([srv.target], options)
        turned_away = srv.stats.turned_away
    assert result.verdict is Verdict.CLOSED, result.reason
    assert turned_away >= 1
    assert all(t.outcome.value == "refused" for t in result.tests)


def test_one_bad_host_does_not_affect_the_others() -> None:
    with (
        serve(Script(relay_policy(False)), host="127.0.3.5") as good,
        serve(Script(relay_policy(False), silent=True), host="127.0.3.6") as silent,
        serve(Script(relay_policy(True)), host="127.0.3.7") as open_relay,
    ):
        results = probe_targets(
            [good.target, silent.target, open_relay.target],
            replace(BASE, command_timeout=1, host_timeout=20),
        )
    assert [r.verdict for r in results] == [Verdict.CLOSED, Verdict.INCONCLUSIVE, Verdict.OPEN]


def test_one_rcpt_per_transaction_or_grouped_give_identical_outcomes() -> None:
    """Grouping relay tests that share a sender into one transaction (one RCPT each) is an
    optimisation only: the outcomes equal nmap's one-envelope-per-test way."""
    results = []
    for per_transaction, pipelining in ((1, False), (8, False), (8, True), (3, True)):
        with serve(Script(relay_policy(False)), host="127.0.3.8") as srv:
            options = replace(BASE, rcpts_per_transaction=per_transaction, pipelining=pipelining)
            results.append(outcomes(srv.target, options))
            mails = sum(1 for c in srv.stats.commands if c.upper().startswith("MAIL"))
            controls = sum(1 for c in srv.stats.commands if "relayguard-no-such-mailbox" in c)
            if per_transaction == 1:  # one envelope per test, check and control
                assert mails == len(RELAY_TESTS) + 3 + controls
            else:
                assert mails < len(RELAY_TESTS)
    assert all(r == results[0] for r in results)


def test_too_many_recipients_moves_the_rest_to_a_new_transaction() -> None:
    base = relay_policy(False)

    def two_per_transaction(session: Session, line: str) -> bytes | None:
        verb = line.split(" ", 1)[0].upper()
        if verb in ("MAIL", "RSET"):
            session.data["rcpts"] = 0
        if verb == "RCPT" and session.mail:
            session.data["rcpts"] = int(str(session.data.get("rcpts", 0))) + 1
            if int(str(session.data["rcpts"])) > 2:
                return b"452 4.5.3 Too many recipients\r\n"
        return base(session, line)

    with serve(Script(two_per_transaction), host="127.0.3.9") as srv:
        (result,) = probe_targets([srv.target], BASE)
    assert result.verdict is Verdict.CLOSED, result.reason
    assert all(t.outcome.value == "refused" for t in result.tests)


def test_uvloop_and_the_standard_event_loop_give_identical_outcomes(monkeypatch: Any) -> None:
    assert event_loop_factory() is not None  # uvloop is a dependency: the default loop
    for open_relay in (True, False):
        with serve(Script(relay_policy(open_relay)), host="127.0.3.1") as srv:
            fast = outcomes(srv.target, BASE)
            fast_commands = list(srv.stats.commands)
        monkeypatch.setenv("RELAYGUARD_EVENT_LOOP", "asyncio")
        assert event_loop_factory() is None
        with serve(Script(relay_policy(open_relay)), host="127.0.3.1") as srv:
            standard = outcomes(srv.target, BASE)
            standard_commands = list(srv.stats.commands)
        monkeypatch.delenv("RELAYGUARD_EVENT_LOOP")
        assert fast == standard
        assert sorted(fast_commands) == sorted(standard_commands)


def probe_first(target: str, options: ProbeOptions, tests: int) -> HostResult:
    """The first `tests` relay tests of the catalog alone (no conformance checks)."""
    host, port = target.rsplit(":", 1)

    async def run() -> HostResult:
        opener = direct_opener(None, options.connect_timeout)
        probe = HostProbe(
            target, host, int(port), options, opener, relay_tests=RELAY_TESTS[:tests], checks=()
        )
        return await probe.run()

    return asyncio.run(run())


def test_extra_connections_open_while_the_first_slow_reply_is_awaited() -> None:
    """A tarpit is noticed when a reply is overdue, not when it finally comes: every extra
    connection is open before the server sends its first delayed refusal, and the refusals
    are spread so that no connection waits more often than its share."""
    script = Script(relay_policy(False), error_delay=1.5)
    options = replace(BASE, connections_per_host=4, slow_reply_s=0.2)
    with serve(script, host="127.0.3.10") as srv:
        result = probe_first(srv.target, options, 7)
        events, connections = list(srv.stats.events), srv.stats.connections
    assert result.verdict is Verdict.CLOSED, result.reason
    first_refusal = next(i for i, (kind, _) in enumerate(events) if kind == "delayed")
    assert [kind for kind, _ in events[:first_refusal]] == ["connect"] * 4
    assert connections == 4  # none turned away, none replaced
    per_connection = Counter(n for kind, n in events if kind == "delayed")
    assert sum(per_connection.values()) == 7  # each test refused once
    assert max(per_connection.values()) == 2  # 7 over 4 connections: two rounds, not three


def test_a_server_that_answers_at_once_gets_one_connection() -> None:
    with serve(Script(relay_policy(False)), host="127.0.3.11") as srv:
        (result,) = probe_targets([srv.target], replace(BASE, connections_per_host=16))
        connections = srv.stats.connections
    assert result.verdict is Verdict.CLOSED, result.reason
    assert connections == 1


def test_connections_per_host_give_identical_outcomes_on_a_tarpit() -> None:
    """1, 3 or 16 connections to a tarpit that accepts the percent hack (so controls are
    queued while the tarpit is worked around): the same records, controls included."""
    base = relay_policy(False)

    def percent_hack(session: Session, line: str) -> bytes | None:
        if line.upper().startswith("RCPT") and "%" in line and session.mail:
            return b"250 2.1.5 Ok\r\n"
        return base(session, line)

    records = []
    for per_host in (1, 3, 16):
        script = Script(percent_hack, error_delay=0.05)
        options = replace(BASE, connections_per_host=per_host, slow_reply_s=0.02)
        with serve(script, host="127.0.3.12") as srv:
            (result,) = probe_targets([srv.target], options)
            controls = [c for c in srv.stats.commands if "relayguard-no-such-mailbox" in c]
        assert result.verdict is Verdict.OPEN, result.reason
        assert controls and len(controls) == len(set(controls))
        records.append([(t.id, t.outcome, t.code, t.control) for t in result.tests])
    assert records[0] == records[1] == records[2]
