"""The Sendmail backend's plan (pure) on the stock mc files sendmail-cf ships (Debian's
sendmail.mc and upstream's generic-linux.mc), on the features and access entries that open a
relay, and, on a real lab Sendmail, that the planned mc closes it when rebuilt with m4."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from relayguard.lab import module_utils, unpacked
from relayguard.lab.sendmail.instance import SendmailInstance, build_cf, sendmail_binary

from .conftest import SENDMAIL_SOURCE, _require_unpacked
from .swaks import SWAKS_NO_RECIPIENT, swaks

if TYPE_CHECKING:
    import relay_backend
    import sendmail_plan
else:
    relay_backend = module_utils.load("relay_backend")
    sendmail_plan = module_utils.load("sendmail_plan")


def _stock(name: str) -> str:
    _require_unpacked(sendmail_binary)
    path = unpacked.mta_root("sendmail") / "usr/share/sendmail/cf" / name
    return path.read_text(encoding="utf-8")


def _plan(facts: sendmail_plan.SendmailFacts, *networks: str, partners: tuple[str, ...] = ()):
    desired = sendmail_plan.SendmailDesired(tuple(networks), partners)
    return relay_backend.evaluate(sendmail_plan.SENDMAIL_RULES, facts, desired)


@pytest.mark.parametrize("stock", ["debian/sendmail.mc", "cf/generic-linux.mc"])
def test_stock_mc_files_are_compliant(stock: str) -> None:
    facts = sendmail_plan.SendmailFacts("/etc/mail/sendmail.mc", _stock(stock), "", "")
    assert not _plan(facts, "10.0.0.0/8").changed


def test_opening_features_are_commented_out_and_named_when_a_site_may_rely_on_them() -> None:
    mc = _stock("debian/sendmail.mc").replace(
        "MAILER_DEFINITIONS",
        "FEATURE(`promiscuous_relay')dnl\nFEATURE(`relay_based_on_MX')dnl\n"
        "FEATURE(`relay_hosts_only')dnl\nMAILER_DEFINITIONS",
    )
    facts = sendmail_plan.SendmailFacts("/etc/mail/sendmail.mc", mc, "", "")

    plan = _plan(facts)
    assert [c.before for c in plan.changes] == [
        "FEATURE(`promiscuous_relay')dnl",
        "FEATURE(`relay_based_on_MX')dnl",
    ]
    # relay_based_on_MX relays for domains a site may back up: named; the open switch is not.
    assert [r.split(": ", 1)[1] for r in plan.removals()] == ["FEATURE(relay_based_on_MX)"]
    new_mc, _ = sendmail_plan.planned_files(facts, plan.changes)
    after = sendmail_plan.SendmailFacts("/etc/mail/sendmail.mc", new_mc, "", "")
    assert [n for n, _ in after.features()].count("relay_hosts_only") == 1
    assert not _plan(after).changed


ACCESS = """\
Connect:127.0.0.1\tRELAY
Connect:10.1\tRELAY
Connect:192.168\tRELAY
From:boss@example.com\tRELAY
To:partner.example\tRELAY
Connect:spammer.example\tREJECT
"""


def test_access_keeps_allowed_clients_and_partners_and_names_what_it_drops() -> None:
    facts = sendmail_plan.SendmailFacts("/m/sendmail.mc", "", "/m/access", ACCESS)

    plan = _plan(facts, "10.0.0.0/8", partners=("partner.example", "backup.example"))
    assert [r.split(": ", 1)[1] for r in plan.removals()] == [
        "Connect:192.168 RELAY",
        "From:boss@example.com RELAY",
    ]
    _, access = sendmail_plan.planned_files(facts, plan.changes)
    assert access.splitlines() == [
        "Connect:127.0.0.1\tRELAY",
        "Connect:10.1\tRELAY",
        "To:partner.example\tRELAY",
        "Connect:spammer.example\tREJECT",
        "To:backup.example\tRELAY",
    ]
    assert str(sendmail_plan.client_network("Connect:192.168")) == "192.168.0.0/16"


@pytest.fixture
def open_sendmail(mta_lab: Path) -> Iterator[SendmailInstance]:
    _require_unpacked(sendmail_binary)
    with SendmailInstance(mta_lab / "sm-plan", "127.0.120.10", "open_relay") as server:
        yield server


@pytest.mark.realserver
@pytest.mark.root
def test_the_planned_mc_closes_a_real_open_sendmail(open_sendmail: SendmailInstance) -> None:
    layout = open_sendmail.layout
    facts = sendmail_plan.SendmailFacts(
        str(layout.mc),
        layout.mc.read_text(encoding="utf-8"),
        str(layout.file("access")),
        layout.file("access").read_text(encoding="utf-8"),
    )
    plan = _plan(facts)
    assert plan.changed and plan.removals() == ()
    mc, access = sendmail_plan.planned_files(facts, plan.changes)
    layout.mc.write_text(mc, encoding="utf-8")
    layout.file("access").write_text(access, encoding="utf-8")
    build_cf(layout, open_sendmail.hostname)
    open_sendmail.stop()
    time.sleep(0.2)
    open_sendmail.start()

    run = swaks(open_sendmail.target, SENDMAIL_SOURCE, "d@example.org", quit_after="RCPT")
    assert run.returncode == SWAKS_NO_RECIPIENT, run.transcript
    assert "Relaying denied" in run.transcript
