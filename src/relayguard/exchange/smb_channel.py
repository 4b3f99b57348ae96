"""Exchange 5.5 over SMB: the management channel that exists on Windows NT 4.0 and 2000.

Exchange 5.5 runs only on NT 4.0 and Windows 2000; neither has WinRM or PowerShell. Such
hosts are managed over SMB (NT 4.0 and 2000 speak SMB1) with NTLM: the remote registry
(MS-RRP, pipe `winreg`), the service control manager (MS-SCMR, pipe `svcctl`) and the
administrative shares `C$` / `ADMIN$` (docs/sources.md#ms-smb, #ms-rrp, #ms-scmr). The client
is impacket.

`SmbChannel` is the connection; `SmbRunner` carries out the same ops the PowerShell payloads
do (docs/payloads.md) and answers with the same documents, so the facts room, the relay
apply room (backup, plan, rollback, check/diff) and the patch room work over SMB unchanged:
same rules, same facts. Failures are `TransportError`s (host, step, cause), and the password
never appears in one.

Patching runs the hotfix the way NT-era admins did remotely (and PsExec does): copy it to
`ADMIN$\\Temp`, create a one-shot service whose binary is the hotfix, start it, delete the
service. A program that is not a service makes the start answer
ERROR_SERVICE_REQUEST_TIMEOUT (1053) although it ran, so the result is judged by
msexcimc.exe's file version read back afterwards (docs/sources.md#pe-version-resource).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import os
import re
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import PureWindowsPath
from typing import Any

import pefile
from impacket.dcerpc.v5 import rrp, scmr, transport
from impacket.dcerpc.v5.rpcrt import DCERPCException
from impacket.smbconnection import SessionError, SMBConnection

from relayguard.exchange import payloads
from relayguard.exchange.assess import HostAssessment, judge
from relayguard.exchange.facts import ExchangeFacts, FactsError, facts_from_documents
from relayguard.exchange.patch_level import PatchPolicy
from relayguard.exchange.rules55 import ROUTING_STORAGE_UNKNOWN
from relayguard.exchange.transport import FailureCause, Secret, TransportError

PARAMETERS_KEY = "SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC\\Parameters"
SERVICE_KEY = "SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC"
SETUP_KEY = "SOFTWARE\\Microsoft\\Exchange\\Setup"
# The documents name keys as the PowerShell payloads do (PowerShell's HKLM: drive).
PS_PARAMETERS = "HKLM:\\" + PARAMETERS_KEY
PS_SETUP = "HKLM:\\" + SETUP_KEY
IMC_SERVICE = "MSExchangeIMC"
LISTS = ("RelayAllowList", "RelayDenyList", "RelayLocalIPList")
SYSTEM_ROOT = "C:\\WINNT"  # NT 4.0 and Windows 2000; ADMIN$ is %SystemRoot%
TEMP_DIR = SYSTEM_ROOT + "\\Temp"

REG_SZ, REG_EXPAND_SZ, REG_DWORD, REG_MULTI_SZ = 1, 2, 4, 7
ERROR_FILE_NOT_FOUND = 2
ERROR_SERVICE_REQUEST_TIMEOUT = 1053
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_NOT_ACTIVE = 1062
STATES = {1: "Stopped", 2: "StartPending", 3: "StopPending", 4: "Running", 7: "Paused"}
START_TYPES = {2: "Automatic", 3: "Manual", 4: "Disabled"}
_SAFE_FILE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


@dataclass(frozen=True)
class SmbOptions:
    host: str
    username: str
    password: Secret
    port: int = 445
    domain: str = ""
    timeout: float = 60.0  # seconds for a connection, a call, a service to change state

    def __repr__(self) -> str:
        return f"SmbOptions(host={self.host!r}, port={self.port}, username={self.username!r})"


def file_version_of(data: bytes) -> tuple[int, int, int, int] | None:
    """The four parts of VS_FIXEDFILEINFO's file version in a PE image, or None."""
    try:
        pe = pefile.PE(data=data, fast_load=True)
        pe.parse_data_directories(
            directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_RESOURCE"]]
        )
    except pefile.PEFormatError:
        return None
    fixed = getattr(pe, "VS_FIXEDFILEINFO", None)
    if not fixed:
        return None
    ms, ls = fixed[0].FileVersionMS, fixed[0].FileVersionLS
    return (ms >> 16, ms & 0xFFFF, ls >> 16, ls & 0xFFFF)


