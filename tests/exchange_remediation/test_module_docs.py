"""The four Exchange modules describe themselves without the relayguard package.

Each module's argument spec is static, composed of the collection's specs
(plugins/module_utils/winrm_options.py and exchange_options.py, standard library only, declared
once: the library has no copy) - one WinRM vocabulary whose choices are the library's;
`ansible-doc --json` documents exactly that spec (types, defaults, choices, elements,
aliases, suboptions); every secret is no_log; and without relayguard a module fails with
Ansible's missing_required_lib message, not a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support.collection_specs import (
    CONNECTION_SPEC,
    PATCH_POLICY_SPEC,
    PATCH_RECORD_SPEC,
    PATCH_SPEC,
    RELAY_SPEC,
    WINRM_SPEC,
)

from relayguard.exchange import connection, winrm_settings
from relayguard.exchange.patch_level import PatchPolicy

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COLLECTIONS = REPO / "collections"
MODULES = ("exchange_facts", "exchange_relay", "exchange_patch", "exchange_batch")
OLD_NAMES = {
    "winrm_auth": "winrm_transport",
    "transport": "winrm_transport",
    "winrm_validate_certs": "validate_certs",
    "winrm_ca_trust_path": "ca_path",
    "ca_trust_path": "ca_path",
    "host": "winrm_host",
    "port": "winrm_port",
    "username": "winrm_username",
    "password": "winrm_password",
    "connect_timeout": "winrm_connect_timeout",
    "operation_timeout": "winrm_operation_timeout",
    "command_timeout": "winrm_command_timeout",
}
# the least each module accepts; none of it reaches the network (the import fails first)
MINIMAL_ARGS: dict[str, dict[str, Any]] = {
    "exchange_facts": {"winrm_host": "127.0.9.1"},
    "exchange_relay": {"winrm_host": "127.0.9.1", "inbound_domains": ["example.net"]},
    "exchange_patch": {
        "winrm_host": "127.0.9.1",
        "package_path": "C:\\Patches\\fix.exe",
        "sha256": "0" * 64,
        "target_version": "15.2.1544.14",
    },
    "exchange_batch": {
        "action": "assess",
        "hosts": [{"name": "ex1", "relay": {"winrm_host": "127.0.9.1"}}],
    },
}
MISSING_LIB = "relayguard (the relayguard Python engine, see meta/ee-requirements.txt)"

# Runs a module file with relayguard unimportable; `capture` also replaces AnsibleModule to
# print the argument spec the module builds (and exit).
RUNNER = textwrap.dedent(
    """
    import importlib.abc, json, runpy, sys

    class NoRelayguard(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "relayguard" or name.startswith("relayguard."):
                raise ImportError("No module named " + repr(name))
            return None

    sys.meta_path.insert(0, NoRelayguard())
    for name in [n for n in sys.modules if n == "relayguard" or n.startswith("relayguard.")]:
        del sys.modules[name]
    module_path, mode = sys.argv[1], sys.argv[2]
    if mode == "capture":
        import ansible.module_utils.basic as basic

        class Capture:
            def __init__(self, argument_spec, **kwargs):
                print(json.dumps(argument_spec))
                raise SystemExit(0)

        basic.AnsibleModule = Capture
        sys.argv[1:] = []
    else:
        sys.argv[1:] = [sys.argv[3]]
    runpy.run_path(module_path, run_name="__main__")
    """
)


def run_module(
    module: str, mode: str, args_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    path = REPO / "plugins" / "modules" / f"{module}.py"
    extra = [] if args_file is None else [str(args_file)]
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(path), mode, *extra],
        env={**os.environ, "PYTHONPATH": str(COLLECTIONS)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def module_spec(module: str) -> dict[str, Any]:
    """The argument spec the module gives AnsibleModule, built without relayguard."""
    done = run_module(module, "capture")
    assert done.returncode == 0, done.stderr
    spec: dict[str, Any] = json.loads(done.stdout)
    return spec


def composed_spec(module: str) -> dict[str, Any]:
    """The module's spec as composed from the collection's specs (declared once there)."""
    relay = {**RELAY_SPEC, **CONNECTION_SPEC}
    return {
        "exchange_facts": {**WINRM_SPEC, **PATCH_POLICY_SPEC},
        "exchange_relay": relay,
        "exchange_patch": {**PATCH_SPEC, **CONNECTION_SPEC},
        "exchange_batch": {
            "action": {
                "type": "str",
                "choices": ["assess", "plan", "detect", "apply"],
                "required": True,
            },
            "hosts": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "relay": {"type": "dict", "required": True, "options": relay},
                    "patch": {"type": "dict", "options": PATCH_SPEC},
                    **PATCH_POLICY_SPEC,
                    **PATCH_RECORD_SPEC,
                },
            },
            "max_workers": {"type": "int", "default": 16},
        },
    }[module]


def described(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec as its documentation must read: the keys ansible-doc shows, suboptions nested."""
    out: dict[str, Any] = {}
    for name, option in spec.items():
        doc = {
            key: option[key]
            for key in ("type", "default", "choices", "elements", "aliases")
            if key in option
        }
        doc["required"] = bool(option.get("required"))
        if "options" in option:
            doc["suboptions"] = described(option["options"])
        out[name] = doc
    return out


def documented(options: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, doc in options.items():
        assert doc.get("description"), name
        entry = {
            key: doc[key]
            for key in ("type", "default", "choices", "elements", "aliases")
            if key in doc
        }
        if entry.get("default") is None:
            entry.pop("default", None)
        entry["required"] = bool(doc.get("required"))
        if "suboptions" in doc:
            entry["suboptions"] = documented(doc["suboptions"])
        out[name] = entry
    return out


def ansible_doc(module: str, tmp_path: Path) -> dict[str, Any]:
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    done = subprocess.run(
        [str(BIN / "ansible-doc"), "--json", f"relayguard.mail.{module}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "[WARNING]" not in done.stderr, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)[f"relayguard.mail.{module}"]
    return doc


def secrets(spec: dict[str, Any], path: str = "") -> dict[str, bool]:
    found: dict[str, bool] = {}
    for name, option in spec.items():
        if "password" in name:
            found[path + name] = bool(option.get("no_log"))
        found.update(secrets(option.get("options") or {}, f"{path}{name}."))
    return found


@pytest.mark.parametrize("module", MODULES)
def test_module_spec_is_composed_of_the_collection_specs(module: str) -> None:
    assert module_spec(module) == composed_spec(module)


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_documents_the_spec_exactly(module: str, tmp_path: Path) -> None:
    doc = ansible_doc(module, tmp_path)
    assert documented(doc["doc"]["options"]) == described(module_spec(module))
    assert doc["doc"]["author"] == ["relayguard developers (@relayguard)"]
    assert doc["examples"] and f"relayguard.mail.{module}:" in doc["examples"]
    assert doc["return"]
    assert "warnings" not in doc["return"]  # module.warn(), not a return value


@pytest.mark.parametrize("module", MODULES)
def test_every_password_is_no_log(module: str) -> None:
    found = secrets(module_spec(module))
    assert found and all(found.values()), found


def test_one_winrm_vocabulary_with_the_old_names_as_aliases() -> None:
    spec = WINRM_SPEC
    aliases = {alias: name for name, option in spec.items() for alias in option.get("aliases", [])}
    assert aliases == OLD_NAMES
    assert spec["winrm_scheme"]["choices"] == ["https", "http"]
    assert spec["winrm_transport"]["choices"] == [
        "ntlm",
        "kerberos",
        "credssp",
        "certificate",
        "basic",
    ]
    assert spec["validate_certs"] == {
        "type": "bool",
        "default": True,
        "aliases": ["winrm_validate_certs"],
    }
    assert spec["ca_path"]["type"] == "path"


def test_the_choices_are_the_values_the_library_accepts() -> None:
    """The library checks the values itself (it also runs without Ansible)."""
    assert WINRM_SPEC["winrm_scheme"]["choices"] == list(connection.SCHEMES)
    assert WINRM_SPEC["winrm_transport"]["choices"] == list(winrm_settings.TRANSPORTS)


@pytest.mark.parametrize("module", MODULES)
def test_without_relayguard_the_module_says_what_is_missing(module: str, tmp_path: Path) -> None:
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": MINIMAL_ARGS[module]}))
    done = run_module(module, "run", args)
    assert "Traceback" not in done.stderr, done.stderr
    result = json.loads(done.stdout)
    assert result["failed"] is True
    assert result["msg"].startswith(f"Failed to import the required Python library ({MISSING_LIB})")


def test_patch_policy_choices_are_the_library_policies() -> None:
    assert PATCH_POLICY_SPEC["patch_policy"]["choices"] == [p.value for p in PatchPolicy]
    assert PATCH_POLICY_SPEC["patch_policy"]["default"] == PatchPolicy.LATEST.value
