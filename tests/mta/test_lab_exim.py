"""Real Exim lab instances: the probe's verdict, swaks's view, delivery, and a clean stop."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from postfix.harness import run_probe

from relayguard.lab.exim.instance import EximInstance, exim_binary
from relayguard.lab.unpacked import LabMtaError
from relayguard.vocabulary import Outcome, Verdict

from .conftest import EXIM_SOURCE, _require_unpacked
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


def test_probe_finds_the_open_exim_open(exim_open: EximInstance) -> None:
    run = run_probe(exim_open.target, EXIM_SOURCE)

    assert run.host["verdict"] == Verdict.OPEN, run.summary()
    assert run.returncode == EXIT_OPEN, run.summary()
    relayed = [t for t in run.tests if t["outcome"] == Outcome.RELAYED]
    assert relayed, run.summary()


def test_probe_finds_the_closed_exim_closed(exim_closed: EximInstance) -> None:
    run = run_probe(exim_closed.target, EXIM_SOURCE)

    assert run.host["verdict"] == Verdict.CLOSED, run.summary()
    assert run.returncode == EXIT_CLOSED, run.summary()
    assert Outcome.RELAYED not in {t["outcome"] for t in run.tests}, run.summary()
    # The refusal is Exim's own ACL, seen from the probe's source address.
    text = _wait_for(exim_closed.mainlog_text, f"[{EXIM_SOURCE}]")
    assert f"[{EXIM_SOURCE}]" in text and "relay not permitted" in text, text[-2000:]
    # Exim refuses the sender <antispam@[IP]> of every routing-form test (domain literals are
    # off): no form reached RCPT, so the RFC 2505 finding cannot pass (the mixed-fleet benchmark
    # found it reported "all refused").
    routing = {f["id"]: f for f in run.host["rfc2505"]}["routing-forms-stripped"]
    assert routing["result"] == "notapplicable", routing
    assert "domain literals not allowed" in routing["detail"], routing
    assert {t["decided_at"] for t in run.tests if t["nmap"] and t["nmap"] >= 4} == {"mail"}


def test_swaks_is_refused_relay_on_closed_exim(exim_closed: EximInstance) -> None:
    run = swaks(exim_closed.target, EXIM_SOURCE, "someone@example.org", quit_after="RCPT")

    assert run.returncode == SWAKS_NO_RECIPIENT, run.transcript
    assert "550 relay not permitted" in run.transcript


def test_swaks_delivers_to_the_inbound_domain_of_closed_exim(exim_closed: EximInstance) -> None:
    run = swaks(exim_closed.target, EXIM_SOURCE, f"inbound@{exim_closed.hostname}")

    assert run.returncode == SWAKS_OK, run.transcript
    mailbox = _wait_for(lambda: exim_closed.delivered("inbound"), "sender@example.com")
    assert "sender@example.com" in mailbox
    # ... and require verify = recipient still refuses an unknown user of that domain.
    unknown = swaks(exim_closed.target, EXIM_SOURCE, f"nobody@{exim_closed.hostname}")
    assert unknown.returncode == SWAKS_NO_RECIPIENT, unknown.transcript


def test_swaks_relays_through_open_exim(exim_open: EximInstance) -> None:
    run = swaks(exim_open.target, EXIM_SOURCE, "someone@example.org")

    assert run.returncode == SWAKS_OK, run.transcript
    # Relayed mail lands in the instance's "relayed" mailbox: it never leaves the machine.
    assert "someone@example.org" in _wait_for(
        lambda: exim_open.delivered("relayed"), "someone@example.org"
    )


def test_exim_instance_stops_leaving_nothing_running(mta_lab: Path) -> None:
    root = mta_lab / "exim-lifecycle"
    server = EximInstance(root, "127.0.110.3", "closed")
    with server:
        assert server.is_running()
        assert server.banner is not None and server.banner.startswith("220 ")
    assert server.pids() == []
    assert not root.exists()


def test_an_exim_that_cannot_start_says_why(mta_lab: Path) -> None:
    """A daemon that exits at once: the error names its exit status and what it said (its
    stderr and panic log), not only "exited before answering"."""
    _require_unpacked(exim_binary)
    root = mta_lab / "exim-broken"
    server = EximInstance(root, "127.0.110.4", "closed")
    try:
        server.create()
        # past `exim -bV` (write_config would refuse it): the daemon itself must say so
        text = server.config.read_text(encoding="utf-8")
        server.config.write_text(text + "\nno_such_option = 1\n", encoding="utf-8")
        with pytest.raises(LabMtaError) as failure:
            server.start(timeout=30)
        assert server.pids() == []
    finally:
        server.remove()
    message = str(failure.value)
    first = message.splitlines()[0]
    assert "127.0.110.4:25 exited before answering" in first, message
    assert re.search(r"; pid \d+: exit status 1$", first), message
    assert f"--- {root / 'exim.stderr'} (last " in message, message
    assert f"--- {root / 'log' / 'paniclog'} (last " in message, message
    assert message.count('option "no_such_option" unknown') == 2, message  # stderr, panic log
