"""The lab directory (`.lab/`): where each file lives, and the manifest that describes a fleet.

.lab/lab.json            manifest: hosts, addresses, ports (no secrets)
.lab/secrets.json        0600: WinRM credentials and 5.5 SMTP AUTH passwords, per host
.lab/daemon.pid          the lab daemon's pid while it serves
.lab/daemon.log          its log
.lab/inventory.yml       Ansible inventory (no secrets); host_vars/<host>.yml (0600) hold them
.lab/ca/ca.pem           the lab CA (clients validate WinRM certificates against it)
.lab/state/<host>.json   each Exchange twin's state document
.lab/twins/<host>/       each twin's WinRM certificate, credential store, scratch files
.lab/mail/<host>.jsonl   what each twin did with the messages it accepted
.lab/packages/           lab patch packages (`packages`)
.lab/postfix/<host>/     each real Postfix instance
.lab/exim/<host>/        each real Exim instance (exim.conf, spool, log)
.lab/sendmail/<host>/    each real Sendmail instance (sendmail.mc/.cf, maps, spool)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from relayguard.vocabulary import Family, family_of

MANIFEST_SCHEMA = "relayguard.lab/1"


@dataclass(frozen=True)
class LabDir:
    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "lab.json"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.json"

    @property
    def pid_file(self) -> Path:
        return self.root / "daemon.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "daemon.log"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory.yml"

    @property
    def host_vars(self) -> Path:
        return self.root / "host_vars"

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def ca_cert(self) -> Path:
        return self.ca_dir / "ca.pem"

    @property
    def packages(self) -> Path:
        return self.root / "packages"

    def state_file(self, host: str) -> Path:
        return self.root / "state" / f"{host}.json"

    def twin_dir(self, host: str) -> Path:
        return self.root / "twins" / host

    def mail_log(self, host: str) -> Path:
        return self.root / "mail" / f"{host}.jsonl"

    def postfix_root(self, host: str) -> Path:
        return self.root / "postfix" / host

    def server_root(self, platform: str, host: str) -> Path:
        """Where a real server (postfix, exim, sendmail) of the fleet lives."""
        return self.root / platform / host


@dataclass(frozen=True)
class HostEntry:
    name: str
    platform: str
    profile: str
    group: str
    server: str
    address: str
    expected: str

    @property
    def family(self) -> Family:
        return family_of(self.platform)

    @property
    def serves_smb(self) -> bool:
        """Exchange 5.5 twins: NT 4.0 / 2000 hosts are managed over SMB (no WinRM there)."""
        return self.platform == "exchange55"

    @property
    def is_postfix(self) -> bool:
        return self.family is Family.POSTFIX

    @property
    def is_real_server(self) -> bool:
        """A real MTA on port 25 (Postfix, Exim, Sendmail), not an Exchange twin."""
        return self.family is not Family.EXCHANGE


@dataclass(frozen=True)
class Manifest:
    fleet: str
    smtp_port: int
    winrm_port: int
    hosts: list[HostEntry]
    left_out: list[str]
    packages: list[dict[str, str]]
    schema: str = MANIFEST_SCHEMA
    # The SMB endpoint of each Exchange 5.5 twin (445 as root, as on Windows); 0: none
    smb_port: int = 0


def write_private_json(path: Path, document: Any, mode: int = 0o600) -> None:
    """Write JSON atomically with `mode` from the start (secrets never exist wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_manifest(lab: LabDir, manifest: Manifest) -> None:
    write_private_json(lab.manifest, asdict(manifest), mode=0o644)


def read_manifest(lab: LabDir) -> Manifest:
    data = json.loads(lab.manifest.read_text(encoding="utf-8"))
    if data.get("schema") != MANIFEST_SCHEMA:
        raise ValueError(f"{lab.manifest} is not a {MANIFEST_SCHEMA} manifest")
    hosts = [HostEntry(**h) for h in data.pop("hosts")]
    return Manifest(hosts=hosts, **data)


def read_secrets(lab: LabDir) -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads(lab.secrets.read_text(encoding="utf-8"))
    return data


def write_pid(lab: LabDir, pid: int) -> None:
    write_private_json(lab.pid_file, pid, mode=0o644)


def read_pid(lab: LabDir) -> int | None:
    try:
        value = json.loads(lab.pid_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def remove_pid(lab: LabDir, pid: int) -> None:
    if read_pid(lab) == pid:
        lab.pid_file.unlink(missing_ok=True)


def daemon_alive(pid: int) -> bool:
    """True if `pid` is a live lab daemon (not a recycled pid of another program)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    if "State:\tZ" in status:
        return False
    return b"relayguard.lab.fleet.daemon" in cmdline
