"""modules/postfix_relay.py documents what it accepts: ansible-doc renders it, DOCUMENTATION
matches the argument spec, and the example playbooks pass ansible-lint's production profile."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from postfix_remediation.ansible_run import PLAYBOOKS, REPO
from postfix_remediation.backend import MODULE_PATH, backend
from relayguard.lab import module_utils

options = module_utils.load("postfix_options")

BIN = Path(sys.executable).parent


def module_constants() -> dict[str, object]:
    tree = ast.parse(MODULE_PATH.read_text())
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in {"DOCUMENTATION", "EXAMPLES", "RETURN"}:
                found[name] = ast.literal_eval(node.value)
    return found


def test_documentation_matches_the_argument_spec() -> None:
    constants = module_constants()
    documented = yaml.safe_load(str(constants["DOCUMENTATION"]))["options"]
    spec = options.POSTFIX_RELAY_SPEC  # declared once, in module_utils
    assert "ARGUMENT_SPEC = POSTFIX_RELAY_SPEC" in MODULE_PATH.read_text()
    assert set(documented) == set(spec)
    for name, option in spec.items():
        doc = documented[name]
        assert doc["type"] == option["type"], name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("choices") == option.get("choices"), name
        assert doc.get("elements") == option.get("elements"), name
        assert doc["description"], name
    assert spec["inbound_domain_class"]["choices"] == list(backend.INBOUND_CLASS_CHOICES)
    assert spec["relay_refusal"]["choices"] == list(backend.RELAY_REFUSALS)


def test_examples_and_return_are_complete() -> None:
    constants = module_constants()
    examples = yaml.safe_load(str(constants["EXAMPLES"]))
    assert examples and all("relayguard.mail.postfix_relay" in task for task in examples)
    returned = yaml.safe_load(str(constants["RETURN"]))
    result_keys = set(backend.RunResult(False, "/etc/postfix", "/etc/postfix/main.cf").as_dict())
    assert result_keys - {"changed"} <= set(returned)


def test_ansible_doc_renders_the_module(tmp_path: Path) -> None:
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    done = subprocess.run(
        [str(BIN / "ansible-doc"), "relayguard.mail.postfix_relay"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "relay_allowed_networks" in done.stdout and "RETURN VALUES" in done.stdout
    assert "WARNING" not in done.stderr.replace("PATH altered", "")


@pytest.mark.realserver
def test_example_playbooks_pass_ansible_lint_production(tmp_path: Path) -> None:
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path)}
    playbooks = sorted(str(p.relative_to(REPO)) for p in PLAYBOOKS.glob("*.yml"))
    assert playbooks
    done = subprocess.run(
        [str(BIN / "ansible-lint"), "--profile", "production", "--offline", *playbooks],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
