"""sendmail_relay on the Sendmail host: its DOCUMENTATION matches the declared option spec, and
the target-side files compile and plan on every Python its targets ship (3.7 to 3.13;
ansible-core 2.17 and later, meta/runtime.yml). pyenv interpreters are used where installed (CI
has them, so in CI a missing one fails instead of skipping)."""

from __future__ import annotations

import ast
import glob
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from relayguard.lab import module_utils

if TYPE_CHECKING:
    import sendmail_options
else:
    module_utils.load("relay_options")
    sendmail_options = module_utils.load("sendmail_options")

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "plugins" / "modules" / "sendmail_relay.py"
UTILS = ROOT / "plugins" / "module_utils"
NAMES = (
    "relay_backend",
    "relay_options",
    "sendmail_options",
    "sendmail_facts",
    "sendmail_plan",
    "sendmail_apply",
)
VERSIONS = ["3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PLAN = """
import sys
sys.path.insert(0, sys.argv[1])
import sendmail_apply, sendmail_facts, sendmail_plan
mc = ("include(`cf.m4')dnl\\nFEATURE(`access_db')dnl\\n"
      "FEATURE(`promiscuous_relay')dnl\\nMAILER(`smtp')dnl\\n")
facts = sendmail_facts.parse_facts("/etc/mail/sendmail.mc", mc, "FR-o /etc/mail/relay-domains\\n",
                                   "Connect:10\\tRELAY\\n", "")
desired = sendmail_apply.desired_state({"mc_path": "/etc/mail/sendmail.mc",
    "relay_allowed_networks": ["127.0.0.0/8"], "relay_partner_domains": ["partner.example"]})
made = sendmail_plan.plan(facts, desired)
files = sendmail_plan.rendered(facts, made)
assert "promiscuous" not in files["/etc/mail/sendmail.mc"], files
assert files["/etc/mail/relay-domains"] == "partner.example\\n", files
print("removes", " ".join(made.removals()))
"""


def _documentation() -> dict[str, Any]:
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DOCUMENTATION":
            doc: dict[str, Any] = yaml.safe_load(ast.literal_eval(node.value))
            return doc
    raise AssertionError("sendmail_relay.py has no DOCUMENTATION")


def test_documented_options_are_the_declared_spec() -> None:
    documented = _documentation()["options"]
    spec = sendmail_options.SENDMAIL_RELAY_SPEC

    assert set(documented) == set(spec)
    for name, option in spec.items():
        doc = documented[name]
        assert doc["type"] == option["type"], name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("elements") == option.get("elements"), name


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
            pytest.fail(f"Python {version}: no interpreter and no pyenv on this CI machine")
        pytest.skip(f"Python {version} is not installed (pyenv install {version})")
    for path in (MODULE, *(UTILS / f"{name}.py" for name in NAMES)):
        done = subprocess.run(
            [python, "-m", "py_compile", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{path.name} on {version}: {done.stderr}"
    done = subprocess.run(
        [python, "-c", PLAN, str(UTILS)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "access Connect:10: Connect:10" in done.stdout


def _ansible(*args: str) -> subprocess.CompletedProcess[str]:
    ansible = str(Path(sys.executable).parent / "ansible")
    argv = [ansible, "localhost", "-m", "relayguard.mail.sendmail_relay", *args]
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_module_check_mode_shows_the_diff_and_changes_nothing(tmp_path: Path) -> None:
    stock = (Path(__file__).parent / "fixtures" / "debian-sendmail.mc").read_text("utf-8")
    opened = stock.replace(
        "FEATURE(`use_cw_file')", "FEATURE(`promiscuous_relay')dnl\nFEATURE(`use_cw_file')"
    )
    mc = tmp_path / "sendmail.mc"
    mc.write_text(opened, encoding="utf-8")

    done = _ansible("-a", f"mc_path={mc}", "--check", "--diff")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "CHANGED" in done.stdout and "-FEATURE(`promiscuous_relay')dnl" in done.stdout
    assert mc.read_text(encoding="utf-8") == opened
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sendmail.mc"]


def test_module_bad_input_fails_naming_it(tmp_path: Path) -> None:
    mc = tmp_path / "sendmail.mc"
    mc.write_text("FEATURE(`promiscuous_relay')dnl\n", encoding="utf-8")

    done = _ansible("-a", f"mc_path={mc} relay_allowed_networks=10.0.0.0/12")

    assert done.returncode != 0
    assert "10.0.0.0/12" in done.stdout and "whole octets" in done.stdout, done.stdout
    assert mc.read_text(encoding="utf-8") == "FEATURE(`promiscuous_relay')dnl\n"


def test_check_mode_names_a_removal_enforce_would_refuse(tmp_path: Path) -> None:
    for name in ("relay_backend", "sendmail_facts", "sendmail_plan"):
        module_utils.load(name)
    sendmail_apply = module_utils.load("sendmail_apply")
    access = tmp_path / "access"
    access.write_text("Connect:127\tRELAY\nConnect:10\tRELAY\n", encoding="utf-8")
    mc = tmp_path / "sendmail.mc"
    mc.write_text(f"FEATURE(`access_db', `hash {access}')dnl\nMAILER(`smtp')dnl\n", "utf-8")
    params = {"mc_path": str(mc), "relay_allowed_networks": ["127.0.0.0/8"]}

    result = sendmail_apply.run(params, True, True)

    assert result["removals"] == ["access Connect:10: Connect:10"]
    assert any("would be refused" in w and "Connect:10" in w for w in result["warnings"])
    assert result["diff"][0]["after"] == "Connect:127\tRELAY\n"
    assert access.read_text(encoding="utf-8") == "Connect:127\tRELAY\nConnect:10\tRELAY\n"
    with pytest.raises(sendmail_apply.SendmailFactsError, match="relay_allow_removals"):
        sendmail_apply.run(params, False, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["access", "sendmail.mc"]
