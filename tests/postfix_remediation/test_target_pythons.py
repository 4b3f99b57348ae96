"""postfix_relay runs on the Postfix host: it compiles and plans on every Python its targets ship.

ansible-core 2.17 and later (meta/runtime.yml) manage targets with Python 3.7 to 3.13, so those
are the versions the target-side files must run on (docs/ansible.md, "Target Pythons"). Each
interpreter found here compiles both files and, for the standard-library backend, imports it and
plans the closure of an open relay. /usr/bin/python3 must be there; the pyenv interpreters are
used where installed (CI's machine has them, so in CI a missing one fails instead of skipping).
"""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = [
    ROOT / "plugins" / "modules" / "postfix_relay.py",
    *(
        ROOT / "plugins" / "module_utils" / f"{name}.py"
        for name in (
            "relay_backend",
            "relay_options",
            "postfix_options",
            "postfix_validate",
            "postfix_facts",
            "postfix_change",
            "postfix_domains",
            "postfix_services",
            "postfix_instances",
            "postfix_overrides",
            "postfix_plan",
            "postfix_apply",
            "postfix_relay_backend",
            "command_runner",
        )
    ),
]
VERSIONS = ["3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

PLAN = """
import sys
sys.path.insert(0, sys.argv[1])
import postfix_relay_backend as b
raw = {"mynetworks": "0.0.0.0/0", "relay_domains": "",
       "mydestination": "mail.example.net, example.net",
       "smtpd_relay_restrictions":
           "permit_mynetworks permit_sasl_authenticated defer_unauth_destination",
       "smtpd_recipient_restrictions": "", "mail_version": "3.7.11",
       "myhostname": "mail.example.net", "mydomain": "example.net", "myorigin": "example.net"}
facts = b.PostfixFacts(config_dir="/etc/postfix", raw=raw, expanded=dict(raw),
                       explicit=frozenset(raw), master_overrides=(), table_hits={})
desired = b.desired_state({"relay_allowed_networks": ["127.0.0.0/8"],
                           "inbound_domains": ["example.net"]})
plan = b.plan_relay(facts, desired)
names = sorted(change.name for change in plan.changes)
assert "mynetworks" in names, names
override = b.MasterOverride("smtp", "inet", "smtpd_relay_restrictions", "permit")
facts = b.PostfixFacts(config_dir="/etc/postfix", raw=raw, expanded=dict(raw),
                       explicit=frozenset(raw), master_overrides=(override,), table_hits={})
assert b.plan_relay(facts, desired).override_settings(), "master.cf override not planned"
print("planned", " ".join(names))
"""


def _interpreter(version: str) -> str | None:
    found = sorted(glob.glob(f"/root/.pyenv/versions/{version}.*/bin/python{version}"))
    if found:
        return found[-1]
    system = f"/usr/bin/python{version}"
    return system if os.path.exists(system) else None


@pytest.mark.parametrize("version", VERSIONS)
def test_target_side_code_compiles_and_plans(version: str) -> None:
    python = _interpreter(version)
    if python is None:
        if IN_CI and not os.path.isdir("/root/.pyenv/versions"):
            # a CI machine without pyenv still has the system Python, tested as its version
            pytest.fail(f"Python {version}: no interpreter and no pyenv on this CI machine")
        pytest.skip(f"Python {version} is not installed (pyenv install {version})")
    for path in FILES:
        done = subprocess.run(
            [python, "-m", "py_compile", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{path.name} on {version}: {done.stderr}"
    done = subprocess.run(
        [python, "-c", PLAN, str(FILES[1].parent)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "mynetworks" in done.stdout
