"""Real Sendmail lab instances: the probe's verdict, swaks's view, delivery, and a clean stop."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from postfix.harness import run_probe

from relayguard.lab.sendmail.instance import SendmailInstance
from relayguard.vocabulary import Outcome, Verdict

from .conftest import SENDMAIL_SOURCE
from .swaks import SWAKS_NO_RECIPIENT, SWAKS_OK, swaks

pytestmark = [pytest.mark.realserver, pytest.mark.root]

EXIT_CLOSED = 0
EXIT_OPEN = 2


def _wait_for(read: object, needle: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text: str = read()  # type: ignore[operator]
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def test_probe_finds_the_open_sendmail_open(sendmail_open: SendmailInstance) -> None:
    run = run_probe(sendmail_open.target, SENDMAIL_SOURCE)

    assert run.host["verdict"] == Verdict.OPEN, run.summary()
    assert run.returncode == EXIT_OPEN, run.summary()
    relayed = [t for t in run.tests if t["outcome"] == Outcome.RELAYED]
    assert relayed, run.summary()


def test_probe_finds_the_closed_sendmail_closed(sendmail_closed: SendmailInstance) -> None:
    run = run_probe(sendmail_closed.target, SENDMAIL_SOURCE)

    assert run.host["verdict"] == Verdict.CLOSED, run.summary()
    assert run.returncode == EXIT_CLOSED, run.summary()
    assert Outcome.RELAYED not in {t["outcome"] for t in run.tests}, run.summary()
    # The refusal is Sendmail's own check_rcpt ruleset (its -X transcript of the sessions).
    text = _wait_for(sendmail_closed.transcript_text, "Relaying denied")
    assert "550 5.7.1" in text and "Relaying denied" in text, text[-2000:]


def test_swaks_is_refused_relay_on_closed_sendmail(sendmail_closed: SendmailInstance) -> None:
    run = swaks(sendmail_closed.target, SENDMAIL_SOURCE, "someone@example.org", quit_after="RCPT")

    assert run.returncode == SWAKS_NO_RECIPIENT, run.transcript
    assert "550 5.7.1 <someone@example.org>... Relaying denied" in run.transcript


def test_swaks_delivers_to_the_inbound_domain_of_closed_sendmail(
    sendmail_closed: SendmailInstance,
) -> None:
    run = swaks(sendmail_closed.target, SENDMAIL_SOURCE, f"inbound@{sendmail_closed.hostname}")

    assert run.returncode == SWAKS_OK, run.transcript
    mailbox = _wait_for(lambda: sendmail_closed.delivered("inbound"), "sender@example.com")
    assert "sender@example.com" in mailbox


def test_swaks_relays_through_open_sendmail(sendmail_open: SendmailInstance) -> None:
    run = swaks(sendmail_open.target, SENDMAIL_SOURCE, "someone@example.org")

    assert run.returncode == SWAKS_OK, run.transcript
    # Relayed mail lands in the instance's "relayed" mailbox: it never leaves the machine.
    assert "someone@example.org" in _wait_for(
        lambda: sendmail_open.delivered("relayed"), "someone@example.org"
    )


def test_sendmail_instance_stops_leaving_nothing_running(mta_lab: Path) -> None:
    root = mta_lab / "sm-lifecycle"
    server = SendmailInstance(root, "127.0.120.3", "closed")
    with server:
        assert server.is_running()
        assert server.banner is not None and server.banner.startswith("220 ")
    assert server.pids() == []
    assert not root.exists()
