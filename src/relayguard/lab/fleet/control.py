"""`relayguard lab up / down / status`: bring a fleet up in the background, and take it down.

`up` writes the lab directory (states, CA and certificates, packages, manifest, secrets,
inventory), starts the real Postfix, Exim and Sendmail instances (root only), spawns the lab
daemon for the Exchange twins and returns once every listener answers. `down` stops the
daemon and the real servers by pid, waits until no lab address listens any more and removes
what `up` wrote (the CA stays, so clients that trust it keep working). Both are idempotent.
"""

from __future__ import annotations

import contextlib
import os
import secrets as random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relayguard.lab.ca import CAError, LabCA
from relayguard.lab.exchange import profiles
from relayguard.lab.exchange.packages import write_packages
from relayguard.lab.exchange.state import LabKnobs, TwinState
from relayguard.lab.exchange.store import StateStore
from relayguard.lab.fleet import layout, planning, servers
from relayguard.lab.fleet.inventory import write_inventory
from relayguard.lab.fleet.layout import HostEntry, LabDir, Manifest
from relayguard.lab.fleet.planning import FIRST_ADDRESS
from relayguard.vocabulary import Platform

WINRM_PORT = 5986
SMTP_PORT_ROOT = 25
SMTP_PORT_USER = 2525
SMB_PORT_ROOT = 445
SMB_PORT_USER = 10445
USERNAME = "relayguard"
STOP_TIMEOUT = 30.0
DAEMON_MODULE = "relayguard.lab.fleet.daemon"  # python -m DAEMON_MODULE: the twins' process


class LabError(Exception):
    """A lab operation failed; the message is one line, without secrets."""


@dataclass(frozen=True)
class UpOptions:
    fleet: str = "default"
    hosts: str | None = None
    first_address: str = FIRST_ADDRESS
    tarpit_seconds: float = 0.0
    restart_seconds: float = 1.0
    timeout: float = 120.0


def is_root() -> bool:
    return os.geteuid() == 0


# ------------------------------------------------------------------ up


def up(lab: LabDir, options: UpOptions) -> dict[str, Any]:
    """Bring the lab up (or report the one already up); the JSON document of `lab up`."""
    if lab.manifest.exists():
        pid = layout.read_pid(lab)
        if pid is not None and layout.daemon_alive(pid):
            return summary(lab, already_up=True)
        return resume(lab, options.timeout)
    try:
        plans = (
            planning.plan_spec(options.hosts, options.first_address)
            if options.hosts
            else planning.plan_named(options.fleet, options.first_address)
        )
    except planning.FleetError as exc:
        raise LabError(str(exc)) from None
    left_out = []
    if not is_root():
        left_out = [p.name for p in plans if servers.is_real(p.platform)]
        plans = [p for p in plans if not servers.is_real(p.platform)]
    smtp_port = SMTP_PORT_ROOT if is_root() else SMTP_PORT_USER
    _check_free(plans, smtp_port)
    lab.root.mkdir(parents=True, exist_ok=True)
    # Postfix's daemons must be able to search it (docs/sources.md#postfix-multi-instance)
    lab.root.chmod(0o755)
    try:
        ca = LabCA.ensure(lab.ca_dir)
    except CAError as exc:
        raise LabError(str(exc)) from None
    package_list = write_packages(lab.packages)
    secrets: dict[str, dict[str, str]] = {}
    manifest = Manifest(
        fleet=f"hosts:{options.hosts}" if options.hosts else options.fleet,
        smtp_port=smtp_port,
        winrm_port=WINRM_PORT,
        hosts=[_entry(p) for p in plans],
        left_out=left_out,
        packages=package_list,
        smb_port=smb_port(),
    )
    layout.write_manifest(lab, manifest)  # first, so `down` can clean up a failed `up`
    try:
        for plan in plans:
            if servers.is_real(plan.platform):
                continue
            secret = {"username": USERNAME, "password": random.token_urlsafe(18)}
            if plan.platform == Platform.EXCHANGE55:
                secret["smtp_password"] = random.token_urlsafe(12)
            secrets[plan.name] = secret
            _write_twin(lab, plan, options, secret.get("smtp_password", ""))
            ca.issue_server_certificate(
                lab.twin_dir(plan.name), plan.server, [plan.address], file_stem="winrm"
            )
        layout.write_private_json(lab.secrets, secrets)
        write_inventory(lab, manifest, secrets)
        _start_real(lab, [p for p in plans if servers.is_real(p.platform)])
        _start_daemon(lab, manifest, options.timeout)
    except BaseException:
        with contextlib.suppress(Exception):
            down(lab)
        raise
    return summary(lab, already_up=False)


