"""`relayguard probe` against real Postfix instances: the right verdict on every server kind.

Each profile (relayguard.lab.postfix.profiles) is a real Postfix 3.x started by the fixtures;
the probe runs through its console script exactly as a user would, from an untrusted
loopback source (127.0.4.200) unless a test says otherwise. Exit statuses per docs/exit-status.md:
0 all closed, 2 any open.
"""

from __future__ import annotations

import re

import pytest

from relayguard.lab.postfix.instance import PostfixInstance
from relayguard.vocabulary import Outcome, Verdict

from .conftest import PROBE_SOURCE, TRUSTED_SOURCE
from .harness import MaillogWindow, run_probe

pytestmark = [pytest.mark.realserver, pytest.mark.root]

EXIT_CLOSED = 0
EXIT_OPEN = 2
ALL_NMAP_TESTS = set(range(1, 17))
BROKEN = {Outcome.ERROR, Outcome.SKIPPED}


def test_open_relay_is_open_on_every_nmap_form(open_relay_server: PostfixInstance) -> None:
    run = run_probe(open_relay_server.target, PROBE_SOURCE)

    assert run.host["verdict"] == Verdict.OPEN, run.summary()
    assert run.returncode == EXIT_OPEN, run.summary()
    # mynetworks = 0.0.0.0/0 permits every recipient form, so all 16 of nmap's tests relay
    # (nmap's own run agrees: 16/16, see test_nmap_agreement).
    relayed = {n for n, t in run.nmap_tests().items() if t["outcome"] == Outcome.RELAYED}
    assert relayed == ALL_NMAP_TESTS, run.summary()
    assert all(250 <= t["code"] <= 251 for t in run.nmap_tests().values()), run.summary()


def test_closed_server_refuses_an_untrusted_source(closed_server: PostfixInstance) -> None:
    log = MaillogWindow(closed_server)
    run = run_probe(closed_server.target, PROBE_SOURCE)

    assert run.host["verdict"] == Verdict.CLOSED, run.summary()
    assert run.returncode == EXIT_CLOSED, run.summary()
    assert set(run.nmap_tests()) == ALL_NMAP_TESTS
    # reject_unauth_destination: every relay test answered 5xx, nothing relayed or lost.
    assert {t["outcome"] for t in run.tests} == {Outcome.REFUSED}, run.summary()
    assert all(500 <= t["code"] <= 599 for t in run.tests), run.summary()
    # The vantage is real: Postfix saw the probe coming from the chosen source address.
    text = log.settled(PROBE_SOURCE)
    assert "Relay access denied" in text
    assert log.connections(PROBE_SOURCE) >= 1


def test_vantage_matters_trusted_source_may_relay(closed_server: PostfixInstance) -> None:
    # The same server, probed from 127.0.0.1 (its mynetworks), relays: the verdict belongs to
    # the vantage point, which is why the probe makes it explicit.
    run = run_probe(closed_server.target, TRUSTED_SOURCE)

    assert run.host["verdict"] == Verdict.OPEN, run.summary()
    assert run.returncode == EXIT_OPEN, run.summary()
    assert run.nmap_tests()[2]["outcome"] == Outcome.RELAYED, run.summary()


def test_debian_default_defers_unauthorised_relaying(
    debian_default_server: PostfixInstance,
) -> None:
    run = run_probe(debian_default_server.target, PROBE_SOURCE)

    assert run.host["verdict"] == Verdict.CLOSED, run.summary()
    assert run.returncode == EXIT_CLOSED, run.summary()
    # defer_unauth_destination: 454 4.7.1 Relay access denied for every foreign recipient.
    nmap_tests = run.nmap_tests()
    assert {t["outcome"] for t in nmap_tests.values()} == {Outcome.DEFERRED}, run.summary()
    assert {t["code"] for t in nmap_tests.values()} == {454}, run.summary()
    # Tests addressed to the server's own domain (unknown users) are refused instead.
    assert {t["outcome"] for t in run.tests} <= {Outcome.DEFERRED, Outcome.REFUSED}, run.summary()


def test_drop_after_errors_probe_reconnects_and_finishes(
    drop_after_errors_server: PostfixInstance,
) -> None:
    log = MaillogWindow(drop_after_errors_server)
    run = run_probe(drop_after_errors_server.target, PROBE_SOURCE)

    assert run.host["verdict"] == Verdict.CLOSED, run.summary()
    assert run.returncode == EXIT_CLOSED, run.summary()
    assert set(run.nmap_tests()) == ALL_NMAP_TESTS
    assert not [t["id"] for t in run.tests if t["outcome"] in BROKEN], run.summary()
    assert {t["outcome"] for t in run.tests} == {Outcome.REFUSED}, run.summary()
    # The server really hung up ("421 4.7.0 ... too many errors"), and the probe came back.
    text = log.settled(PROBE_SOURCE)
    limit = int(drop_after_errors_server.postconf("smtpd_hard_error_limit"))
    sessions = log.connections(PROBE_SOURCE)
    assert re.search(r"too many errors after RCPT from \S*\[127\.0\.4\.200\]", text), text
    assert sessions >= len(run.tests) // limit, f"{sessions} sessions for {len(run.tests)} tests"
