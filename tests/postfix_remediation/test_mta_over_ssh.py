"""Exim and Sendmail as a site runs them, reached as a site reaches them: a real Exim or
Sendmail on the mail host of a namespaced network, exim_relay / sendmail_relay applied by
ansible-playbook over a real SSH connection (check mode, apply, nothing left to do, roll back),
the relay judged from the controller's network."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mta.conftest import _require_unpacked
from support.realserver import require_tool

from postfix_remediation import netlab
from postfix_remediation.ansible_run import run_playbook
from postfix_remediation.conftest import MailNetwork
from postfix_remediation.relaycheck import rcpt_code
from relayguard.lab.exim.instance import EximInstance, exim_binary
from relayguard.lab.sendmail.instance import (
    SendmailInstance,
    isolated,
    makemap_binary,
    sendmail_binary,
    write_wrapper,
)

pytestmark = [pytest.mark.realserver, pytest.mark.root]


@pytest.fixture
def mail_exim(mail_network: MailNetwork) -> Iterator[EximInstance]:
    """The lab's open Exim (relay_from_hosts trusts everyone) on the mail host's address:25,
    its daemon started inside the mail namespace."""
    _require_unpacked(exim_binary)  # fails in CI, skips elsewhere, naming the setup step
    binary = exim_binary()
    instance = EximInstance(mail_network.work / "exim", mail_network.addr.mail, "open_relay")
    try:
        instance.create()
        subprocess.Popen(  # -bdf: a foreground daemon, detached from the test
            mail_network.network.mail.argv([str(binary), "-C", str(instance.config), "-bdf"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        netlab.wait_for_banner(mail_network.addr.mail, 25, b"220")
        yield instance
    finally:
        instance.remove()


@pytest.fixture
def mail_sendmail(mail_network: MailNetwork) -> Iterator[SendmailInstance]:
    """The lab's open Sendmail (FEATURE promiscuous_relay) on the mail host's address:25, its
    daemon started inside the mail namespace (its own host name, as the lab runs it)."""
    require_tool("m4")
    _require_unpacked(sendmail_binary)
    binary = sendmail_binary()
    instance = SendmailInstance(mail_network.work / "sm", mail_network.addr.mail, "open_relay")
    try:
        instance.create()
        argv = [str(binary), "-C", str(instance.layout.cf), "-bd"]
        started = subprocess.run(
            mail_network.network.mail.argv(isolated(instance.layout, instance.hostname, argv)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        netlab.wait_for_banner(mail_network.addr.mail, 25, b"220")
        yield instance
    finally:
        instance.remove()


def write_inventory(
    lab: MailNetwork, sshd: netlab.SshServer, extra: dict[str, object], name: str
) -> Path:
    known = lab.work / "ansible_known_hosts"
    known.write_text(sshd.known_hosts_line())
    host = {
        "ansible_connection": "ssh",
        "ansible_host": lab.addr.mail,
        "ansible_port": sshd.port,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(lab.client_key),
        "ansible_ssh_common_args": (
            f"-o UserKnownHostsFile={known} -o GlobalKnownHostsFile=/dev/null "
            "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o IdentityAgent=none"
        ),
        "ansible_python_interpreter": "/usr/bin/python3",
        "relay_allowed_networks": ["127.0.0.1/32", f"{lab.addr.app_server}/32"],
        **extra,
    }
    path = lab.work / f"{name}-inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {"mail": host}}}))
    return path


def apply_again_and_roll_back(
    lab: MailNetwork, inventory: Path, playbook: str, watched: Path, inbound: str
) -> None:
    """Apply (closed for the controller's LAN, the allowed network still relays, inbound mail
    accepted), apply again (nothing left), roll back with the files the change returned
    (`watched` byte for byte as before, open again)."""
    mail, app_server = lab.addr.mail, lab.addr.app_server
    original = watched.read_bytes()
    apply = run_playbook(playbook, inventory, lab.work, "--diff")
    assert apply.returncode == 0 and apply.recap["mail"]["changed"] == 1, apply.output
    result = apply.results["mail"]
    assert result["reloaded"] is True
    netlab.wait_for_banner(mail, 25, b"220")  # the daemon re-executed itself on SIGHUP
    assert rcpt_code(mail, 25, "relaytest@example.com") >= 500  # refused in the dialogue
    assert rcpt_code(mail, 25, "relaytest@example.com", app_server) == 250  # allowed network
    assert rcpt_code(mail, 25, inbound) == 250  # inbound mail still accepted
    closed = watched.read_bytes()

    again = run_playbook(playbook, inventory, lab.work)
    assert again.returncode == 0 and again.recap["mail"]["changed"] == 0, again.output
    assert watched.read_bytes() == closed

    undo = {"relay_state": "restored", "relay_backup_files": result["backup_files"]}
    rollback = run_playbook(playbook, inventory, lab.work, "-e", json.dumps(undo))
    assert rollback.returncode == 0 and rollback.recap["mail"]["changed"] == 1, rollback.output
    assert watched.read_bytes() == original
    netlab.wait_for_banner(mail, 25, b"220")
    assert rcpt_code(mail, 25, "relaytest@example.com") == 250


def test_exim_relay_over_ssh_closes_the_relay_and_rolls_back(
    mail_network: MailNetwork, mail_exim: EximInstance
) -> None:
    lab = mail_network
    exim = {
        "relay_exim_config": str(mail_exim.config),
        "relay_exim_binary": str(exim_binary()),
        "relay_exim_pid_file": str(mail_exim.layout.pid_file),
    }
    inventory = write_inventory(lab, lab.start_mail_sshd(), exim, "exim")
    original = mail_exim.config.read_bytes()
    assert rcpt_code(lab.addr.mail, 25, "relaytest@example.com") == 250  # open to the LAN

    check = run_playbook("exim_relay.yml", inventory, lab.work, "--check", "--diff")
    assert check.returncode == 0 and check.recap["mail"]["changed"] == 1, check.output
    planned = check.results["mail"]
    assert any("closes 0.0.0.0/0, ::/0" in c["reason"] for c in planned["changes"]), planned
    assert planned["removals"] == [], planned  # what matches anyone is closed, not removed
    assert "-hostlist relay_from_hosts" in check.output  # the diff
    assert mail_exim.config.read_bytes() == original

    inbound = f"postmaster@{mail_exim.hostname}"
    apply_again_and_roll_back(lab, inventory, "exim_relay.yml", mail_exim.config, inbound)


def test_sendmail_relay_over_ssh_closes_the_relay_and_rolls_back(
    mail_network: MailNetwork, mail_sendmail: SendmailInstance
) -> None:
    lab = mail_network
    layout = mail_sendmail.layout
    sendmail = {
        "relay_sendmail_mc": str(layout.mc),
        # the instance's sendmail as the lab runs it (its host name), for `-bt` validation
        "relay_sendmail_binary": str(write_wrapper(layout, mail_sendmail.hostname)),
        "relay_sendmail_makemap": str(makemap_binary()),
        # Debian's stock access file trusts ::1: kept (leaving it out is a removal, refused)
        "relay_allowed_networks": ["127.0.0.1/32", "::1/128", f"{lab.addr.app_server}/32"],
    }
    inventory = write_inventory(lab, lab.start_mail_sshd(), sendmail, "sendmail")
    original = layout.mc.read_bytes()
    assert rcpt_code(lab.addr.mail, 25, "relaytest@example.com") == 250  # promiscuous_relay

    check = run_playbook("sendmail_relay.yml", inventory, lab.work, "--check", "--diff")
    assert check.returncode == 0 and check.recap["mail"]["changed"] == 1, check.output
    assert "promiscuous_relay" in check.output  # the mc's diff
    assert layout.mc.read_bytes() == original

    inbound = f"postmaster@{mail_sendmail.hostname}"
    apply_again_and_roll_back(lab, inventory, "sendmail_relay.yml", layout.mc, inbound)