def resume(lab: LabDir, timeout: float) -> dict[str, Any]:
    """Restart what is down of an existing lab (daemon crashed, machine rebooted); the twins'
    state documents are kept as they were, so every twin comes back in its last state."""
    manifest = layout.read_manifest(lab)
    if not lab.secrets.exists():
        down(lab)
        raise LabError(f"{lab.root} held a half-written lab; it was cleaned, run `lab up` again")
    _stop_stray_daemons(lab)
    if is_root():
        for host in (h for h in manifest.hosts if h.is_real_server):
            root = lab.server_root(host.platform, host.name)
            try:
                servers.ensure_running(host.platform, root, host.address, host.profile)
            except servers.ServerError as exc:
                raise LabError(f"host {host.name}: {exc}") from None
    _start_daemon(lab, manifest, timeout)
    doc = summary(lab, already_up=False)
    doc["resumed"] = True
    return doc


def _entry(plan: planning.HostPlan) -> HostEntry:
    return HostEntry(
        name=plan.name,
        platform=plan.platform.value,
        profile=plan.profile,
        group=plan.group,
        server=plan.server,
        address=plan.address,
        expected=plan.expected.value,
    )


def _write_twin(lab: LabDir, plan: planning.HostPlan, options: UpOptions, smtp_pw: str) -> None:
    knobs = LabKnobs(tarpit_seconds=options.tarpit_seconds, restart_seconds=options.restart_seconds)
    spec = profiles.TwinSpec(
        name=plan.name,
        server=plan.server,
        address=plan.address,
        smtp_password=smtp_pw,
        knobs=knobs,
    )
    state: TwinState = profiles.build(plan.profile, spec, plan.platform)
    StateStore(lab.state_file(plan.name)).save(state)
    lab.mail_log(plan.name).parent.mkdir(parents=True, exist_ok=True)


def smb_port() -> int:
    return SMB_PORT_ROOT if is_root() else SMB_PORT_USER


def _check_free(plans: list[planning.HostPlan], smtp_port: int) -> None:
    """Refuse to start over something else that already listens on a lab address."""
    for plan in plans:
        ports = [25] if servers.is_real(plan.platform) else [smtp_port, WINRM_PORT]
        if plan.platform == Platform.EXCHANGE55:
            ports.append(smb_port())
        for port in ports:
            if _answers(plan.address, port, timeout=0.5):
                raise LabError(
                    f"{plan.address}:{port} already answers (another lab or a test?): "
                    "run `relayguard lab down` or choose --first-address"
                )


