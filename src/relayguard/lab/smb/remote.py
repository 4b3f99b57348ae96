"""What Windows on a management host does on the wire when a script names `\\\\host`.

A management host's PowerShell reaches an Exchange 5.5 host with
`RegistryKey.OpenRemoteBaseKey` (MS-RRP over `\\PIPE\\winreg`), `Get-Service -ComputerName`
and `sc.exe \\\\host` (MS-SCMR over `\\PIPE\\svcctl`) and UNC paths on `C$` / `ADMIN$` (SMB),
all inside one SMB session to that host (docs/sources.md#management-host-apis). The lab's
management-host twin (`lab.exchange.ops_remote55`) does the same through impacket's client,
against the 5.5 twin's SMB endpoint, so the twin exercises the real remote path and never
reads the target's state document. Errors are `RemoteError`s carrying the Windows message a
script would see.

Test equipment: it imports nothing of the product but the vocabulary (it needs none).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from impacket.dcerpc.v5 import rrp, scmr, transport
from impacket.dcerpc.v5.rpcrt import DCERPCException
from impacket.smbconnection import SessionError, SMBConnection

REG_SZ, REG_EXPAND_SZ, REG_DWORD, REG_MULTI_SZ = 1, 2, 4, 7
ERROR_FILE_NOT_FOUND = 2
ERROR_SERVICE_DOES_NOT_EXIST = 1060
STATES = {1: "Stopped", 2: "StartPending", 3: "StopPending", 4: "Running", 7: "Paused"}


class RemoteError(Exception):
    """A remote call failed; `str()` is the message the management host's script prints."""


@dataclass(frozen=True)
class RemoteAccount:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"RemoteAccount(username={self.username!r})"


def _win32(exc: DCERPCException) -> int | None:
    code = getattr(exc, "error_code", None)
    return None if code is None else int(code)


