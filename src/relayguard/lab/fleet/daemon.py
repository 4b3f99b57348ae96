"""The lab daemon: one background process serving every Exchange twin of a lab directory.

`python -m relayguard.lab.fleet.daemon --dir .lab` reads the lab manifest (`lab.json`) and secrets
(`secrets.json`), then serves, per twin, the SMTP listener (asyncio, `smtp_twin`), the
WinRM endpoint (threads, `wsman.server`) and, for Exchange 5.5 twins, the SMB endpoint
(threads, `smb.server`) over the twin's state document. The state lives on
disk, so stopping and starting the daemon keeps every twin as it was. It writes its pid file
once everything listens and removes it when it stops (SIGTERM / SIGINT).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from relayguard.lab.ca import ServerCertificate
from relayguard.lab.exchange.oplib import TwinContext
from relayguard.lab.exchange.ops import registry
from relayguard.lab.exchange.smtp_twin import TwinListener, run_listeners
from relayguard.lab.exchange.store import StateStore
from relayguard.lab.fleet import layout
from relayguard.lab.smb.server import SmbTwin
from relayguard.lab.wsman.auth import WinRMAccount
from relayguard.lab.wsman.dispatch import PayloadDispatcher
from relayguard.lab.wsman.server import EndpointConfig, EndpointError, WinRMEndpoint

log = logging.getLogger("relayguard.lab.fleet.daemon")


def build_endpoint(
    lab: layout.LabDir,
    host: layout.HostEntry,
    manifest: layout.Manifest,
    secrets: dict[str, dict[str, str]],
) -> WinRMEndpoint:
    store = StateStore(lab.state_file(host.name))
    context = TwinContext(store=store, packages_dir=lab.packages, smb_port=manifest.smb_port or 445)
    secret = secrets[host.name]
    twin_dir = lab.twin_dir(host.name)
    config = EndpointConfig(
        name=host.name,
        address=host.address,
        accounts=(WinRMAccount(username=secret["username"], password=secret["password"]),),
        twin_dir=twin_dir,
        handler=PayloadDispatcher(registry(), context),
        certificate=ServerCertificate(
            cert_path=twin_dir / "winrm.pem", key_path=twin_dir / "winrm.key", ca_path=lab.ca_cert
        ),
        port=manifest.winrm_port,
        hostname=host.server,
    )
    endpoint = WinRMEndpoint(config)
    context.scratch = endpoint.scratch  # file.* ops and the patch installer share one disk
    return endpoint


def build_smb(
    lab: layout.LabDir,
    host: layout.HostEntry,
    manifest: layout.Manifest,
    secrets: dict[str, dict[str, str]],
) -> SmbTwin:
    """The 5.5 twin's SMB endpoint (winreg, svcctl, C$) over the same state document."""
    secret = secrets[host.name]
    return SmbTwin(
        StateStore(lab.state_file(host.name)),
        host.address,
        manifest.smb_port,
        secret["username"],
        secret["password"],
        lab.twin_dir(host.name) / "smb",
    )


async def serve(lab: layout.LabDir) -> int:
    manifest = layout.read_manifest(lab)
    secrets = layout.read_secrets(lab)
    twins = [h for h in manifest.hosts if not h.is_real_server]
    listeners = [
        TwinListener(
            StateStore(lab.state_file(h.name)), h.address, manifest.smtp_port, lab.mail_log(h.name)
        )
        for h in twins
    ]
    endpoints: list[WinRMEndpoint | SmbTwin] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for host in twins:
            endpoint = build_endpoint(lab, host, manifest, secrets)
            endpoint.start()
            endpoints.append(endpoint)
            if host.serves_smb and manifest.smb_port:
                smb = build_smb(lab, host, manifest, secrets)
                smb.start()
                endpoints.append(smb)
        for listener in listeners:
            await listener.sync()
        layout.write_pid(lab, os.getpid())
        log.info("serving %d twins", len(twins))
        await run_listeners(listeners, stop)
        return 0
    except (EndpointError, OSError) as exc:
        log.error("cannot serve the lab: %s", exc)
        return 1
    finally:
        for listener in listeners:
            await listener.stop()
        for running in endpoints:
            with contextlib.suppress(Exception):
                running.stop()
        layout.remove_pid(lab, os.getpid())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relayguard.lab.fleet.daemon")
    parser.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command log
    return asyncio.run(serve(layout.LabDir(args.dir.absolute())))


if __name__ == "__main__":
    sys.exit(main())
