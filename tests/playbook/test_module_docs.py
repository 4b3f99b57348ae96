"""The playbook's own modules (relay_report, smtp_mail_flow): documentation that ansible-doc
parses and that names exactly the options the module accepts."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from playbook.fleet import BIN, ROOT


def _argument_spec(name: str) -> dict[str, Any]:
    # A module imports its module_utils as Ansible ships them (ansible_collections.relayguard.mail
    # ...): collections/ holds the link that makes this repository that package.
    collections = str(ROOT / "collections")
    if collections not in sys.path:
        sys.path.insert(0, collections)
    spec = importlib.util.spec_from_file_location(name, ROOT / "plugins" / "modules" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argument_spec: dict[str, Any] = module.ARGUMENT_SPEC
    return argument_spec


@pytest.mark.parametrize(
    "name", ["relay_report", "smtp_mail_flow", "exchange_batch", "relay_reachability"]
)
def test_documentation_matches_the_argument_spec(name: str) -> None:
    proc = subprocess.run(
        [str(BIN / "ansible-doc"), "--json", f"relayguard.mail.{name}"],
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)[f"relayguard.mail.{name}"]["doc"]
    spec = _argument_spec(name)
    assert set(doc["options"]) == set(spec)
    for option, documented in doc["options"].items():
        assert documented.get("type", "str") == spec[option].get("type", "str"), option
        assert documented.get("default") == spec[option].get("default"), option
        assert documented.get("choices") == spec[option].get("choices"), option
    secrets = {o for o, s in spec.items() if s.get("no_log")}
    assert secrets == {o for o in spec if "password" in o}
