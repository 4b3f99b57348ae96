"""The whole story on a namespaced network: a mail host that trusts the controller's LAN,
an SSH jump host outside it, `postfix_relay` applied by ansible-playbook over a real SSH
connection in the four-pass pattern, and the probe's verdicts from both vantage points."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from postfix_remediation import netlab
from postfix_remediation.ansible_run import run_playbook
from postfix_remediation.conftest import INBOUND_DOMAIN, MailNetwork
from postfix_remediation.relaycheck import rcpt_code, verdict, verdict_via
from relayguard.vantage import SshJump, SshSettings, parse_vantage

pytestmark = [pytest.mark.realserver, pytest.mark.root]


def write_inventory(lab: MailNetwork, mail_sshd: netlab.SshServer) -> Path:
    known = lab.work / "ansible_known_hosts"
    known.write_text(mail_sshd.known_hosts_line())
    assert lab.mail_postfix is not None
    inventory = {
        "all": {
            "hosts": {
                "mail": {
                    "ansible_connection": "ssh",
                    "ansible_host": lab.addr.mail,
                    "ansible_port": mail_sshd.port,
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(lab.client_key),
                    "ansible_ssh_common_args": (
                        f"-o UserKnownHostsFile={known} -o GlobalKnownHostsFile=/dev/null "
                        "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o IdentityAgent=none"
                    ),
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "relay_config_dir": str(lab.mail_postfix.config_dir),
                    "relay_allowed_networks": ["127.0.0.1/32", f"{lab.addr.app_server}/32"],
                    "relay_inbound_domains": [INBOUND_DOMAIN],
                    "relay_refusal": "permanent",
                    # the controller's LAN stops being trusted: a removal the inventory allows
                    "relay_allow_removals": True,
                }
            }
        }
    }
    path = lab.work / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def test_postfix_relay_over_ssh_closes_the_relay_for_outsiders(mail_network: MailNetwork) -> None:
    lab = mail_network
    postfix = lab.start_postfix(lab.trusting_controller_lan())
    mail_sshd = lab.start_mail_sshd()
    jump_sshd = lab.start_jump_sshd()
    inventory = write_inventory(lab, mail_sshd)
    known = lab.work / "jump_known_hosts"
    known.write_text(jump_sshd.known_hosts_line())
    vantage = parse_vantage(lab.jump_spec())
    ssh = SshSettings(known_hosts=(known,), key_file=lab.client_key, use_agent=False)
    target, mail, app_server = lab.target, lab.addr.mail, lab.addr.app_server
    main_cf = postfix.layout.main_cf
    original = main_cf.read_bytes()

    with SshJump(vantage, ssh) as jump:
        # Before: the controller is trusted (looks open); the outsider is deferred (4xx).
        assert verdict(target) == "open"
        assert verdict_via(jump, target)[0] == "closed"

        # Pass 1: check mode plans the change and changes nothing.
        check = run_playbook("close_relay.yml", inventory, lab.work, "--check", "--diff")
        assert check.returncode == 0, check.output
        assert check.recap["mail"]["changed"] == 1
        assert f"-mynetworks = 127.0.0.1/32, {lab.addr.controller_lan}" in check.output
        assert f"+mynetworks = 127.0.0.1/32, {app_server}/32" in check.output
        assert f"+# removes: main.cf mynetworks: {lab.addr.controller_lan}" in check.output
        assert check.results["mail"]["backup_file"] is None
        assert main_cf.read_bytes() == original
        assert verdict(target) == "open"

        # Pass 2: apply.
        apply = run_playbook("close_relay.yml", inventory, lab.work, "--diff")
        assert apply.returncode == 0, apply.output
        assert apply.recap["mail"]["changed"] == 1
        result = apply.results["mail"]
        assert result["reloaded"] is True
        backup = Path(str(result["backup_file"]))
        assert backup.read_bytes() == original
        changed = main_cf.read_bytes()

        # Closed for outsiders from both vantage points, with a permanent (5xx) refusal ...
        assert verdict(target) == "closed"
        found, reason = verdict_via(jump, target)
        assert found == "closed", reason
        assert rcpt_code(mail, 25, "relaytest@example.com") == 554
        # ... while the allowed network still relays and inbound mail is still accepted.
        assert verdict(target, app_server) == "open"
        assert rcpt_code(mail, 25, "relaytest@example.com", app_server) == 250
        assert rcpt_code(mail, 25, f"postmaster@{INBOUND_DOMAIN}") == 250
        with jump.forward(mail, 25) as forward:
            assert rcpt_code(forward.host, forward.port, f"postmaster@{INBOUND_DOMAIN}") == 250

        # Passes 3 and 4: nothing left to do.
        recheck = run_playbook("close_relay.yml", inventory, lab.work, "--check", "--diff")
        assert recheck.returncode == 0 and recheck.recap["mail"]["changed"] == 0, recheck.output
        reapply = run_playbook("close_relay.yml", inventory, lab.work)
        assert reapply.returncode == 0 and reapply.recap["mail"]["changed"] == 0, reapply.output
        assert reapply.results["mail"]["backup_file"] is None
        assert main_cf.read_bytes() == changed

        # Rolling back through Ansible puts the original main.cf back (and reloads it).
        rollback = run_playbook(
            "restore_relay.yml", inventory, lab.work, "-e", f"relay_backup_file={backup}"
        )
        assert rollback.returncode == 0 and rollback.recap["mail"]["changed"] == 1, rollback.output
        assert main_cf.read_bytes() == original
        assert verdict(target) == "open"
        assert verdict_via(jump, target)[0] == "closed"


def test_hostile_values_fail_the_task_before_anything_is_written(
    mail_network: MailNetwork,
) -> None:
    lab = mail_network
    postfix = lab.start_postfix({"relay_domains": INBOUND_DOMAIN})
    mail_sshd = lab.start_mail_sshd()
    inventory = write_inventory(lab, mail_sshd)
    before = postfix.layout.main_cf.read_bytes()
    for hostile in ('["10.0.0.0/8 0.0.0.0/0"]', '["10.0.0.0/8\\nmynetworks = 0.0.0.0/0"]'):
        run = run_playbook(
            "close_relay.yml", inventory, lab.work, "-e", f'{{"relay_allowed_networks": {hostile}}}'
        )
        assert run.returncode != 0
        assert run.recap["mail"]["failed"] == 1 and run.recap["mail"]["changed"] == 0
        assert "relay_allowed_networks[0]: '10.0.0.0/8" in run.output
    assert postfix.layout.main_cf.read_bytes() == before
    assert not (postfix.config_dir / "relayguard-backups").exists()
