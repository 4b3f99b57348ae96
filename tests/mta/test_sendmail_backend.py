"""The Sendmail backend on a real open Sendmail: the common change sequence (backup; apply:
mc, access, m4, makemap; validate with check_rcpt in sendmail -bt from an untrusted address;
SIGHUP reload; verify) closes it, swaks is refused afterwards and the inbound domain still
delivers; a restore puts the open configuration back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from relayguard.lab import module_utils, unpacked
from relayguard.lab.sendmail.instance import (
    SendmailInstance,
    isolated,
    makemap_binary,
    sendmail_binary,
)

from .conftest import SENDMAIL_SOURCE, _require_unpacked
from .swaks import SWAKS_NO_RECIPIENT, SWAKS_OK, swaks

if TYPE_CHECKING:
    import relay_backend
    import sendmail_backend
    import sendmail_plan
else:
    relay_backend = module_utils.load("relay_backend")
    sendmail_plan = module_utils.load("sendmail_plan")
    sendmail_backend = module_utils.load("sendmail_backend")

pytestmark = [pytest.mark.realserver, pytest.mark.root]


@pytest.fixture
def open_sendmail(mta_lab: Path) -> Iterator[SendmailInstance]:
    _require_unpacked(sendmail_binary)
    with SendmailInstance(mta_lab / "sm-backend", "127.0.120.11", "open_relay") as server:
        yield server


def _backend(server: SendmailInstance) -> sendmail_backend.SendmailBackend:
    layout = server.layout
    return sendmail_backend.SendmailBackend(
        str(layout.mc),
        str(layout.cf),
        str(layout.file("access")),
        sendmail=str(sendmail_binary()),
        makemap=str(makemap_binary()),
        pid_file=str(layout.pid_file),
        # the lab's own host name and name service (see lab/sendmail/instance.isolated)
        wrapper=tuple(isolated(layout, server.hostname, [])),
    )


def _greets_again(server: SendmailInstance) -> None:
    time.sleep(1.0)  # sendmail re-executes itself on SIGHUP
    unpacked.wait_greeting(server.listener, server.is_running, server.layout.transcript)


def test_change_closes_a_real_open_sendmail_and_restore_reopens_it(
    open_sendmail: SendmailInstance,
) -> None:
    backend = _backend(open_sendmail)
    desired = sendmail_plan.SendmailDesired(("10.20.0.0/16",), ("partner.example",))
    facts = backend.facts(desired)
    assert backend.relay_refused() is not None  # open before
    plan = backend.plan(facts, desired)
    assert plan.removals() == ()  # promiscuous_relay carries no legitimate path

    backup, reloaded = relay_backend.change(backend, facts, plan, desired)

    assert reloaded
    _greets_again(open_sendmail)
    refused = swaks(open_sendmail.target, SENDMAIL_SOURCE, "e@example.org", quit_after="RCPT")
    assert refused.returncode == SWAKS_NO_RECIPIENT, refused.transcript
    partner = swaks(open_sendmail.target, SENDMAIL_SOURCE, "p@partner.example", quit_after="RCPT")
    assert partner.returncode == SWAKS_OK, partner.transcript
    inbound = swaks(open_sendmail.target, SENDMAIL_SOURCE, f"inbound@{open_sendmail.hostname}")
    assert inbound.returncode == SWAKS_OK, inbound.transcript

    backend.restore(backup)
    assert open_sendmail.layout.mc.read_text(encoding="utf-8") == facts.mc
    assert backend.relay_refused() is not None  # open again, as it was
