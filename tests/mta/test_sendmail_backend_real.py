"""The Sendmail backend on real lab Sendmail instances (127.0.120.10-11): the open profile is
closed (swaks from an untrusted address is refused relay, the inbound domain still gets its
mail, partner domains stay relayed), check mode changes nothing and shows the diff, and a
configuration m4 rejects is restored with the daemon left as it was."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support.realserver import require_tool

from relayguard.lab import module_utils
from relayguard.lab.sendmail.instance import (
    SendmailInstance,
    build_cf,
    isolated,
    makemap_binary,
    sendmail_binary,
)

from .conftest import SENDMAIL_SOURCE, _require_unpacked
from .swaks import SWAKS_NO_RECIPIENT, SWAKS_OK, swaks

if TYPE_CHECKING:
    import relay_backend
    import sendmail_apply
else:
    relay_backend = module_utils.load("relay_backend")
    module_utils.load("relay_options")
    module_utils.load("sendmail_facts")
    module_utils.load("sendmail_plan")
    sendmail_apply = module_utils.load("sendmail_apply")

pytestmark = [pytest.mark.realserver, pytest.mark.root]

PARTNER = "partner.example"  # in the instance's relay-domains file before the run
NEW_PARTNER = "new-partner.example"  # declared in the inventory only


def _open_instance(mta_lab: Path, name: str, address: str) -> Iterator[SendmailInstance]:
    _require_unpacked(sendmail_binary)
    require_tool("m4")
    server = SendmailInstance(mta_lab / name, address, "open_relay")
    try:
        server.create()
        with server.layout.file("relay-domains").open("a", encoding="utf-8") as handle:
            handle.write(f"{PARTNER}\n")
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def open_sendmail(mta_lab: Path) -> Iterator[SendmailInstance]:
    yield from _open_instance(mta_lab, "sm-backend-open", "127.0.120.10")


@pytest.fixture
def broken_sendmail(mta_lab: Path) -> Iterator[SendmailInstance]:
    yield from _open_instance(mta_lab, "sm-backend-broken", "127.0.120.11")


def _params(server: SendmailInstance, **extra: Any) -> dict[str, Any]:
    # The host's sendmail, run as the lab runs it: its own fully qualified host name.
    wrapper = server.layout.file("sendmail-wrapper")
    argv = isolated(server.layout, server.hostname, [str(sendmail_binary())])
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.join(argv)} "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    return {
        "mc_path": str(server.layout.mc),
        "cf_path": None,
        "relay_allowed_networks": ["127.0.0.1/32", "::1/128"],
        "relay_partner_domains": [PARTNER, NEW_PARTNER],
        "relay_authenticated": "keep",
        "relay_allow_removals": False,
        "sendmail_binary": str(wrapper),
        "makemap_binary": str(makemap_binary()),
        "m4_binary": "m4",
        "backup_dir": str(server.layout.file("backups")),
        "restart": True,
        **extra,
    }


def _files(server: SendmailInstance) -> dict[str, bytes]:
    names = ("sendmail.mc", "sendmail.cf", "access", "access.db", "relay-domains")
    return {name: server.layout.file(name).read_bytes() for name in names}


def _rcpt(server: SendmailInstance, recipient: str) -> int:
    return swaks(server.target, SENDMAIL_SOURCE, recipient, quit_after="RCPT").returncode


def test_check_mode_changes_nothing_and_shows_the_diff(open_sendmail: SendmailInstance) -> None:
    before = _files(open_sendmail)

    result = sendmail_apply.run(_params(open_sendmail), True, True)

    assert result["changed"] is True
    assert result["backup_file"] is None and result["reloaded"] is False
    targets = [c["target"] for c in result["changes"]]
    assert targets == [
        "sendmail.mc FEATURE(promiscuous_relay)",
        f"relay-domains {NEW_PARTNER}",
    ]
    diff = {d["before_header"]: d for d in result["diff"]}
    mc = diff[str(open_sendmail.layout.mc)]
    assert "promiscuous_relay" in mc["before"] and "promiscuous_relay" not in mc["after"]
    assert _files(open_sendmail) == before
    assert _rcpt(open_sendmail, "someone@example.org") == SWAKS_OK  # still open


def test_open_sendmail_is_closed_and_keeps_its_legitimate_paths(
    open_sendmail: SendmailInstance,
) -> None:
    assert _rcpt(open_sendmail, "someone@example.org") == SWAKS_OK

    result = sendmail_apply.run(_params(open_sendmail), False, False)

    assert result["changed"] is True and result["reloaded"] is True
    assert result["removals"] == []
    assert Path(result["backup_file"]).read_text(encoding="utf-8").count("promiscuous_relay")
    refused = swaks(open_sendmail.target, SENDMAIL_SOURCE, "someone@example.org")
    assert refused.returncode == SWAKS_NO_RECIPIENT, refused.transcript
    assert "Relaying denied" in refused.transcript
    assert _rcpt(open_sendmail, f"someone@{PARTNER}") == SWAKS_OK
    assert _rcpt(open_sendmail, f"someone@{NEW_PARTNER}") == SWAKS_OK
    inbound = swaks(open_sendmail.target, SENDMAIL_SOURCE, f"inbound@{open_sendmail.hostname}")
    assert inbound.returncode == SWAKS_OK, inbound.transcript
    # A second run finds nothing to do.
    assert sendmail_apply.run(_params(open_sendmail), False, False)["changed"] is False


def test_enforce_refuses_a_plan_that_removes_a_network(open_sendmail: SendmailInstance) -> None:
    before = _files(open_sendmail)
    params = _params(open_sendmail, relay_allowed_networks=["127.0.0.1/32"])

    with pytest.raises(sendmail_apply.SendmailFactsError, match="Connect:IPv6:::1"):
        sendmail_apply.run(params, False, False)

    assert _files(open_sendmail) == before


def test_a_configuration_m4_rejects_is_restored(broken_sendmail: SendmailInstance) -> None:
    mc = broken_sendmail.layout.mc
    text = mc.read_text(encoding="utf-8")
    mc.write_text(text.replace("MAILER(`local')", "FEATURE(`no_such_feature')dnl\nMAILER(`local')"))
    before = _files(broken_sendmail)
    daemon = broken_sendmail.layout.pid_file.read_text(encoding="utf-8")

    with pytest.raises(relay_backend.ChangeFailed, match="no_such_feature") as failed:
        sendmail_apply.run(_params(broken_sendmail), False, False)

    assert failed.value.restored is True
    assert _files(broken_sendmail) == before
    # never told to reload: the daemon that wrote the pid file still runs
    assert broken_sendmail.layout.pid_file.read_text(encoding="utf-8") == daemon
    assert int(daemon.split()[0]) in broken_sendmail.pids()
    assert _rcpt(broken_sendmail, "someone@example.org") == SWAKS_OK


def test_build_cf_of_the_lab_still_matches_after_a_close(open_sendmail: SendmailInstance) -> None:
    sendmail_apply.run(_params(open_sendmail), False, False)
    # The lab can rebuild the closed instance from the edited files (makemap, aliases).
    build_cf(open_sendmail.layout, open_sendmail.hostname)
    assert "promiscuous" not in open_sendmail.layout.cf.read_text(encoding="utf-8")


class _NeverVerified(sendmail_apply.SendmailBackend):  # type: ignore[misc,name-defined]
    """The real backend whose verification fails after the reload (a plan that did not take)."""

    def verify(self, desired: object) -> str | None:
        return "forced failure after the reload"


def test_a_failed_verification_restores_the_files_and_the_daemon(
    broken_sendmail: SendmailInstance,
) -> None:
    params = _params(broken_sendmail)
    before = _files(broken_sendmail)
    daemon = broken_sendmail.layout.pid_file.read_text(encoding="utf-8")
    backend = _NeverVerified(params)
    desired = sendmail_apply.desired_state(params)
    facts = backend.facts(desired)

    with pytest.raises(relay_backend.ChangeFailed, match="forced failure") as failed:
        relay_backend.change(backend, facts, backend.plan(facts, desired), desired)

    assert failed.value.restored is True
    assert _files(broken_sendmail) == before
    # told twice (the change, then the restore): a new daemon, open again as before
    assert broken_sendmail.layout.pid_file.read_text(encoding="utf-8") != daemon
    assert _rcpt(broken_sendmail, "someone@example.org") == SWAKS_OK


def test_state_restored_puts_back_every_file_of_the_backup_and_reopens(
    open_sendmail: SendmailInstance,
) -> None:
    before = _files(open_sendmail)
    applied = sendmail_apply.run(_params(open_sendmail), False, False)
    pairs = applied["backup_files"]
    assert {Path(p["path"]).name for p in pairs} >= {"sendmail.mc", "sendmail.cf", "access.db"}
    assert _rcpt(open_sendmail, "someone@example.org") == SWAKS_NO_RECIPIENT

    # a copy outside the backup directory, or one that is gone: refused by name, nothing moved
    closed = _files(open_sendmail)
    stray = open_sendmail.layout.file("sendmail.mc.stray")
    stray.write_text("divert(-1)\n", encoding="utf-8")
    for bad, named in (
        ({"path": pairs[0]["path"], "copy": str(stray)}, "outside the backup directory"),
        ({"path": pairs[0]["path"], "copy": pairs[0]["copy"] + "-gone"}, "does not exist"),
    ):
        with pytest.raises(sendmail_apply.SendmailFactsError, match=named):
            sendmail_apply.restore(_params(open_sendmail, backup_files=[bad]), False, True)
    assert _files(open_sendmail) == closed

    planned = sendmail_apply.restore(_params(open_sendmail, backup_files=pairs), True, True)
    assert planned["changed"] and _files(open_sendmail) == closed  # check mode: a plan
    assert any("promiscuous_relay" in d["after"] for d in planned["diff"])

    restored = sendmail_apply.restore(_params(open_sendmail, backup_files=pairs), False, False)
    assert restored["changed"] is True
    assert _files(open_sendmail) == before  # byte for byte
    assert _rcpt(open_sendmail, "someone@example.org") == SWAKS_OK  # the daemon reads them
