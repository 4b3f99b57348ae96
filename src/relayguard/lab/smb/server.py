"""The 5.5 twin's SMB endpoint: SMB1 with NTLM, `C$` and `ADMIN$`, `winreg` and `svcctl`.

Exchange 5.5 runs on Windows NT 4.0 and 2000, which have no WinRM and speak SMB1 only
(docs/sources.md#ms-smb): this is how such a host is managed. The endpoint is impacket's
`SimpleSMBServer` (the SMB protocol and its named-pipe forwarding), with the twin's own
pipe servers (`winreg.WinregServer`, `svcctl.SvcctlServer`) over the same state document as
the twin's SMTP listener. The disk behind `C$` is a directory of the twin; its
`exchsrvr\\connect\\msexcimc\\bin\\msexcimc.exe` is a PE file whose version resource is the
state's ImcFileVersion, rewritten whenever that changes.

Faults (the fault matrix): a `Fault` in the state's lab knobs whose op is `smb.registry.set`,
`smb.service.start`, `smb.service.stop` or `smb.patch.run` fails the next such operation.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path, PureWindowsPath

from impacket import smbserver
from impacket.ntlm import compute_nthash

from relayguard.lab.exchange.state import TwinState
from relayguard.lab.exchange.store import StateStore
from relayguard.lab.smb import netbios
from relayguard.lab.smb.lsarpc import LsarpcServer
from relayguard.lab.smb.pe import make_pe
from relayguard.lab.smb.registry import imc_image_path
from relayguard.lab.smb.svcctl import SvcctlServer
from relayguard.lab.smb.winreg import WinregServer

SYSTEM_ROOT = "C:\\WINNT"  # NT 4.0 and Windows 2000 install to C:\WINNT


class SmbTwin:
    """One twin's SMB endpoint on `address:port` (445 as on Windows when run as root)."""

    def __init__(
        self,
        store: StateStore,
        address: str,
        port: int,
        username: str,
        password: str,
        disk: Path,
    ) -> None:
        self.store = store
        self.address = address
        self.port = port
        self.disk = disk
        self.drive_c = disk / "drive_c"
        (self.drive_c / "WINNT" / "Temp").mkdir(parents=True, exist_ok=True)
        # impacket logs every NTLM response it sees: never in the lab's logs.
        logging.getLogger("impacket").setLevel(logging.ERROR)
        self._server = smbserver.SimpleSMBServer(listenAddress=address, listenPort=port)
        self._server.setSMB2Support(False)  # NT 4.0 / 2000 speak SMB1 only
        self._server.setSMBChallenge("")
        x = store.current().exchange55
        if x is not None:  # the NetBIOS name a client sees in the NTLM challenge
            config = self._server._SimpleSMBServer__smbConfig
            config.set("global", "server_name", x.ServerName)
            config.set("global", "server_domain", "WORKGROUP")
            self._server.getServer().setServerConfig(config)
            self._server.getServer().processConfigFile()
        if port == netbios.NETBIOS_SESSION_PORT:  # NT 4.0's only SMB port: names are checked
            name = "TWIN" if x is None else x.ServerName
            self._server.getServer().RequestHandlerClass = netbios.handler_for(name)
        self._server.addShare("C$", str(self.drive_c), "Default share")
        self._server.addShare("ADMIN$", str(self.drive_c / "WINNT"), "Remote Admin")
        self._server.addCredential(username, 500, "", compute_nthash(password).hex())
        computer = store.current().exchange55
        self.lsarpc = LsarpcServer("TWIN" if computer is None else computer.ServerName)
        self.winreg = WinregServer(store, self._fault)
        self.svcctl = SvcctlServer(store, self.disk_path, self._fault, self.sync_disk)
        self._server.registerNamedPipe("lsarpc", ("127.0.0.1", self.lsarpc.getListenPort()))
        self._server.registerNamedPipe("winreg", ("127.0.0.1", self.winreg.getListenPort()))
        self._server.registerNamedPipe("svcctl", ("127.0.0.1", self.svcctl.getListenPort()))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._written: str | None = None
        self._disk_lock = threading.Lock()

    # --- the disk ------------------------------------------------------------------------

    def disk_path(self, windows_path: str) -> Path | None:
        """`C:\\x\\y` (or `%SystemRoot%\\…`) as the file under the twin's drive_c; None when it
        is on another drive or leaves the drive."""
        text = windows_path.replace("%SystemRoot%", SYSTEM_ROOT).replace(
            "%systemroot%", SYSTEM_ROOT
        )
        path = PureWindowsPath(text)
        if path.drive.upper() != "C:" or ".." in path.parts:
            return None
        return self.drive_c.joinpath(*path.parts[1:])

    def sync_disk(self) -> None:
        """Write msexcimc.exe when the state's file version changed."""
        with self._disk_lock:
            self._sync_disk()

    def _sync_disk(self) -> None:
        x = self.store.current().exchange55
        if x is None or x.ImcFileVersion == self._written:
            return
        target = self.disk_path(imc_image_path(x))
        if target is None:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(make_pe(x.ImcFileVersion))
        tmp.replace(target)
        self._written = x.ImcFileVersion

    def _fault(self, operation: str) -> bool:
        op = f"smb.{operation}"

        def take(state: TwinState) -> bool:
            for index, fault in enumerate(state.lab.faults):
                if fault.op == op:
                    fault.count -= 1
                    if fault.count <= 0:
                        del state.lab.faults[index]
                    return True
            return False

        if not any(f.op == op for f in self.store.current().lab.faults):
            return False
        return self.store.update(take)

    # --- running -------------------------------------------------------------------------

    def start(self) -> None:
        self.sync_disk()
        self.lsarpc.start()
        self.winreg.start()
        self.svcctl.start()
        server = self._server.getServer()
        # A client that never logs off must not keep the twin from stopping.
        server.daemon_threads = True
        server.block_on_close = False
        serve = threading.Thread(target=server.serve_forever, name=f"smb-{self.address}")
        serve.daemon = True
        serve.start()
        sync = threading.Thread(target=self._sync_loop, name=f"smb-disk-{self.address}")
        sync.daemon = True
        sync.start()
        self._threads = [serve, sync]

    def _sync_loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.sync_disk()
            except (OSError, ValueError):
                continue

    def stop(self) -> None:
        self._stop.set()
        server = self._server.getServer()
        server.shutdown()
        server.server_close()
