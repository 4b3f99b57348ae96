"""The batch modules' actions (plugins/plugin_utils/controller_module.py): run on the
controller with its own Python, a module's main() runs in the task's worker with the same
argument checks and the same removal of no_log values as AnsibleModule; run anywhere else (here:
another interpreter) it runs as the module — and both give the same result."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from support import plugin_files

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
cm = plugin_files.load("plugins/plugin_utils/controller_module.py", "controller_module")

SPEC: dict[str, Any] = {
    "name": {"type": "str", "required": True},
    "password": {"type": "str", "no_log": True},
    "count": {"type": "int", "default": 3},
}


def echo(module_class: Any) -> None:
    """A module's main(): echoes what it was given, the password too (to be removed)."""
    module = module_class(argument_spec=SPEC, supports_check_mode=True)
    if module.params["name"] == "fail":
        module.fail_json(msg=f"cannot use {module.params['password']}")
    module.warn("a warning")
    module.exit_json(
        params=module.params, check_mode=module.check_mode, diff=module._diff, changed=True
    )


def test_arguments_are_checked_and_converted_as_ansiblemodule_does() -> None:
    out = cm.run_main(echo, {"name": "x", "count": "7"}, check_mode=True, diff=False)
    assert out["params"] == {"name": "x", "password": None, "count": 7}
    assert out["check_mode"] is True and out["diff"] is False and out["changed"] is True
    assert out["warnings"] == ["a warning"]
    missing = cm.run_main(echo, {"count": 1}, check_mode=False, diff=False)
    assert missing["failed"] and "missing required arguments: name" in missing["msg"], missing
    unknown = cm.run_main(echo, {"name": "x", "colour": "red"}, check_mode=False, diff=False)
    assert unknown["failed"] and "colour" in unknown["msg"], unknown
    wrong = cm.run_main(echo, {"name": "x", "count": "many"}, check_mode=False, diff=False)
    assert wrong["failed"] and "count" in wrong["msg"], wrong


def test_no_log_values_never_leave_the_module() -> None:
    secret = "S3cret-Passw0rd"
    out = cm.run_main(echo, {"name": "x", "password": secret}, check_mode=False, diff=True)
    assert secret not in json.dumps(out), out
    assert out["params"]["password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    failed = cm.run_main(echo, {"name": "fail", "password": secret}, check_mode=False, diff=False)
    assert failed["failed"] and secret not in json.dumps(failed), failed


def test_check_mode_is_refused_by_a_module_without_it() -> None:
    def no_check(module_class: Any) -> None:
        module_class(argument_spec=SPEC, supports_check_mode=False)

    out = cm.run_main(no_check, {"name": "x"}, check_mode=True, diff=False)
    assert out.get("skipped"), out


def _listening() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server, server.getsockname()[1]


def test_in_the_worker_and_as_a_module_the_same_result(tmp_path: Path) -> None:
    server, port = _listening()
    # another interpreter than the controller's own (a wrapper around the same Python): the
    # action runs the module as Ansible always does
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    hosts = [
        {"name": "up", "smtp": f"127.0.0.1:{port}"},
        {"name": "down", "smtp": "127.0.0.1:9", "management": f"127.0.0.1:{port}"},
    ]
    task = {"relayguard.mail.relay_reachability": {"hosts": hosts, "timeout": 5}}
    play = [
        {
            "name": "relay_reachability in the worker and as a module",
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "In the worker",
                    **task,
                    "register": "here",
                    "vars": {"ansible_python_interpreter": sys.executable},
                },
                {
                    "name": "As a module",
                    **task,
                    "register": "module",
                    "vars": {"ansible_python_interpreter": str(wrapper)},
                },
                {
                    "name": "Save",
                    "vars": {"ansible_python_interpreter": sys.executable},
                    "ansible.builtin.copy": {
                        "content": "{{ {'here': here, 'module': module} | to_json }}",
                        "dest": str(tmp_path / "out.json"),
                        "mode": "0600",
                    },
                },
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "PATH": f"{BIN}:{os.environ['PATH']}"}  # fmt: skip
    try:
        proc = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-vvv",
             str(tmp_path / "play.yml")],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    finally:
        server.close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    here, module = out["here"], out["module"]
    # one AnsiballZ payload was run, the second task's, under the other interpreter
    mine = "AnsiballZ_relay_reachability.py"
    runs = [line for line in proc.stdout.splitlines() if "EXEC" in line and mine in line]
    assert [line for line in runs if f"{sys.executable} " in line] == [], runs
    assert len([line for line in runs if f"{wrapper} " in line]) == 1, runs
    for result in (here, module):
        assert result["hosts"]["up"]["problem"] is None, result
        assert "SMTP 127.0.0.1:9 does not answer" in result["hosts"]["down"]["problem"], result

    def comparable(result: dict[str, Any]) -> dict[str, Any]:
        return {
            name: {k: (v if k == "problem" else (v or {}).get("reachable")) for k, v in e.items()}
            for name, e in result["hosts"].items()
        }

    assert comparable(here) == comparable(module)