def share_path(windows_path: str) -> tuple[str, str]:
    """`C:\\x\\y.exe` -> ("C$", "x\\y.exe"); `%SystemRoot%\\…` -> ADMIN$. ValueError else."""
    text = windows_path.strip().strip('"')
    if text.lower().startswith("%systemroot%"):
        return "ADMIN$", text[len("%systemroot%") :].lstrip("\\")
    path = PureWindowsPath(text)
    if len(path.drive) != 2 or not path.drive[0].isalpha() or ".." in path.parts:
        raise ValueError(f"not a local absolute path: {windows_path!r}")
    rest = "\\".join(path.parts[1:])
    if not rest:
        raise ValueError(f"not a file path: {windows_path!r}")
    return f"{path.drive[0].upper()}$", rest


def decode_multi_sz(value: Any) -> list[str]:
    """impacket's REG_MULTI_SZ text ("a\\0b\\0\\0") as a list; "" or "\\0\\0" is []."""
    items: list[str] = []
    for item in str(value).split("\0"):
        if item == "":
            break
        items.append(item)
    return items


class SmbChannel:
    """One authenticated SMB session to a host, with the pipes opened as needed."""

    def __init__(
        self, options: SmbOptions, connect: Callable[[SmbOptions], Any] | None = None
    ) -> None:
        self.options = options
        self._connect = connect or _connect
        self._smb: Any = None
        self._winreg: Any = None
        self._hklm: Any = None
        self._svcctl: Any = None
        self._scm: Any = None

    def error(self, step: str, cause: FailureCause, detail: str) -> TransportError:
        secret = self.options.password.reveal()
        if secret and detail:
            detail = detail.replace(secret, "***")
        return TransportError(self.options.host, step, cause, detail)

    def _call(self, step: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except SessionError as exc:
            cause = _session_cause(exc)
            raise self.error(step, cause, _nt_status(exc)) from None
        except DCERPCException as exc:
            raise self.error(step, FailureCause.SCRIPT_FAILED, _rpc_text(exc)) from None
        except OSError as exc:
            raise self.error(step, FailureCause.CONNECTION_FAILED, type(exc).__name__) from None
        except struct.error:
            raise self.error(step, FailureCause.OUTPUT_INVALID, "malformed RPC reply") from None

    @property
    def smb(self) -> Any:
        if self._smb is None:
            self._smb = self._call("smb logon", lambda: self._connect(self.options))
        return self._smb

    def computer_name(self) -> str:
        return str(self.smb.getServerName() or self.options.host)

    # --- MS-RRP ------------------------------------------------------------------------------

    def _pipe(self, name: str, uuid: Any) -> Any:
        smb = self.smb
        pipe = transport.SMBTransport(
            self.options.host, self.options.port, f"\\{name}", smb_connection=smb
        )
        dce = pipe.get_dce_rpc()
        dce.connect()
        dce.bind(uuid)
        return dce

    def _registry(self) -> tuple[Any, Any]:
        if self._winreg is None:

            def open_hklm() -> tuple[Any, Any]:
                dce = self._pipe("winreg", rrp.MSRPC_UUID_RRP)
                return dce, rrp.hOpenLocalMachine(dce)["phKey"]

            self._winreg, self._hklm = self._call("open winreg", open_hklm)
        return self._winreg, self._hklm

    def _open_key(self, key: str, *, write: bool = False) -> Any | None:
        dce, hklm = self._registry()
        access = rrp.KEY_READ | (rrp.KEY_SET_VALUE if write else 0)
        try:
            return rrp.hBaseRegOpenKey(dce, hklm, key, samDesired=access)["phkResult"]
        except DCERPCException as exc:
            if _rpc_code(exc) == ERROR_FILE_NOT_FOUND:
                return None
            raise self.error(f"open {key}", FailureCause.SCRIPT_FAILED, _rpc_text(exc)) from None

    def key_exists(self, key: str) -> bool:
        handle = self._call(f"open {key}", lambda: self._open_key(key))
        if handle is not None:
            self._call("close key", lambda: rrp.hBaseRegCloseKey(self._registry()[0], handle))
        return handle is not None

    def query_values(self, key: str, names: tuple[str, ...]) -> dict[str, Any] | None:
        """{name: value} of the values that exist (REG_MULTI_SZ as a list); None: no key."""
        dce, _ = self._registry()
        handle = self._call(f"open {key}", lambda: self._open_key(key))
        if handle is None:
            return None
        out: dict[str, Any] = {}
        try:
            for name in names:
                found = self._call(f"read {name}", functools.partial(_query, dce, handle, name))
                if found is not None:
                    out[name] = found
        finally:
            self._call("close key", lambda: rrp.hBaseRegCloseKey(dce, handle))
        return out

    def set_values(self, key: str, values: Mapping[str, Any]) -> None:
        """Write each value (int -> REG_DWORD, list -> REG_MULTI_SZ, None -> deleted)."""
        dce, _ = self._registry()
        handle = self._call(f"open {key}", lambda: self._open_key(key, write=True))
        if handle is None:
            raise self.error(f"open {key}", FailureCause.SCRIPT_FAILED, "the key does not exist")
        try:
            for name, value in values.items():
                self._call(f"write {name}", functools.partial(_write, dce, handle, name, value))
        finally:
            self._call("close key", lambda: rrp.hBaseRegCloseKey(dce, handle))

    # --- MS-SCMR -----------------------------------------------------------------------------

    def _services(self) -> tuple[Any, Any]:
        if self._svcctl is None:

            def open_scm() -> tuple[Any, Any]:
                dce = self._pipe("svcctl", scmr.MSRPC_UUID_SCMR)
                return dce, scmr.hROpenSCManagerW(dce)["lpScHandle"]

            self._svcctl, self._scm = self._call("open svcctl", open_scm)
        return self._svcctl, self._scm

    def service_state(self, name: str) -> tuple[str, int] | None:
        """(state, win32 exit code) of a service, or None when it does not exist."""
        dce, scm = self._services()

        def query() -> tuple[str, int] | None:
            try:
                handle = scmr.hROpenServiceW(dce, scm, name + "\0")["lpServiceHandle"]
            except DCERPCException as exc:
                if _rpc_code(exc) == 1060:  # ERROR_SERVICE_DOES_NOT_EXIST
                    return None
                raise
            try:
                status = scmr.hRQueryServiceStatus(dce, handle)["lpServiceStatus"]
            finally:
                scmr.hRCloseServiceHandle(dce, handle)
            state = int(status["dwCurrentState"])
            return STATES.get(state, str(state)), int(status["dwWin32ExitCode"])

        result: tuple[str, int] | None = self._call(f"query service {name}", query)
        return result

    def _control(self, name: str, action: str) -> int:
        """Stop or start a service; the Win32 error code (0 = accepted)."""
        dce, scm = self._services()

        def run() -> int:
            handle = scmr.hROpenServiceW(dce, scm, name + "\0")["lpServiceHandle"]
            try:
                if action == "stop":
                    scmr.hRControlService(dce, handle, scmr.SERVICE_CONTROL_STOP)
                else:
                    scmr.hRStartServiceW(dce, handle)
                return 0
            except DCERPCException as exc:
                code = _rpc_code(exc)
                if code is None:
                    raise
                return code
            finally:
                scmr.hRCloseServiceHandle(dce, handle)

        code: int = self._call(f"{action} service {name}", run)
        return code

    def wait_state(self, name: str, wanted: str) -> str:
        deadline = time.monotonic() + self.options.timeout
        while True:
            found = self.service_state(name)
            state = "missing" if found is None else found[0]
            if state == wanted or time.monotonic() > deadline:
                return state
            time.sleep(0.25)

    def restart_service(self, name: str) -> None:
        """Stop (if running) and start a service, waiting for each (KB Q193922: the IMS
        reads its parameters when it starts)."""
        code = self._control(name, "stop")
        if code not in (0, ERROR_SERVICE_NOT_ACTIVE):
            raise self.error(f"stop service {name}", FailureCause.SCRIPT_FAILED, f"error {code}")
        if self.wait_state(name, "Stopped") != "Stopped":
            raise self.error(f"stop service {name}", FailureCause.TIMEOUT, "still not stopped")
        code = self._control(name, "start")
        if code not in (0, ERROR_SERVICE_ALREADY_RUNNING):
            raise self.error(f"start service {name}", FailureCause.SCRIPT_FAILED, f"error {code}")
        if self.wait_state(name, "Running") != "Running":
            raise self.error(f"start service {name}", FailureCause.TIMEOUT, "still not running")

    def run_once(self, command: str) -> int:
        """Run `command` as a one-shot service (PsExec's way); its Win32 exit code."""
        dce, scm = self._services()
        name = "relayguard-" + os.urandom(4).hex()

        def create() -> Any:
            return scmr.hRCreateServiceW(
                dce,
                scm,
                name + "\0",
                name + "\0",
                lpBinaryPathName=command + "\0",
                dwStartType=scmr.SERVICE_DEMAND_START,
            )["lpServiceHandle"]

        handle = self._call("create one-shot service", create)
        try:
            code = self._control(name, "start")
            if code not in (0, ERROR_SERVICE_REQUEST_TIMEOUT):
                raise self.error(
                    "run one-shot service", FailureCause.SCRIPT_FAILED, f"error {code}"
                )
            self.wait_state(name, "Stopped")
            state = self.service_state(name)
            return 0 if state is None else state[1]
        finally:
            self._call("delete one-shot service", lambda: scmr.hRDeleteService(dce, handle))
            self._call("close service", lambda: scmr.hRCloseServiceHandle(dce, handle))

    # --- files ---------------------------------------------------------------------------

    def read_file(self, windows_path: str) -> bytes | None:
        share, path = share_path(windows_path)
        buffer = io.BytesIO()
        try:
            self.smb.getFile(share, path, buffer.write)
        except SessionError as exc:
            if "NOT_FOUND" in _nt_status(exc) or "NO_SUCH" in _nt_status(exc):
                return None
            raise self.error(
                f"read {windows_path}", FailureCause.SCRIPT_FAILED, _nt_status(exc)
            ) from None
        return buffer.getvalue()

    def _make_dirs(self, share: str, path: str) -> None:
        parts = path.split("\\")[:-1]
        for depth in range(1, len(parts) + 1):
            with contextlib.suppress(SessionError):  # it exists already
                self.smb.createDirectory(share, "\\".join(parts[:depth]))

    def write_file(self, windows_path: str, data: bytes, *, append: bool = False) -> int:
        share, path = share_path(windows_path)
        self._make_dirs(share, path)
        if append:
            data = (self.read_file(windows_path) or b"") + data
        self._call(
            f"write {windows_path}", lambda: self.smb.putFile(share, path, io.BytesIO(data).read)
        )
        return len(data)

    def remove_file(self, windows_path: str) -> bool:
        share, path = share_path(windows_path)
        try:
            self.smb.deleteFile(share, path)
        except SessionError as exc:
            if "NOT_FOUND" in _nt_status(exc) or "NO_SUCH" in _nt_status(exc):
                return False
            raise self.error(
                f"remove {windows_path}", FailureCause.SCRIPT_FAILED, _nt_status(exc)
            ) from None
        return True

    def file_version(self, windows_path: str) -> tuple[int, int, int, int] | None:
        data = self.read_file(windows_path)
        return None if data is None else file_version_of(data)

    def close(self) -> None:
        if self._smb is not None:
            with contextlib.suppress(SessionError, OSError):
                self._smb.logoff()
            self._smb = None
            self._winreg = self._svcctl = None


# Windows NT 4.0 has no SMB over TCP 445 (direct hosting came with Windows 2000): it is
# reached on 139, the NetBIOS session service, whose session request names the called
# server (RFC 1002 section 4.3.2). An IP address is not a NetBIOS name and NT answers "called
# name not present"; "*SMBSERVER" is the name it accepts from clients that do not know its
# own, and impacket first asks the host's name service (UDP 137) for the real one
# (docs/sources.md#netbios-session).
NETBIOS_SESSION_PORT = 139
ANY_SMB_SERVER = "*SMBSERVER"


def called_name(options: SmbOptions) -> str:
    """The name the session is opened to: the host itself on 445, *SMBSERVER on 139."""
    return ANY_SMB_SERVER if options.port == NETBIOS_SESSION_PORT else options.host


def _connect(options: SmbOptions) -> Any:
    conn = SMBConnection(
        called_name(options), options.host, sess_port=options.port, timeout=int(options.timeout)
    )
    conn.login(options.username, options.password.reveal(), options.domain)
    return conn


def _nt_status(exc: SessionError) -> str:
    try:
        text = exc.getErrorString()
        return str(text[0] if isinstance(text, tuple) else text)
    except Exception:  # impacket raises on a code it has no text for
        return f"NT status 0x{exc.getErrorCode():08x}"


def _session_cause(exc: SessionError) -> FailureCause:
    text = _nt_status(exc)
    refused = ("LOGON_FAILURE", "ACCESS_DENIED", "ACCOUNT", "WRONG_PASSWORD")
    return (
        FailureCause.AUTH_REFUSED if any(s in text for s in refused) else FailureCause.SCRIPT_FAILED
    )


def _rpc_code(exc: DCERPCException) -> int | None:
    code = getattr(exc, "error_code", None)
    return None if code is None else int(code)


def _rpc_text(exc: DCERPCException) -> str:
    code = _rpc_code(exc)
    return f"Win32 error {code}" if code is not None else type(exc).__name__


def _query(dce: Any, handle: Any, name: str) -> Any:
    try:
        kind, value = rrp.hBaseRegQueryValue(dce, handle, name + "\0")
    except DCERPCException as exc:
        if _rpc_code(exc) == ERROR_FILE_NOT_FOUND:
            return None
        raise
    if kind == REG_MULTI_SZ:
        return decode_multi_sz(value)
    if kind in (REG_SZ, REG_EXPAND_SZ):
        return str(value).rstrip("\0")
    return value


def _write(dce: Any, handle: Any, name: str, value: Any) -> None:
    if value is None:
        try:
            rrp.hBaseRegDeleteValue(dce, handle, name + "\0")
        except DCERPCException as exc:
            if _rpc_code(exc) != ERROR_FILE_NOT_FOUND:
                raise
    elif isinstance(value, bool) or not isinstance(value, int | list):
        raise ValueError(f"{name}: cannot write {type(value).__name__}")
    elif isinstance(value, int):
        rrp.hBaseRegSetValue(dce, handle, name + "\0", REG_DWORD, value)
    else:
        rrp.hBaseRegSetValue(
            dce, handle, name + "\0", REG_MULTI_SZ, "".join(f"{v}\0" for v in value)
        )


# --- the ops (docs/payloads.md), carried out over SMB -----------------------------------------


def _version_document(path: str, parts: tuple[int, int, int, int] | None) -> dict[str, Any] | None:
    if parts is None:
        return None
    return {
        "Path": path,
        "FileVersion": ".".join(str(p) for p in parts),
        "FileMajorPart": parts[0],
        "FileMinorPart": parts[1],
        "FileBuildPart": parts[2],
        "FilePrivatePart": parts[3],
    }


class SmbRunner:
    """A `PayloadRunner` (relayguard.exchange.current) for Exchange 5.5 hosts over SMB."""

    def __init__(self, channel: SmbChannel) -> None:
        self.channel = channel
        self.options = channel.options
        self._ops: dict[str, Callable[[Mapping[str, Any]], Any]] = {
            "exchange.detect": self.detect,
            "exchange55.read_config": self.read_config,
            "exchange55.write_config": self.write_config,
            "exchange.restart_service": self.restart_service,
            "exchange.file_version": self.file_version,
            "file.append_chunk": self.append_chunk,
            "file.remove": self.remove,
            "exchange.install_patch": self.install_patch,
        }

    def run_payload(self, payload: payloads.RenderedPayload) -> Any:
        handler = self._ops.get(payload.op)
        if handler is None:
            raise self.channel.error(
                payload.op, FailureCause.CONFIGURATION, "not available over SMB (Exchange 5.5 only)"
            )
        params = payloads.decode_params(payload.script)
        try:
            return handler(params if isinstance(params, Mapping) else {})
        except ValueError as exc:
            raise self.channel.error(payload.op, FailureCause.SCRIPT_FAILED, str(exc)) from None

    def imc_path(self) -> str | None:
        found = self.channel.query_values(SERVICE_KEY, ("ImagePath",)) or {}
        image = str(found.get("ImagePath") or "").strip()
        if not image:
            return None
        image = re.sub("%systemroot%", SYSTEM_ROOT.replace("\\", "\\\\"), image, flags=re.I)
        return image[1:].split('"', 1)[0] if image.startswith('"') else image.split(" ", 1)[0]

    def service_document(self) -> dict[str, Any] | None:
        state = self.channel.service_state(IMC_SERVICE)
        if state is None:
            return None
        start = self.channel.query_values(SERVICE_KEY, ("Start", "DisplayName")) or {}
        return {
            "Name": IMC_SERVICE,
            "DisplayName": start.get("DisplayName"),
            "Status": state[0],
            "StartType": START_TYPES.get(int(start.get("Start") or 0)),
        }

    def detect(self, params: Mapping[str, Any]) -> dict[str, Any]:
        setup = self.channel.query_values(SETUP_KEY, ("NewestBuild", "ServicePackBuild"))
        exchange55 = None
        if setup is not None or self.channel.key_exists(SERVICE_KEY):
            path = self.imc_path()
            exchange55 = {
                "SetupKey": {
                    "Path": PS_SETUP,
                    **{k: (setup or {}).get(k) for k in ("NewestBuild", "ServicePackBuild")},
                },
                "ImcService": self.service_document(),
                "Imc": None
                if path is None
                else _version_document(path, self.channel.file_version(path)),
            }
        return {
            "ComputerName": self.channel.computer_name(),
            "Exchange55": exchange55,
            "Exchange15": None,
            "RebootPending": None,  # not read over SMB (no documented remote source on NT 4.0)
        }

    def read_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if not self.channel.key_exists(SERVICE_KEY):
            raise self.channel.error(
                "exchange55.read_config",
                FailureCause.SCRIPT_FAILED,
                "Exchange Server 5.5 is not installed on this computer.",
            )
        values = self.channel.query_values(PARAMETERS_KEY, ("RelayFlags", *LISTS)) or {}
        path = self.imc_path()
        parts = None if path is None else self.channel.file_version(path)
        return {
            "Parameters": {
                "Path": PS_PARAMETERS,
                "RelayFlags": values.get("RelayFlags"),
                **{n: values.get(n) for n in LISTS},
            },
            # docs/sources.md#exchange55-routing-storage: never guessed
            "Routing": {
                "Source": ROUTING_STORAGE_UNKNOWN,
                "RerouteIncoming": None,
                "RoutingList": None,
            },
            "Service": self.service_document(),
            "ImcFileVersion": None if parts is None else ".".join(str(p) for p in parts),
        }

    def write_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(params) - {"Parameters", "Routing"}
        if unknown:
            raise ValueError(
                f"A parameter cannot be found that matches parameter name '{sorted(unknown)[0]}'."
            )
        if params.get("Routing") is not None:
            raise ValueError(
                "Writing the IMS Routing tab is not supported: its storage is unverified "
                "(docs/sources.md#exchange55-routing-storage)."
            )
        writes = dict(params.get("Parameters") or {})
        for name, value in writes.items():
            _check_value(name, value)
        if writes:
            self.channel.set_values(PARAMETERS_KEY, writes)
        document = self.read_config({})
        document["ImcFileVersion"] = None
        return document

    def restart_service(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        name = str(params.get("Name") or "")
        if name.lower() != IMC_SERVICE.lower():
            raise ValueError(f"Cannot find any service with service name '{name}'.")
        self.channel.restart_service(IMC_SERVICE)
        return self.service_document()

    def file_version(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        path = str(params.get("Path") or "")
        document = _version_document(path, self.channel.file_version(path))
        if document is None:
            raise ValueError(f"Cannot find path '{path}' because it does not exist.")
        return document

    def append_chunk(self, params: Mapping[str, Any]) -> dict[str, Any]:
        path = str(params.get("path") or "")
        chunk = base64.b64decode(str(params.get("chunk_b64") or ""), validate=True)
        length = self.channel.write_file(path, chunk, append=True)
        return {"path": path, "appended": len(chunk), "length": length}

    def remove(self, params: Mapping[str, Any]) -> dict[str, Any]:
        path = str(params.get("path") or "")
        return {"path": path, "removed": self.channel.remove_file(path)}

    def install_patch(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Run the hotfix as a one-shot service, then read msexcimc.exe's version back."""
        path = str(params.get("Path") or "")
        data = self.channel.read_file(path)
        if data is None:
            raise ValueError(f"Cannot find path '{path}' because it does not exist.")
        digest = hashlib.sha256(data).hexdigest().upper()
        expected = params.get("Sha256")
        if expected and str(expected).upper() != digest:
            raise ValueError(
                f"The SHA-256 of '{path}' is {digest}, not the expected {expected}; not installed."
            )
        target = self.imc_path()
        before = None if target is None else self.channel.file_version(target)
        arguments = " ".join(str(a) for a in params.get("Arguments") or ())
        code = self.channel.run_once(f'"{path}" {arguments}'.strip())
        # The installer stops and starts the IMS around the file it replaces: wait until it
        # runs again, as the WinRM payload does before it answers.
        if self.channel.service_state(IMC_SERVICE) is not None:
            self.channel.wait_state(IMC_SERVICE, "Running")
        after = None if target is None else self.channel.file_version(target)
        return {
            "Path": path,
            "Sha256": digest,
            "FileVersionBefore": None if before is None else ".".join(map(str, before)),
            "ExitCode": code,
            "FileVersionAfter": None if after is None else ".".join(map(str, after)),
            "RebootRequired": code == 3010,
        }


def _check_value(name: str, value: Any) -> None:
    if name == "RelayFlags":
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF
        ):
            raise ValueError(f'Cannot convert value "{value}" to type "System.UInt32".')
    elif name in LISTS:
        if value is not None and (
            not isinstance(value, list)
            or not all(isinstance(v, str) and "\0" not in v for v in value)
        ):
            raise ValueError(f'Cannot convert value "{value}" to type "System.String[]".')
    else:
        raise ValueError(f"Property {name} does not exist at path {PS_PARAMETERS}.")


def temp_path(file_name: str) -> str:
    """Where a hotfix is copied on the host: %SystemRoot%\\Temp (ADMIN$\\Temp)."""
    if not _SAFE_FILE.match(file_name):
        raise ValueError(f"not a plain file name: {file_name!r}")
    return f"{TEMP_DIR}\\{file_name}"


def collect_facts_smb(
    options: SmbOptions,
    *,
    as_of: date | None = None,
    connect: Callable[[SmbOptions], Any] | None = None,
) -> ExchangeFacts:
    """`collect_facts` over SMB: the same documents, the same `facts_from_documents`."""
    channel = SmbChannel(options, connect)
    try:
        runner = SmbRunner(channel)
        detect = runner.detect({})
        config = runner.read_config({}) if detect.get("Exchange55") else None
        return facts_from_documents(options.host, detect, config, as_of=as_of or date.today())
    finally:
        channel.close()


def assess_smb(
    options: SmbOptions,
    *,
    as_of: date | None = None,
    policy: PatchPolicy = PatchPolicy.LATEST,
    connect: Callable[[SmbOptions], Any] | None = None,
) -> HostAssessment:
    """`assess` over SMB: collect, then judge with the same rules; errors become `error`."""
    day = as_of or date.today()
    try:
        facts = collect_facts_smb(options, as_of=day, connect=connect)
    except (TransportError, FactsError) as exc:
        return HostAssessment(options.host, None, None, None, error=str(exc))
    return judge(facts, policy=policy, as_of=day)
