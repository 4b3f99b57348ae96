"""The smtp_relay_probe module in a real ansible-playbook run, in normal and check mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.scripted_smtp import Script, relay_policy, serve

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_playbook(
    tmp_path: Path, targets: list[str], *extra: str, ports: list[int] | None = None
) -> tuple[int, dict[str, object]]:
    out = tmp_path / "result.json"
    playbook = tmp_path / "probe.yml"
    playbook.write_text(
        f"""
- name: Probe
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Probe the targets
      relayguard.mail.smtp_relay_probe:
        targets: {json.dumps(targets)}
        timeout: 3
        local_domain: test.example
        {f"ports: {json.dumps(ports)}" if ports else ""}
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
    # implicit-localhost semantics: modules run with the controller's own Python
    inventory.write_text(
        "localhost ansible_connection=local"
        " ansible_python_interpreter={{ ansible_playbook_python }}\n"
    )
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    data = json.loads(out.read_text()) if out.exists() else {}
    if proc.returncode:
        data["_stdout"] = proc.stdout + proc.stderr
    return proc.returncode, data


@pytest.mark.parametrize("check", [False, True])
def test_module_probes_and_never_changes(tmp_path: Path, check: bool) -> None:
    with (
        serve(Script(relay_policy(True)), host="127.0.2.31") as open_srv,
        serve(Script(relay_policy(False)), host="127.0.2.32") as closed_srv,
    ):
        rc, result = run_playbook(
            tmp_path, [open_srv.target, closed_srv.target], *(["--check"] if check else [])
        )
    assert rc == 0, result.get("_stdout")
    assert result["changed"] is False
    assert result["verdicts"] == {open_srv.target: "open", closed_srv.target: "closed"}
    assert result["open"] == [open_srv.target]
    probe = result["probe"]
    assert isinstance(probe, dict) and probe["schema"] == "relayguard.probe/1"


def test_module_probes_a_host_on_each_of_its_ports(tmp_path: Path) -> None:
    # one host, two listeners: the open one and the closed one each get their own verdict
    with (
        serve(Script(relay_policy(True)), host="127.0.2.33") as open_srv,
        serve(Script(relay_policy(False)), host="127.0.2.33") as closed_srv,
    ):
        rc, result = run_playbook(tmp_path, ["127.0.2.33"], ports=[open_srv.port, closed_srv.port])
    assert rc == 0, result.get("_stdout")
    assert result["verdicts"] == {open_srv.target: "open", closed_srv.target: "closed"}
    assert result["open"] == [open_srv.target]


def test_module_refuses_bad_input_naming_the_field(tmp_path: Path) -> None:
    rc, result = run_playbook(tmp_path, ["bad target;rm -rf /"])
    assert rc != 0
    assert "bad target;rm -rf /" in str(result.get("_stdout"))


def test_module_refuses_a_password_in_the_vantage_url(tmp_path: Path) -> None:
    playbook = tmp_path / "via.yml"
    playbook.write_text(
        """
- name: Probe
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Probe through a jump host given with a password
      relayguard.mail.smtp_relay_probe:
        targets: ["127.0.2.60:25"]
        via: ["ssh://ops:hunter2secret@127.0.2.61"]
"""
    )
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "localhost ansible_connection=local"
        " ansible_python_interpreter={{ ansible_playbook_python }}\n"
    )
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode != 0
    assert "via[0]" in proc.stdout
    assert "hunter2secret" not in proc.stdout + proc.stderr
