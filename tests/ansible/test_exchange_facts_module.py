"""The exchange_facts module in real ansible-playbook runs against the lab's Exchange twins
(inventory written by `relayguard lab up`: WinRM over HTTPS, NTLM, the lab CA validated),
in normal and check mode; hostile arguments; secrets never in the output; ansible-doc.

Addresses: 127.0.53.1 upwards (this test's lab fleet).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.lab_fleet import running_lab

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FIRST_ADDRESS = "127.0.53.1"

# docs/lab.md "Default fleet": the Exchange twins and the verdict measured on the wire.
LEVELS = {
    "ex55-sp2-noreroute": ("exchange55", "SP2", "missing"),
    "ex55-sp2-reroute-open": ("exchange55", "SP2", "missing"),
    "ex55-sp3-wide-allow": ("exchange55", "SP3", "present"),
    # 2013+: behind their CU's newest update (the relay-closed ex2019-compliant too)
    "ex2019-anon-relay": ("exchange2019", "CU14", "missing"),
    "ex2016-star-domain": ("exchange2016", "CU23", "missing"),
    "ex2019-compliant": ("exchange2019", "CU15", "missing"),
}

PLAYBOOK = """
- name: Exchange facts of the lab
  hosts: exchange55:exchange_modern
  gather_facts: false
  tasks:
    - name: Detect the Exchange server
      relayguard.mail.exchange_facts:
        winrm_host: "{{{{ ansible_host }}}}"
        winrm_port: "{{{{ ansible_port }}}}"
        winrm_username: "{{{{ ansible_user }}}}"
        winrm_password: "{{{{ ansible_password }}}}"
        ca_path: "{{{{ ansible_winrm_ca_trust_path }}}}"
        {extra}
      delegate_to: localhost
      register: exchange
    - name: Save the result
      ansible.builtin.copy:
        content: "{{{{ exchange | to_json }}}}"
        dest: "{out}/{{{{ inventory_hostname }}}}.json"
        mode: "0600"
      delegate_to: localhost
      check_mode: false
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, Any]]:
    with running_lab("--fleet", "exchange", "--first-address", FIRST_ADDRESS) as running:
        yield running


def run_playbook(
    lab: dict[str, Any], tmp_path: Path, *extra_args: str, extra: str = ""
) -> tuple[int, str, dict[str, dict[str, Any]]]:
    out = tmp_path / "out"
    out.mkdir()
    playbook = tmp_path / "facts.yml"
    playbook.write_text(PLAYBOOK.format(extra=extra, out=out))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", lab["inventory"], str(playbook), "-v", *extra_args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    results = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    return proc.returncode, proc.stdout + proc.stderr, results


@pytest.mark.parametrize("check", [False, True], ids=["apply", "check"])
def test_module_reports_every_twin(lab: dict[str, Any], tmp_path: Path, check: bool) -> None:
    rc, output, results = run_playbook(lab, tmp_path, *(["--check"] if check else []))
    assert rc == 0, output
    expected = {h["name"]: h["expected"] for h in lab["hosts"]}
    assert set(results) == set(LEVELS) == set(expected)
    for name, (platform, level, patch) in LEVELS.items():
        result = results[name]
        assert result["changed"] is False, name
        assert result["facts"]["platform"] == platform, name
        assert result["facts"]["build"]["level"] == level, name
        assert result["exposure"]["verdict"] == expected[name], name
        if patch is not None:
            assert result["patch"]["state"] == patch, name
        if platform != "exchange55":
            assert result["facts"]["exchange_shell"] == "SnapIn"
    passwords = [h["password"] for h in lab["hosts"]]
    for password in passwords:
        assert password not in output
        assert all(password not in json.dumps(r) for r in results.values())


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ('winrm_transport: "ntlm; Remove-Item C:\\\\"', "winrm_transport"),
        ("winrm_operation_timeout: -5", "winrm_operation_timeout"),
        ('winrm_scheme: "$(Stop-Computer)"', "winrm_scheme"),
        ('validate_certs: "$(Stop-Computer)"', "validate_certs"),
        ("winrm_read_timeout: 5", "winrm_read_timeout"),
    ],
)
def test_module_refuses_hostile_arguments(
    lab: dict[str, Any], tmp_path: Path, extra: str, named: str
) -> None:
    rc, output, results = run_playbook(lab, tmp_path, "--limit", "ex2019-compliant", extra=extra)
    assert rc != 0 and results == {}
    assert named in output and "Traceback" not in output
    assert all(h["password"] not in output for h in lab["hosts"])


def test_module_refuses_a_hostile_host(lab: dict[str, Any], tmp_path: Path) -> None:
    hostile = "127.0.53.1; $(Stop-Computer)"
    playbook = PLAYBOOK.replace("{{{{ ansible_host }}}}", hostile)
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "facts.yml").write_text(playbook.format(extra="", out=out))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            *("-i", lab["inventory"], str(tmp_path / "facts.yml")),
            *("--limit", "ex55-sp3-wide-allow"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "winrm_host: '127.0.53.1; $(Stop-Computer)'" in output
    assert "Traceback" not in output


def test_module_fails_cleanly_when_the_logon_is_refused(
    lab: dict[str, Any], tmp_path: Path
) -> None:
    rc, output, results = run_playbook(
        lab, tmp_path, "--limit", "ex2019-anon-relay", "-e", "ansible_password=Not-It-77"
    )
    assert rc != 0 and results == {}
    assert "auth refused" in output and "Not-It-77" not in output


def test_ansible_doc_reads_the_documentation() -> None:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        [str(BIN / "ansible-doc"), "--json", "relayguard.mail.exchange_facts"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["relayguard.mail.exchange_facts"]
    options = doc["doc"]["options"]
    assert {
        "winrm_host",
        "winrm_port",
        "winrm_scheme",
        "winrm_transport",
        "winrm_username",
        "winrm_password",
        "validate_certs",
        "ca_path",
    } <= set(options)
    assert options["ca_path"]["aliases"] == ["winrm_ca_trust_path", "ca_trust_path"]
    assert {"facts", "exposure", "patch"} <= set(doc["return"])
    assert doc["examples"]
