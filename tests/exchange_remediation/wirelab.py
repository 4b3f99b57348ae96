"""A lab of Exchange twins served in this process, so a test can reach each twin's WinRM
endpoint and inject faults on the wire (`endpoint.faults`: drop a request, drop a reply, hang,
fail a command) besides the op-level faults of the state document (`LabKnobs.faults`).

`relayguard lab up` writes the lab directory as always (states, CA, certificates, packages,
secrets); only the step that spawns the lab daemon is replaced by serving the same twins —
`daemon.build_endpoint` and `smtp_twin.TwinListener`, as the daemon does — from threads here.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from exchange_remediation.labrun import Lab, lab_command, lab_up
from relayguard.exchange.transport import WinRMClient
from relayguard.lab.exchange.smtp_twin import TwinListener, run_listeners
from relayguard.lab.exchange.store import StateStore
from relayguard.lab.fleet import control, layout
from relayguard.lab.fleet.daemon import build_endpoint
from relayguard.lab.wsman.server import WinRMEndpoint


class InProcessTwins:
    """Every twin of a lab directory: WinRM endpoints and SMTP listeners, in this process."""

    def __init__(self) -> None:
        self.endpoints: dict[str, WinRMEndpoint] = {}
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self, lab: layout.LabDir, manifest: layout.Manifest, timeout: float) -> None:
        """Stands in for `control._start_daemon`: returns once every listener answers."""
        secrets = layout.read_secrets(lab)
        twins = [h for h in manifest.hosts if h.group != "postfix"]
        for host in twins:
            endpoint = build_endpoint(lab, host, manifest, secrets)
            endpoint.start()
            self.endpoints[host.name] = endpoint
        listeners = [
            TwinListener(
                StateStore(lab.state_file(h.name)),
                h.address,
                manifest.smtp_port,
                lab.mail_log(h.name),
            )
            for h in twins
        ]
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._stop = asyncio.Event()

            async def main() -> None:
                for listener in listeners:
                    await listener.sync()
                ready.set()
                await run_listeners(listeners, self._stop or asyncio.Event())

            self._loop.run_until_complete(main())

        self._thread = threading.Thread(target=serve, name="wirelab-smtp", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise control.LabError("the in-process SMTP listeners did not start")

    def stop(self) -> None:
        for endpoint in self.endpoints.values():
            endpoint.faults.clear()  # releases requests held by a HANG
            with contextlib.suppress(Exception):
                endpoint.stop(timeout=10)
        if self._thread is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)
        self._thread = None


@dataclass
class WireLab(Lab):
    twins: InProcessTwins | None = None

    def endpoint(self, name: str) -> WinRMEndpoint:
        assert self.twins is not None
        return self.twins.endpoints[name]

    def quick_client(self, name: str) -> WinRMClient:
        """A client that gives up quickly on a host that stopped answering: a hung request
        costs `read_timeout` seconds, output that never comes `command_timeout` seconds."""
        return WinRMClient(
            self.options(
                name,
                operation_timeout=2,
                read_timeout=4,
                command_timeout=8.0,
                connect_retries=2,
                retry_delay=0.0,
            )
        )


@contextlib.contextmanager
def wire_lab(spec: str, first_address: str) -> Iterator[WireLab]:
    parent = Path(tempfile.mkdtemp(prefix="relayguard-wire-lab-"))
    directory = parent / "lab"
    twins = InProcessTwins()
    try:
        with mock.patch.object(control, "_start_daemon", twins.start):
            manifest = lab_up(directory, spec, first_address)
        yield WireLab(directory, parent, manifest, twins)
    finally:
        twins.stop()
        lab_command("down", "--dir", str(directory))
        shutil.rmtree(parent, ignore_errors=True)
