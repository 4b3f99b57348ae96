"""The preflight's management endpoint (roles/relay/tasks/preflight.yml: relay_inputs computes
it into the host's record, registered as relay_preflight; the task run as written): what the
controller checks before anything else, per channel — an Exchange host's WinRM, a 5.5 host's
SMB (NT 4.0 / 2000 have no WinRM; 139 on NT 4.0), the management host's WinRM
(via-management-host), an MTA's SSH, nothing for a local connection; IPv6 bracketed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"

HOSTS = {
    "ex55-nt4": {
        "ansible_host": "2001:db8::7",
        "relayguard_platform": "exchange55",
        "relay_exchange_smb_port": 139,
    },
    "ex55-mgmt": {
        "ansible_host": "192.0.2.8",
        "relayguard_platform": "exchange55",
        "relay_exchange_channel": "via-management-host",
        "relay_exchange_management_host": "mgmt.corp.example",
        "relay_exchange_management_port": 5986,
    },
    "ex19": {
        "ansible_host": "192.0.2.9",
        "ansible_port": 5986,
        "relayguard_platform": "exchange2019",
    },
    "mx-ssh": {
        "ansible_host": "192.0.2.10",
        "relayguard_platform": "exim",
        "ansible_connection": "ssh",
    },
    "mx-local": {"relayguard_platform": "postfix", "ansible_connection": "local"},
}
EXPECTED = {
    "ex55-nt4": "[2001:db8::7]:139",
    "ex55-mgmt": "mgmt.corp.example:5986",
    "ex19": "192.0.2.9:5986",
    "mx-ssh": "192.0.2.10:22",
    "mx-local": None,
}


def test_the_endpoint_follows_the_channel(tmp_path: Path) -> None:
    tasks = yaml.safe_load((ROOT / "roles/relay/tasks/preflight.yml").read_text())
    inputs = next(t for t in tasks if "relayguard.mail.relay_inputs" in t)
    assert inputs["register"] == "relay_preflight"
    out = tmp_path / "endpoints"
    out.mkdir()
    play = [
        {
            "name": "The preflight's input check and record, as written",
            "hosts": "all",
            "gather_facts": False,
            "tasks": [
                inputs,
                {
                    "name": "Save the endpoint",
                    "delegate_to": "localhost",
                    "ansible.builtin.copy": {
                        "content": "{{ relay_preflight.record.management_endpoint | to_json }}",
                        "dest": f"{out}/{{{{ inventory_hostname }}}}.json",
                        "mode": "0600",
                    },
                },
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    # the role's defaults as the lowest-precedence variables, each host's own above them; the
    # connection a host declares is what the expression reads (set_fact never connects)
    defaults = yaml.safe_load((ROOT / "roles/relay/defaults/main.yml").read_text())
    hosts = {n: {"ansible_connection": "winrm", **v} for n, v in HOSTS.items()}
    usable = {
        "relay_allowed_networks": ["10.0.0.0/8"],
        "relay_inbound_domains": ["corp.example"],
        "ansible_user": "admin",
        "ansible_password": "S3cret-endpoint!",
    }
    inventory = {"all": {"vars": {**defaults, **usable}, "hosts": hosts}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    # the play only templates (set_fact) and writes on the controller (delegate_to localhost)
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"),
         str(tmp_path / "play.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    found = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert found == EXPECTED