class RemoteHost:
    """One SMB session from the management host to a target, with its pipes."""

    def __init__(self, target: str, port: int, account: RemoteAccount, timeout: int = 20) -> None:
        self.target = target
        self.port = port
        domain, _, user = account.username.rpartition("\\")
        unc = f"\\\\{target}\\ADMIN$"
        try:
            self.smb = SMBConnection(target, target, sess_port=port, timeout=timeout)
        except OSError:
            raise RemoteError(
                f"cannot connect to {unc} as {account.username}: The network path was not found."
            ) from None
        try:
            self.smb.login(user, account.password, domain)
        except SessionError:
            raise RemoteError(
                f"cannot connect to {unc} as {account.username}: "
                "The user name or password is incorrect."
            ) from None
        self._rrp: Any = None
        self._hklm: Any = None
        self._scmr: Any = None
        self._scm: Any = None

    def _bind(self, pipe: str, uuid: Any) -> Any:
        rpc = transport.SMBTransport(
            self.target, self.port, f"\\{pipe}", smb_connection=self.smb
        ).get_dce_rpc()
        rpc.connect()
        rpc.bind(uuid)
        return rpc

    # --- OpenRemoteBaseKey -----------------------------------------------------------------

    def _registry(self) -> tuple[Any, Any]:
        if self._rrp is None:
            try:
                self._rrp = self._bind("winreg", rrp.MSRPC_UUID_RRP)
                self._hklm = rrp.hOpenLocalMachine(self._rrp)["phKey"]
            except (DCERPCException, SessionError, OSError):
                raise RemoteError(
                    f"cannot open the remote registry of {self.target}: The network path was "
                    "not found."
                ) from None
        return self._rrp, self._hklm

    @contextlib.contextmanager
    def key(self, path: str, *, writable: bool = False) -> Iterator[Any | None]:
        rpc, hklm = self._registry()
        access = rrp.KEY_READ | (rrp.KEY_SET_VALUE if writable else 0)
        try:
            handle = rrp.hBaseRegOpenKey(rpc, hklm, path, samDesired=access)["phkResult"]
        except DCERPCException as exc:
            if _win32(exc) == ERROR_FILE_NOT_FOUND:
                yield None
                return
            raise RemoteError(f"Requested registry access is not allowed. ({path})") from None
        try:
            yield handle
        finally:
            rrp.hBaseRegCloseKey(rpc, handle)

    def values(self, path: str, names: tuple[str, ...]) -> dict[str, Any] | None:
        """What RegistryKey.GetValue gives for each value that exists; None: no key."""
        rpc, _ = self._registry()
        with self.key(path) as handle:
            if handle is None:
                return None
            found: dict[str, Any] = {}
            for name in names:
                try:
                    kind, data = rrp.hBaseRegQueryValue(rpc, handle, name + "\0")
                except DCERPCException as exc:
                    if _win32(exc) == ERROR_FILE_NOT_FOUND:
                        continue
                    raise RemoteError(f"cannot read {name}: Win32 error {_win32(exc)}") from None
                if kind == REG_MULTI_SZ:
                    # "a\0b\0\0" -> [a, b]; an empty REG_MULTI_SZ is [] (not absent)
                    found[name] = _multi(str(data))
                elif kind in (REG_SZ, REG_EXPAND_SZ):
                    found[name] = str(data).rstrip("\0")
                else:
                    found[name] = data
            return found

    def write(self, path: str, writes: dict[str, Any]) -> None:
        """RegistryKey.SetValue (int: REG_DWORD, list: REG_MULTI_SZ) or DeleteValue (None)."""
        rpc, _ = self._registry()
        with self.key(path, writable=True) as handle:
            if handle is None:
                raise RemoteError(f"Cannot find path 'HKLM:\\{path}' on {self.target}.")
            for name, value in writes.items():
                try:
                    if value is None:
                        with contextlib.suppress(DCERPCException):
                            rrp.hBaseRegDeleteValue(rpc, handle, name + "\0")
                    elif isinstance(value, int):
                        rrp.hBaseRegSetValue(rpc, handle, name + "\0", REG_DWORD, value)
                    else:
                        text = "".join(f"{item}\0" for item in value)
                        rrp.hBaseRegSetValue(rpc, handle, name + "\0", REG_MULTI_SZ, text)
                except DCERPCException as exc:
                    raise RemoteError(
                        f"Requested registry access is not allowed. ({name}: Win32 error "
                        f"{_win32(exc)})"
                    ) from None

    # --- Get-Service -ComputerName, sc.exe \\host ------------------------------------------

    def _services(self) -> tuple[Any, Any]:
        if self._scmr is None:
            try:
                self._scmr = self._bind("svcctl", scmr.MSRPC_UUID_SCMR)
                self._scm = scmr.hROpenSCManagerW(self._scmr)["lpScHandle"]
            except (DCERPCException, SessionError, OSError):
                raise RemoteError(
                    f"Cannot open Service Control Manager on computer '{self.target}'."
                ) from None
        return self._scmr, self._scm

    def _service_call(self, name: str, call: Callable[[Any, Any], Any]) -> Any:
        rpc, scm = self._services()
        handle = scmr.hROpenServiceW(rpc, scm, name + "\0")["lpServiceHandle"]
        try:
            return call(rpc, handle)
        finally:
            scmr.hRCloseServiceHandle(rpc, handle)

    def service(self, name: str) -> tuple[str, int] | None:
        """(status, Win32 exit code), or None when the service does not exist."""

        def query(rpc: Any, handle: Any) -> tuple[str, int]:
            status = scmr.hRQueryServiceStatus(rpc, handle)["lpServiceStatus"]
            state = int(status["dwCurrentState"])
            return STATES.get(state, str(state)), int(status["dwWin32ExitCode"])

        try:
            result: tuple[str, int] = self._service_call(name, query)
        except DCERPCException as exc:
            if _win32(exc) == ERROR_SERVICE_DOES_NOT_EXIST:
                return None
            raise RemoteError(f"Cannot query service '{name}' on '{self.target}'.") from None
        return result

    def control(self, name: str, action: str) -> int:
        """ServiceController.Stop / Start (sc.exe stop / start): the Win32 answer, 0 = ok."""

        def run(rpc: Any, handle: Any) -> int:
            try:
                if action == "stop":
                    scmr.hRControlService(rpc, handle, scmr.SERVICE_CONTROL_STOP)
                else:
                    scmr.hRStartServiceW(rpc, handle)
            except DCERPCException as exc:
                return _win32(exc) or 1
            return 0

        code: int = self._service_call(name, run)
        return code

    def create_service(self, name: str, command: str) -> None:
        rpc, scm = self._services()
        try:
            handle = scmr.hRCreateServiceW(
                rpc,
                scm,
                name + "\0",
                name + "\0",
                lpBinaryPathName=command + "\0",
                dwStartType=scmr.SERVICE_DEMAND_START,
            )["lpServiceHandle"]
        except DCERPCException as exc:
            raise RemoteError(f"[SC] CreateService FAILED {_win32(exc)}") from None
        scmr.hRCloseServiceHandle(rpc, handle)

    def delete_service(self, name: str) -> None:
        with contextlib.suppress(DCERPCException):
            self._service_call(name, lambda rpc, handle: scmr.hRDeleteService(rpc, handle))

    # --- UNC paths -------------------------------------------------------------------------

    def read(self, share: str, path: str) -> bytes | None:
        buffer = io.BytesIO()
        try:
            self.smb.getFile(share, path, buffer.write)
        except SessionError:
            return None
        return buffer.getvalue()

    def put(self, share: str, path: str, data: bytes) -> None:
        try:
            self.smb.putFile(share, path, io.BytesIO(data).read)
        except SessionError:
            raise RemoteError(
                f"Access to the path '\\\\{self.target}\\{share}\\{path}' is denied."
            ) from None

    def remove(self, share: str, path: str) -> None:
        with contextlib.suppress(SessionError):
            self.smb.deleteFile(share, path)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.smb.logoff()


def _multi(text: str) -> list[str]:
    items: list[str] = []
    for item in text.split("\0"):
        if item == "":
            break
        items.append(item)
    return items
