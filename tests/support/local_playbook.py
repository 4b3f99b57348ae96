"""A playbook run on localhost as Ansible runs a module there: with the controller's own Python
(implicit-localhost semantics), this repository's ansible.cfg, no colour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_local_playbook(
    tmp_path: Path, playbook: str, *extra: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Write `playbook` and an inventory of localhost under tmp_path and run them."""
    path = tmp_path / "playbook.yml"
    path.write_text(playbook)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "localhost ansible_connection=local"
        " ansible_python_interpreter={{ ansible_playbook_python }}\n"
    )
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(path), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def as_a_module(tmp_path: Path) -> list[str]:
    """ansible-playbook arguments that make a batch module run as a module: another interpreter
    than the controller's own (a wrapper around the same Python), so that its action does not
    run it in the task's worker (plugins/plugin_utils/controller_module.py) — for tests of what
    passes through the module's stdout pipe."""
    wrapper = tmp_path / "python-as-module"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return ["-e", f"ansible_python_interpreter={wrapper}"]


def probe_playbook(targets: list[str], out: Path, **options: Any) -> str:
    """smtp_relay_probe on `targets` with `options`, its registered result saved to `out`."""
    lines = "".join(f"        {k}: {json.dumps(v)}\n" for k, v in options.items())
    return f"""
- name: Probe
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Probe the targets
      relayguard.mail.smtp_relay_probe:
        targets: {json.dumps(targets)}
{lines}      register: probe
    - name: Save the result
      ansible.builtin.copy:
        content: "{{{{ probe | to_json }}}}"
        dest: {out}
        mode: "0600"
      check_mode: false
"""
