"""secure_relay's Postfix role on a real multi-instance host (MULTI_INSTANCE_README): with
relay_postfix_instances: all, detect records each change under its instance's config dir,
apply closes the open secondary and keeps each changed instance's backup, and the rollback
puts that instance's main.cf back (the relay is open again). 127.0.170.0/24 (sites170.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.local_playbook import run_local_playbook

from postfix_remediation.sites170 import INBOUND, Factory, postconf, postfix170, relays
from relayguard.lab.postfix.instance import PostfixInstance

pytestmark = [pytest.mark.realserver, pytest.mark.root]
__all__ = ["postfix170"]  # the fixture, used by name

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "roles" / "postfix_remediate" / "tasks"


def host_record(primary: PostfixInstance) -> dict[str, Any]:
    """The facts the role's tasks read (roles/relay/defaults and the preflight's record)."""
    return {
        "relay_family": "postfix",
        "relay_status": "",
        "relay_apply": True,
        "relay_changes": [],
        "relay_rules": [],
        "relay_backup": {},
        "relay_postfix_config_dir": str(primary.config_dir),
        "relay_allowed_networks": ["127.0.0.1/32"],
        "relay_inbound_domains": [INBOUND],
        "relay_authenticated": "keep",
        "relay_postfix_refusal": "keep",
        "relay_postfix_inbound_domain_class": "auto",
        "relay_partner_domains": [],
        "relay_allow_removals": False,
        "relay_postfix_become": False,
        "relay_postfix_instances": "all",
        "relay_postfix_instance_options": {},
    }


def play(record: dict[str, Any], steps: list[str], out: Path) -> str:
    tasks = "".join(
        f"    - name: The role's {step}\n"
        f"      ansible.builtin.import_tasks: {TASKS / (step + '.yml')}\n"
        for step in steps
    )
    return f"""
- name: The Postfix role's steps, as secure_relay runs them
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The host's record so far
      ansible.builtin.set_fact: {json.dumps(record)}
{tasks}    - name: Save the host's record
      ansible.builtin.copy:
        content: "{{{{ {{'changes': relay_changes, 'backup': relay_backup,
                       'rules': relay_rules}} | to_json }}}}"
        dest: {out}
        mode: "0600"
"""


def test_the_role_closes_and_rolls_back_the_open_secondary(
    postfix170: Factory, tmp_path: Path
) -> None:
    primary = postfix170("closed")
    secondary = postfix170("open_relay")
    postconf(primary, "-e", f"multi_instance_directories = {secondary.config_dir}")
    postconf(secondary, "-e", "multi_instance_name = postfix-out", "multi_instance_enable = yes")
    assert relays(secondary) and not relays(primary)
    primary_main = primary.layout.main_cf.read_bytes()
    secondary_main = secondary.layout.main_cf.read_bytes()

    out = tmp_path / "record.json"
    done = run_local_playbook(tmp_path, play(host_record(primary), ["detect", "main"], out))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    record = json.loads(out.read_text())
    targets = {c["target"] for c in record["changes"]}
    assert f"{secondary.config_dir}/main.cf mynetworks" in targets, targets
    assert all(t.startswith(str(secondary.config_dir)) for t in targets), targets
    assert all(c["applied"] for c in record["changes"])
    (backup,) = record["backup"]["postfix"]  # the secondary alone changed
    assert backup["config_dir"] == str(secondary.config_dir)
    assert Path(backup["backup_file"]).read_bytes() == secondary_main
    subjects = {r["subject"] for r in record["rules"]}
    assert subjects == {str(primary.layout.main_cf), str(secondary.layout.main_cf)}
    secondary.wait_ready(30)
    assert not relays(secondary) and not relays(primary)
    assert primary.layout.main_cf.read_bytes() == primary_main

    restored = run_local_playbook(
        tmp_path, play({**host_record(primary), "relay_backup": record["backup"]}, ["restore"], out)
    )
    assert restored.returncode == 0, (restored.stdout + restored.stderr)[-3000:]
    assert secondary.layout.main_cf.read_bytes() == secondary_main
    secondary.wait_ready(30)
    assert relays(secondary)  # the rollback reopened exactly what was there
