"""The batch that once lost its result: smtp_relay_probe on two real Postfix hosts through
ansible-playbook, run twenty times (issue: "Module result deserialization failed: No end of
json char found" in one of three secure-relay.yml runs). Every run must hand Ansible the whole
result, with both verdicts. The cause and the fix (stdout made blocking before the single
write) are in docs/reliability.md; tests/ansible/test_probe_module.py shows the cut on a
non-blocking pipe without the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from relayguard.lab.postfix.instance import PostfixInstance

from .conftest import PROBE_SOURCE

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUNS = 20


def _playbook(tmp_path: Path, targets: list[str], out: Path) -> Path:
    playbook = tmp_path / "probe.yml"
    playbook.write_text(
        f"""
- name: Probe a batch of two Postfix hosts, as secure-relay.yml's probe step does
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Probe the batch
      relayguard.mail.smtp_relay_probe:
        targets: {json.dumps(targets)}
        source_address: {PROBE_SOURCE}
        local_domain: corp.example
        timeout: 10
      register: probe
    - name: Save the result
      ansible.builtin.copy:
        content: "{{{{ probe | to_json }}}}"
        dest: {out}
        mode: "0600"
"""
    )
    return playbook


def test_twenty_runs_of_the_batch_all_return_whole_results(
    tmp_path: Path, open_relay_server: PostfixInstance, closed_server: PostfixInstance
) -> None:
    targets = [f"{open_relay_server.address}:25", f"{closed_server.address}:25"]
    out = tmp_path / "result.json"
    playbook = _playbook(tmp_path, targets, out)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "localhost ansible_connection=local"
        " ansible_python_interpreter={{ ansible_playbook_python }}\n"
    )
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    failures: list[str] = []
    for run in range(RUNS):
        out.unlink(missing_ok=True)
        proc = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        text = proc.stdout + proc.stderr
        if proc.returncode != 0 or "deserialization failed" in text or not out.exists():
            failures.append(f"run {run + 1}: rc {proc.returncode}: {text[-1500:]}")
            continue
        verdicts = json.loads(out.read_text())["verdicts"]
        if verdicts != {targets[0]: "open", targets[1]: "closed"}:
            failures.append(f"run {run + 1}: verdicts {verdicts}")
    assert not failures, f"{len(failures)} of {RUNS} runs failed:\n" + "\n".join(failures)
