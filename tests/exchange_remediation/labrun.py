"""Test support for Exchange remediation: a lab of Exchange twins in a temporary directory,
ansible-playbook runs against its inventory, and readings of the twins' state documents.

Loopback allocation (notes/common.md, lab fleet range): these tests own 127.0.54.0-127.0.56.255
for their twins; probe sources are the lab's trusted 127.0.59.x and untrusted 127.0.60.200.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postfix_remediation.ansible_run import ansible_environment
from support.collection_specs import CONNECTION_SPEC, RELAY_SPEC

from relayguard.cli import main
from relayguard.exchange.transport import Secret, WinRMClient, WinRMOptions
from relayguard.lab.exchange.state import TwinState, to_jsonable
from relayguard.lab.exchange.store import StateStore

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
TRUSTED_SOURCE = "127.0.59.10"
UNTRUSTED_SOURCE = "127.0.60.200"
ALLOWED_NETWORKS = ["127.0.59.0/24"]
INBOUND = "corp.example"


def lab_command(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["lab", *args])
    return code, out.getvalue(), err.getvalue()


@dataclass
class Lab:
    directory: Path
    work: Path
    manifest: dict[str, Any]

    @property
    def hosts(self) -> list[dict[str, Any]]:
        return list(self.manifest["hosts"])

    def host(self, name: str) -> dict[str, Any]:
        return next(h for h in self.hosts if h["name"] == name)

    def store(self, name: str) -> StateStore:
        return StateStore(self.directory / "state" / f"{name}.json")

    def state(self, name: str) -> TwinState:
        return self.store(name).current()

    def options(self, name: str, **tuning: Any) -> WinRMOptions:
        """WinRM options for twin `name` (its account, the lab CA) with `tuning` on top."""
        host = self.host(name)
        return WinRMOptions(
            host=host["address"],
            username=host["username"],
            password=Secret(host["password"]),
            ca_trust_path=self.manifest["ca"],
            **tuning,
        )

    def client(self, name: str) -> WinRMClient:
        return WinRMClient(self.options(name, command_timeout=120.0))

    def package(self, file_name: str) -> dict[str, str]:
        return next(p for p in self.manifest["packages"] if p["file"].endswith("/" + file_name))


def lab_up(directory: Path, spec: str, first_address: str) -> dict[str, Any]:
    """`relayguard lab up` for the remediation tests (restarts take 0.3 s); its JSON."""
    code, out, err = lab_command(
        "up",
        "--json",
        "--dir",
        str(directory),
        "--hosts",
        spec,
        "--first-address",
        first_address,
        "--restart-seconds",
        "0.3",
    )
    assert code == 0, err
    manifest: dict[str, Any] = json.loads(out)
    return manifest


@contextlib.contextmanager
def running_lab(spec: str, first_address: str) -> Iterator[Lab]:
    parent = Path(tempfile.mkdtemp(prefix="relayguard-exchange-remediation-"))
    directory = parent / "lab"
    try:
        yield Lab(directory, parent, lab_up(directory, spec, first_address))
    finally:
        lab_command("down", "--dir", str(directory))
        shutil.rmtree(parent, ignore_errors=True)


def relay_config(state: TwinState) -> str:
    """The relay configuration part of a twin's state document, as JSON text."""
    if state.exchange55 is not None:
        doc: Any = {
            "Parameters": to_jsonable(state.exchange55.Parameters),
            "Routing": to_jsonable(state.exchange55.Routing),
        }
    else:
        assert state.modern is not None
        doc = {
            "ReceiveConnectors": to_jsonable(state.modern.ReceiveConnectors),
            "AcceptedDomains": to_jsonable(state.modern.AcceptedDomains),
            "RecipientFilter": to_jsonable(state.modern.RecipientFilter),
        }
    return json.dumps(doc, indent=1)


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    output: str
    results: dict[str, dict[str, Any]]  # host -> its task result (tree callback)

    def changed(self) -> dict[str, bool]:
        return {host: bool(r.get("changed")) for host, r in self.results.items()}


def run_playbook(lab: Lab, playbook: str, extra: dict[str, Any], *args: str) -> PlaybookRun:
    tree = lab.work / f"tree-{len(list(lab.work.glob('tree-*')))}"
    extra_file = tree.with_suffix(".vars.json")
    extra_file.write_text(json.dumps(extra))
    env = ansible_environment(lab.work)
    env["ANSIBLE_CALLBACK_TREE_DIR"] = str(tree)
    done = subprocess.run(
        [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            str(lab.directory / "inventory.yml"),
            str(PLAYBOOKS / playbook),
            "-e",
            f"@{extra_file}",
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    results: dict[str, dict[str, Any]] = {}
    if tree.is_dir():
        for path in tree.iterdir():
            results[path.name] = json.loads(path.read_text())
    return PlaybookRun(done.returncode, done.stdout + done.stderr, results)


def batch_relay_options(ca: str, host: dict[str, Any], backups: Path) -> dict[str, Any]:
    """exchange_batch's relay options for a lab `host`: its WinRM endpoint and credentials,
    close to the allowed networks, its connector (none on Exchange 5.5), a backup per host."""
    defaults = {
        name: option.get("default") for name, option in {**RELAY_SPEC, **CONNECTION_SPEC}.items()
    }
    return defaults | {
        "winrm_host": host["address"],
        "winrm_username": host["username"],
        "winrm_password": host["password"],
        "ca_path": ca,
        "winrm_command_timeout": 120.0,
        "smtp_port": int(host["smtp"].rsplit(":", 1)[1]),
        "relay_allowed_networks": ALLOWED_NETWORKS,
        "relay_authenticated": True,
        "inbound_domains": [INBOUND],
        "relay_connector_name": None
        if host["platform"] == "exchange55"
        else f"Relay {host['server']}",
        "host_name": host["name"],
        "backup_file": str(backups / f"{host['name']}.json"),
    }
