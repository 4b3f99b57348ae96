"""Without an inventory the playbook refuses politely; the Ansible content passes
ansible-lint's production profile."""

from __future__ import annotations

import os
import subprocess

from playbook.fleet import BIN, ROOT


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        **extra,
    }


def test_without_an_inventory_the_playbook_refuses_politely() -> None:
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "secure-relay.yml"],
        cwd=ROOT,
        # no -i, and no system inventory either: as on a fresh controller
        env=_env(ANSIBLE_INVENTORY=str(ROOT / "inventory" / "no-such-inventory")),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "needs an inventory of mail servers" in proc.stdout
    assert "relayguard lab up" in proc.stdout


def test_the_playbooks_and_roles_pass_ansible_lint_production() -> None:
    paths = ["secure-relay.yml", "playbooks", "roles", "inventory"]
    proc = subprocess.run(
        [str(BIN / "ansible-lint"), "--profile", "production", "--offline", "--nocolor", *paths],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
