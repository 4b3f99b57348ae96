"""modules/exchange_relay.py and modules/exchange_patch.py document what they accept:
ansible-doc renders them, DOCUMENTATION matches the argument spec option for option, EXAMPLES
use the module, and every secret option is no_log."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from relayguard.exchange.connection import CONNECTION_ARGUMENT_SPEC
from relayguard.exchange.patch_task import PATCH_ARGUMENT_SPEC
from relayguard.exchange.relay_task import RELAY_ARGUMENT_SPEC

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODULES = ("exchange_relay", "exchange_patch")
# each module validates with its library spec plus the connection options
SPECS = {"exchange_relay": RELAY_ARGUMENT_SPEC, "exchange_patch": PATCH_ARGUMENT_SPEC}


def constants(module: str) -> dict[str, object]:
    tree = ast.parse((REPO / "plugins" / "modules" / f"{module}.py").read_text())
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in {"DOCUMENTATION", "EXAMPLES", "RETURN"}:
                found[name] = ast.literal_eval(node.value)
    return found


def documented_options(documentation: str) -> dict[str, Any]:
    """The module's options with those of the doc fragments it extends (as ansible-doc does)."""
    doc = yaml.safe_load(documentation)
    options: dict[str, Any] = dict(doc["options"])
    for fragment in doc.get("extends_documentation_fragment", []):
        source = (REPO / "plugins" / "doc_fragments" / f"{fragment.rsplit('.', 1)[-1]}.py").read_text()
        tree = ast.parse(source)
        cls = next(n for n in tree.body if isinstance(n, ast.ClassDef))
        text = next(
            ast.literal_eval(n.value)
            for n in cls.body
            if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "DOCUMENTATION"
        )
        options.update(yaml.safe_load(text)["options"])
    return options


@pytest.mark.parametrize("module", MODULES)
def test_documentation_matches_the_argument_spec(module: str) -> None:
    found = constants(module)
    documented = documented_options(str(found["DOCUMENTATION"]))
    spec = dict(SPECS[module])
    spec.update(CONNECTION_ARGUMENT_SPEC)
    assert set(documented) == set(spec)
    for name, option in spec.items():
        doc = documented[name]
        assert doc["type"] == option["type"], name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("choices") == option.get("choices"), name
        assert doc.get("elements") == option.get("elements"), name
        assert bool(doc.get("required")) == bool(option.get("required")), name
        assert doc["description"], name
    assert CONNECTION_ARGUMENT_SPEC["winrm_password"]["no_log"] is True
    examples = yaml.safe_load(str(found["EXAMPLES"]))
    assert examples and all(module in task for task in examples)
    assert yaml.safe_load(str(found["RETURN"]))


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders_the_module(module: str, tmp_path: Path) -> None:
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    done = subprocess.run(
        [str(BIN / "ansible-doc"), f"relayguard.mail.{module}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert module.upper() in done.stdout or module in done.stdout
    assert "[WARNING]" not in done.stderr, done.stderr
