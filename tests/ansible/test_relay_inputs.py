"""relay_inputs (plugins/action/relay_inputs.py): the preflight's one input check — the relay
role's argument spec (entry point preflight) and the values a spec cannot judge — names each
problem, fails only the host whose inputs are bad, never shows the password, and a host it
refuses is still reported (its record's defaults), with nothing probed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


def _action() -> ModuleType:
    path = ROOT / "plugins" / "action" / "relay_inputs.py"
    spec = importlib.util.spec_from_file_location("relay_inputs_action", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ACTION = _action()
GOOD: dict[str, Any] = {
    "relay_mode": "enforce",
    "relay_platform": "exchange2019",
    "relay_platform_families": {"exchange2019": "exchange", "postfix": "postfix"},
    "relay_group_families": {"exchange_modern": "exchange", "postfix": "postfix"},
    "relay_allowed_networks": ["10.0.0.0/8", "2001:db8::/32"],
    "relay_inbound_domains": ["example.com", ".example.org"],
    "relay_partner_domains": [],
    "relay_change_window_start": "",
    "relay_change_window_end": "",
    "relay_authenticated": "keep",
    "relay_allow_removals": False,
}


def test_the_spec_is_the_role_preflight_entry_point() -> None:
    specs = yaml.safe_load((ROOT / "roles/relay/meta/argument_specs.yml").read_text())
    assert ACTION.preflight_spec() == specs["argument_specs"]["preflight"]["options"]


def test_usable_inputs_have_no_problem() -> None:
    assert ACTION.value_problems(GOOD, "exchange") == []
    assert ACTION.family_of(GOOD) == "exchange"
    by_group = {**GOOD, "relay_platform": "auto", "group_names": ["postfix"]}
    assert ACTION.family_of(by_group) == "postfix"
    assert ACTION.family_of({**by_group, "group_names": ["web"]}) == "unknown"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"relay_mode": "fix"}, "relay_mode=fix (enforce or audit)"),
        ({"relay_allowed_networks": []}, "relay_allowed_networks=[] (CIDRs, required)"),
        ({"relay_allowed_networks": ["10.0.0.0/8", "any"]}, "relay_allowed_networks: any is not"),
        ({"relay_inbound_domains": ["ex ample.com"]}, "relay_inbound_domains: ex ample.com is not"),
        ({"relay_partner_domains": ["a;b"]}, "relay_partner_domains: a;b is not valid"),
        (
            {"relay_change_window_start": "22:00"},
            "change window 22:00- (both HH:MM UTC or neither)",
        ),
        ({"relay_change_window_start": "24:00", "relay_change_window_end": "02:00"}, "24:00-02:00"),
        ({"relay_authenticated": "maybe"}, "relay_authenticated=maybe (keep, true or false)"),
    ],
)
def test_each_problem_is_named(change: dict[str, Any], named: str) -> None:
    problems = ACTION.value_problems({**GOOD, **change}, "exchange")
    assert len(problems) == 1 and named in problems[0], problems


def test_an_unknown_family_names_the_groups() -> None:
    problems = ACTION.value_problems(GOOD, "unknown")
    assert problems == [
        "platform=exchange2019: no family (put the host in one of the groups "
        "exchange_modern, postfix)"
    ]


def test_exchange_needs_credentials_unless_kerberos_or_a_certificate() -> None:
    assert (
        ACTION.credentials_missing({"ansible_user": "u", "ansible_password": "p"}, "exchange")
        is False
    )
    assert ACTION.credentials_missing({"ansible_user": "u"}, "exchange") is True
    assert ACTION.credentials_missing({"ansible_password": "p"}, "exchange") is True
    kerberos = {"ansible_user": "u", "ansible_winrm_transport": "kerberos"}
    assert ACTION.credentials_missing(kerberos, "exchange") is False
    assert ACTION.credentials_missing({}, "postfix") is False


def test_run_by_ansible_playbook_each_host_its_own(tmp_path: Path) -> None:
    """Three hosts: usable, a wrong type (the spec), an invalid CIDR and no password. Only the
    bad ones fail, each naming its problem; the password never appears, even at -vvv."""
    variables = {k: v for k, v in GOOD.items() if k != "relay_platform"}
    inventory = {
        "exchange_modern": {
            "hosts": {
                "good": {"ansible_password": "S3cret-good!"},
                "typed": {"ansible_password": "S3cret-typed!", "relay_allow_removals": "maybe"},
                "nets": {"relay_allowed_networks": ["10.0.0.0/8", "10.1.0.0/16 or so"]},
            },
            "vars": {
                **variables,
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "ansible_user": "admin",
                "relay_platform": "exchange2019",
            },
        }
    }
    results = tmp_path / "results"
    play = [
        {
            "name": "inputs",
            "hosts": "exchange_modern",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Check",
                    "relayguard.mail.relay_inputs": {},
                    "register": "checked",
                    "ignore_errors": True,
                },
                {
                    "name": "Save",
                    "ansible.builtin.copy": {
                        "content": "{{ checked | to_json }}",
                        "dest": f"{results}-{{{{ inventory_hostname }}}}.json",
                        "mode": "0600",
                    },
                },
            ],
        }
    ]
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-vvv", "-i", str(tmp_path / "inventory.yml"),
         str(tmp_path / "play.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "S3cret" not in proc.stdout + proc.stderr
    out = {
        n: json.loads(Path(f"{results}-{n}.json").read_text()) for n in ("good", "typed", "nets")
    }
    assert not out["good"].get("failed") and out["good"]["family"] == "exchange", out["good"]
    assert out["typed"]["failed"] and "validation of arguments failed" in out["typed"]["msg"]
    assert "relay_allow_removals" in out["typed"]["msg"], out["typed"]
    assert out["nets"]["failed"], out["nets"]
    assert "10.1.0.0/16 or so is not valid (CIDRs" in out["nets"]["msg"], out["nets"]
    assert all("S3cret" not in json.dumps(r) for r in out.values())