def _answers(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _start_real(lab: LabDir, plans: list[planning.HostPlan]) -> None:
    """Start the fleet's real servers: Postfix, Exim and Sendmail instances (root only)."""
    for plan in plans:
        root = lab.server_root(plan.platform.value, plan.name)
        root.parent.mkdir(mode=0o755, exist_ok=True)
        try:
            servers.ensure_running(plan.platform, root, plan.address, plan.profile)
        except servers.ServerError as exc:
            raise LabError(f"host {plan.name}: {exc}") from None


def _start_daemon(lab: LabDir, manifest: Manifest, timeout: float) -> None:
    twins = [h for h in manifest.hosts if not h.is_real_server]
    if not twins:
        return
    with lab.log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", DAEMON_MODULE, "--dir", str(lab.root.absolute())],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # survives the shell that ran `lab up`
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + timeout + 0.2 * len(twins)
    pending = [(h.address, p) for h in twins for p in (manifest.smtp_port, manifest.winrm_port)]
    pending += [(h.address, manifest.smb_port) for h in twins if h.serves_smb and manifest.smb_port]
    while pending:
        if process.poll() is not None:
            raise LabError(f"the lab daemon exited ({process.returncode}): {_log_tail(lab)}")
        if time.monotonic() > deadline:
            process.terminate()
            raise LabError(f"the lab did not answer within {timeout:g}s: {_log_tail(lab)}")
        pending = [(a, p) for a, p in pending if not _answers(a, p, timeout=1.0)]
        if pending:
            time.sleep(0.1)
    while layout.read_pid(lab) != process.pid and process.poll() is None:
        time.sleep(0.05)


def _log_tail(lab: LabDir) -> str:
    try:
        lines = lab.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "no log"
    errors = [line for line in lines if "ERROR" in line or "Error" in line]
    return (errors or lines or ["no log"])[-1]


# ------------------------------------------------------------------ down


def down(lab: LabDir) -> dict[str, Any]:
    """Stop everything the lab started and remove what `up` wrote. Idempotent."""
    if not lab.manifest.exists():
        return {"down": True, "was_up": False}
    manifest = layout.read_manifest(lab)
    pid = layout.read_pid(lab)
    if pid is not None and layout.daemon_alive(pid):
        _stop_pid(pid)
    _stop_stray_daemons(lab)
    for host in (h for h in manifest.hosts if h.is_real_server):
        try:
            servers.discard(host.platform, lab.server_root(host.platform, host.name))
        except servers.ServerError as exc:
            raise LabError(f"host {host.name}: {exc}") from None
    _wait_closed(manifest)
    for path in (
        lab.state_file("x").parent,
        lab.root / "twins",
        lab.root / "mail",
        lab.host_vars,
        lab.packages,
        *(lab.root / platform.value for platform in servers.REAL_PLATFORMS),
    ):
        shutil.rmtree(path, ignore_errors=True)
    for path in (lab.inventory, lab.secrets, lab.pid_file, lab.manifest):
        path.unlink(missing_ok=True)
    return {"down": True, "was_up": True}


def _stop_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while layout.daemon_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if layout.daemon_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def _stop_stray_daemons(lab: LabDir) -> None:
    """A daemon of this lab directory whose pid file is gone (killed mid-start)."""
    wanted = str(lab.root.absolute()).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if DAEMON_MODULE.encode() in cmdline and wanted in cmdline:
            _stop_pid(int(entry.name))


def _wait_closed(manifest: Manifest) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT
    for host in manifest.hosts:
        ports = [25] if host.is_real_server else [manifest.smtp_port, manifest.winrm_port]
        if host.serves_smb and manifest.smb_port:
            ports.append(manifest.smb_port)
        for port in ports:
            while _answers(host.address, port, timeout=0.5):
                if time.monotonic() > deadline:
                    raise LabError(f"{host.address}:{port} still answers after `lab down`")
                time.sleep(0.1)


# ------------------------------------------------------------------ status and summary


def summary(lab: LabDir, *, already_up: bool) -> dict[str, Any]:
    """The JSON document of `lab up` (connection details and credentials)."""
    manifest = layout.read_manifest(lab)
    secrets = layout.read_secrets(lab) if lab.secrets.exists() else {}
    hosts = []
    for host in manifest.hosts:
        item: dict[str, Any] = {
            "name": host.name,
            "platform": host.platform,
            "group": host.group,
            "profile": host.profile,
            "expected": host.expected,
            "address": host.address,
        }
        if host.is_real_server:
            item["smtp"] = f"{host.address}:25"
            item.update(servers_config(lab, host))
        else:
            secret = secrets.get(host.name, {})
            item["smtp"] = f"{host.address}:{manifest.smtp_port}"
            item["winrm"] = f"https://{host.address}:{manifest.winrm_port}/wsman"
            if host.serves_smb and manifest.smb_port:
                item["smb"] = f"{host.address}:{manifest.smb_port}"
            item["server"] = host.server
            item["username"] = secret.get("username")
            item["password"] = secret.get("password")
            if "smtp_password" in secret:
                item["smtp_auth"] = {"username": "relayuser", "password": secret["smtp_password"]}
        hosts.append(item)
    return {
        "inventory": str(lab.inventory),
        "ca": str(lab.ca_cert),
        "fleet": manifest.fleet,
        "already_up": already_up,
        "left_out": manifest.left_out,
        "trusted_client": planning.TRUSTED_CLIENT,
        "untrusted_client": planning.UNTRUSTED_CLIENT,
        "packages": manifest.packages,
        "hosts": hosts,
    }


def servers_config(lab: LabDir, host: HostEntry) -> dict[str, str]:
    """Where a real server's configuration is: Postfix's config_dir, Exim's exim.conf,
    Sendmail's sendmail.mc (its sendmail.cf beside it)."""
    root = lab.server_root(host.platform, host.name).absolute()
    if host.platform == Platform.POSTFIX:
        from relayguard.lab.postfix.config import InstanceLayout

        return {"config_dir": str(InstanceLayout(root).config_dir)}
    if host.platform == Platform.EXIM:
        return {"config_file": str(root / "exim.conf")}
    return {"config_file": str(root / "sendmail.mc")}


def status(lab: LabDir) -> dict[str, Any]:
    """Whether the lab is up and each listener answers; no secrets."""
    if not lab.manifest.exists():
        return {"up": False, "hosts": []}
    manifest = layout.read_manifest(lab)
    pid = layout.read_pid(lab)
    alive = pid is not None and layout.daemon_alive(pid)
    hosts = []
    for host in manifest.hosts:
        smtp_port = 25 if host.is_real_server else manifest.smtp_port
        item: dict[str, Any] = {
            "name": host.name,
            "platform": host.platform,
            "group": host.group,
            "smtp": f"{host.address}:{smtp_port}",
            "smtp_answers": _answers(host.address, smtp_port, timeout=1.0),
        }
        if not host.is_real_server:
            item["winrm_answers"] = _answers(host.address, manifest.winrm_port, timeout=1.0)
            store = StateStore(lab.state_file(host.name))
            with contextlib.suppress(OSError, ValueError):
                state = store.load()
                x = state.exchange55 or state.modern
                if x is not None:
                    item["service"] = x.Service.Status
                    item["reboot_required"] = x.RebootRequired
                if state.exchange55 is not None:
                    item["pending_restart"] = state.exchange55.pending_restart
        hosts.append(item)
    return {
        "up": True,
        "daemon_pid": pid if alive else None,
        "daemon_running": alive,
        "fleet": manifest.fleet,
        "inventory": str(lab.inventory),
        "hosts": hosts,
    }
