"""The smtp_relay_probe module's confirm, sink and confirm_timeout options, in a real
ansible-playbook run: confirmed in normal mode, nothing sent in check mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from relayguard.lab.exchange import profiles
from relayguard.lab.exchange.state import LabKnobs
from relayguard.vocabulary import Platform

from .fleet import SINK, SINK_PORT, SOURCE, Twin, next_address

ROOT = Path(__file__).resolve().parents[2]


def play(tmp_path: Path, target: str, *extra: str) -> dict[str, object]:
    out = tmp_path / "result.json"
    playbook = tmp_path / "probe.yml"
    playbook.write_text(
        f"""
- name: Probe with delivery confirmation
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Probe and confirm
      relayguard.mail.smtp_relay_probe:
        targets: ["{target}"]
        source_address: {SOURCE}
        timeout: 5
        confirm: true
        sink: "{SINK}:{SINK_PORT}"
        confirm_timeout: 10
      register: probe
    - name: Save the result
      ansible.builtin.copy:
        content: "{{{{ probe | to_json }}}}"
        dest: {out}
        mode: "0600"
      check_mode: false
"""
    )
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "localhost ansible_connection=local"
        " ansible_python_interpreter={{ ansible_playbook_python }}\n"
    )
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    command = str(Path(sys.executable).parent / "ansible-playbook")
    proc = subprocess.run(
        [command, "-i", str(inventory), str(playbook), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, object] = json.loads(out.read_text())
    return result


@pytest.mark.parametrize("check", [False, True])
def test_module_confirms_only_outside_check_mode(tmp_path: Path, check: bool) -> None:
    state = profiles.modern_anon_relay(
        profiles.TwinSpec(
            name="modrelay",
            server="EXM",
            address=next_address(),
            knobs=LabKnobs(tarpit_seconds=0.0),
        ),
        Platform.EXCHANGE2019,
    )
    twin = Twin(state, tmp_path, SINK_PORT).start()
    try:
        result = play(tmp_path, twin.target, *(["--check"] if check else []))
    finally:
        twin.stop()
    hosts = result["hosts"]
    assert isinstance(hosts, list) and len(hosts) == 1
    assert result["changed"] is False
    if check:
        assert hosts[0]["confirmation"] is None
        assert twin.data_count() == 0
    else:
        assert hosts[0]["confirmation"] == "relayed", hosts[0]["confirmation_evidence"]
        assert twin.data_count() == 1
