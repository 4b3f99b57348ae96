"""The `\\PIPE\\svcctl` server of the 5.5 twin: MS-SCMR over the twin's state document.

Opnums served (docs/sources.md#ms-scmr): RCloseServiceHandle 0, RControlService 1,
RDeleteService 2, RQueryServiceStatus 6, RCreateServiceW 12, ROpenSCManagerW 15,
ROpenServiceW 16, RStartServiceW 19.

- MSExchangeIMC: stop sets it Stopped (the SMTP listener goes down); start re-reads the
  registry (KB Q193922: the IMS reads its parameters when it starts) and runs again.
- A service created with a binary path on the twin's disk is the one-shot service PsExec-style
  remote execution uses: starting it runs the program once. A lab patch package
  (`lab.exchange.packages`) installs as the WinRM twin's installer does; then, as Windows does
  for a program that is not a service, the start answers ERROR_SERVICE_REQUEST_TIMEOUT
  (1053) although the program ran: the caller verifies by the file version, not the answer.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from impacket.dcerpc.v5 import scmr

from relayguard.lab.exchange.ops import MSI_BAD_PACKAGE, _applies, _apply_package
from relayguard.lab.exchange.packages import parse_package
from relayguard.lab.exchange.state import TwinState
from relayguard.lab.exchange.store import StateStore
from relayguard.lab.smb.pipes import PipeServer

SCMR_UUID = ("367ABB81-9844-35F1-AD32-98F038001003", "2.0")
IMC = "msexchangeimc"

ERROR_ACCESS_DENIED = 5
ERROR_INVALID_HANDLE = 6
ERROR_SERVICE_REQUEST_TIMEOUT = 1053
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_EXISTS = 1073
ERROR_FILE_NOT_FOUND = 2

Fault = Callable[[str], bool]
DiskPath = Callable[[str], Path | None]  # a Windows path on the twin -> the file behind it


@dataclass
class OneShot:
    name: str
    binary_path: str
    state: int = scmr.SERVICE_STOPPED
    exit_code: int = 0


def _handle_bytes(handle: Any) -> bytes:
    """A parsed SC_RPC_HANDLE: impacket hands its one field (bytes) or the structure."""
    return handle if isinstance(handle, bytes) else bytes(handle["Data"])


def _null_handle() -> Any:
    handle = scmr.SC_RPC_HANDLE()
    handle["Data"] = b"\0" * 20
    return handle


def _text(value: Any) -> str:
    return str(value).rstrip("\0")


def program_of(binary_path: str) -> str:
    """The program of a service command line: quoted, or up to the first space."""
    text = binary_path.strip()
    if text.startswith('"'):
        return text[1:].split('"', 1)[0]
    return text.split(" ", 1)[0]


class SvcctlServer(PipeServer):
    def __init__(
        self,
        store: StateStore,
        disk_path: DiskPath,
        fail: Fault | None = None,
        on_install: Callable[[], None] | None = None,
    ) -> None:
        PipeServer.__init__(self)
        self.on_install = on_install or (lambda: None)
        self.store = store
        self.disk_path = disk_path
        self.fail = fail or (lambda operation: False)
        self._handles: dict[bytes, str] = {}  # handle -> "" (the SCM) or a service name
        self._oneshots: dict[str, OneShot] = {}
        self._lock = threading.Lock()
        self.addCallbacks(
            SCMR_UUID,
            "\\PIPE\\svcctl",
            {
                0: self.close_handle,
                1: self.control_service,
                2: self.delete_service,
                6: self.query_status,
                12: self.create_service,
                15: self.open_sc_manager,
                16: self.open_service,
                19: self.start_service,
            },
        )

    def _new_handle(self, name: str) -> Any:
        handle = _null_handle()
        data = os.urandom(20)
        handle["Data"] = data
        with self._lock:
            self._handles[data] = name
        return handle

    def _service_of(self, handle: Any) -> str | None:
        with self._lock:
            return self._handles.get(_handle_bytes(handle))

    def _status(self, name: str) -> Any:
        status = scmr.SERVICE_STATUS()
        status["dwServiceType"] = scmr.SERVICE_WIN32_OWN_PROCESS
        status["dwCurrentState"] = scmr.SERVICE_STOPPED
        for key in ("dwControlsAccepted", "dwWin32ExitCode", "dwServiceSpecificExitCode"):
            status[key] = 0
        status["dwCheckPoint"] = 0
        status["dwWaitHint"] = 0
        if name == IMC:
            x = self.store.current().exchange55
            if x is not None and x.Service.Status == "Running":
                pending = x.Service.restart_until > time.time()
                status["dwCurrentState"] = (
                    scmr.SERVICE_START_PENDING if pending else scmr.SERVICE_RUNNING
                )
                status["dwControlsAccepted"] = 1  # SERVICE_ACCEPT_STOP
        else:
            with self._lock:
                shot = self._oneshots.get(name)
            if shot is not None:
                status["dwCurrentState"] = shot.state
                status["dwWin32ExitCode"] = shot.exit_code
        return status

    def _exists(self, name: str) -> bool:
        if name == IMC:
            return self.store.current().exchange55 is not None
        with self._lock:
            return name in self._oneshots

    # --- opnums --------------------------------------------------------------------------

    def open_sc_manager(self, data: bytes) -> Any:
        scmr.ROpenSCManagerW(data)
        answer = scmr.ROpenSCManagerWResponse()
        answer["lpScHandle"] = self._new_handle("")
        answer["ErrorCode"] = 0
        return answer

    def open_service(self, data: bytes) -> Any:
        request = scmr.ROpenServiceW(data)
        answer = scmr.ROpenServiceWResponse()
        name = _text(request["lpServiceName"]).lower()
        if self._service_of(request["hSCManager"]) != "":
            answer["lpServiceHandle"] = _null_handle()
            answer["ErrorCode"] = ERROR_INVALID_HANDLE
        elif not self._exists(name):
            answer["lpServiceHandle"] = _null_handle()
            answer["ErrorCode"] = ERROR_SERVICE_DOES_NOT_EXIST
        else:
            answer["lpServiceHandle"] = self._new_handle(name)
            answer["ErrorCode"] = 0
        return answer

    def close_handle(self, data: bytes) -> Any:
        request = scmr.RCloseServiceHandle(data)
        with self._lock:
            self._handles.pop(_handle_bytes(request["hSCObject"]), None)
        answer = scmr.RCloseServiceHandleResponse()
        answer["hSCObject"] = _null_handle()
        answer["ErrorCode"] = 0
        return answer

    def query_status(self, data: bytes) -> Any:
        request = scmr.RQueryServiceStatus(data)
        answer = scmr.RQueryServiceStatusResponse()
        name = self._service_of(request["hService"])
        answer["lpServiceStatus"] = self._status(name or "")
        answer["ErrorCode"] = 0 if name else ERROR_INVALID_HANDLE
        return answer

    def control_service(self, data: bytes) -> Any:
        request = scmr.RControlService(data)
        answer = scmr.RControlServiceResponse()
        name = self._service_of(request["hService"]) or ""
        code = 0
        if name != IMC or request["dwControl"] != scmr.SERVICE_CONTROL_STOP:
            code = ERROR_ACCESS_DENIED  # the twin stops MSExchangeIMC only (lab choice)
        elif self.fail("service.stop"):
            code = ERROR_ACCESS_DENIED
        else:

            def stop(state: TwinState) -> int:
                x = state.exchange55
                assert x is not None
                if x.Service.Status != "Running":
                    return ERROR_SERVICE_NOT_ACTIVE
                x.Service.Status = "Stopped"
                return 0

            code = self.store.update(stop)
        answer["lpServiceStatus"] = self._status(name)
        answer["ErrorCode"] = code
        return answer

    def start_service(self, data: bytes) -> Any:
        request = scmr.RStartServiceW(data)
        answer = scmr.RStartServiceWResponse()
        name = self._service_of(request["hService"]) or ""
        if name == IMC:
            answer["ErrorCode"] = self._start_imc()
        elif name in self._oneshots:
            answer["ErrorCode"] = self._run_oneshot(self._oneshots[name])
        else:
            answer["ErrorCode"] = ERROR_INVALID_HANDLE
        return answer

    def _start_imc(self) -> int:
        if self.fail("service.start"):
            return ERROR_ACCESS_DENIED

        def start(state: TwinState) -> int:
            x = state.exchange55
            assert x is not None
            if x.Service.Status == "Running":
                return ERROR_SERVICE_ALREADY_RUNNING
            x.Service.Status = "Running"
            x.Service.restart_until = time.time() + state.lab.restart_seconds
            x.Running = x.snapshot()  # KB Q193922: parameters are read at start
            return 0

        code: int = self.store.update(start)
        return code

    def _run_oneshot(self, shot: OneShot) -> int:
        path = self.disk_path(program_of(shot.binary_path))
        if path is None or not path.is_file():
            return ERROR_FILE_NOT_FOUND
        package = parse_package(path.read_bytes())
        if self.fail("patch.run") or package is None:
            # the installer cannot open its package: it installs nothing (1620)
            shot.exit_code = MSI_BAD_PACKAGE
            return ERROR_SERVICE_REQUEST_TIMEOUT

        def install(state: TwinState) -> int:
            if not _applies(package, state):
                return 1642  # ERROR_PATCH_TARGET_NOT_FOUND
            return _apply_package(package, state)

        shot.exit_code = self.store.update(install)
        self.on_install()  # the installer replaced msexcimc.exe on the disk
        return ERROR_SERVICE_REQUEST_TIMEOUT  # not a service: it ran, then SCM gave up on it

    def create_service(self, data: bytes) -> Any:
        request = scmr.RCreateServiceW(data)
        answer = scmr.RCreateServiceWResponse()
        answer["lpdwTagId"] = scmr.NULL
        answer["lpServiceHandle"] = _null_handle()
        name = _text(request["lpServiceName"]).lower()
        if self._exists(name):
            answer["ErrorCode"] = ERROR_SERVICE_EXISTS
            return answer
        with self._lock:
            self._oneshots[name] = OneShot(name, _text(request["lpBinaryPathName"]))
        answer["lpServiceHandle"] = self._new_handle(name)
        answer["ErrorCode"] = 0
        return answer

    def delete_service(self, data: bytes) -> Any:
        request = scmr.RDeleteService(data)
        answer = scmr.RDeleteServiceResponse()
        name = self._service_of(request["hService"]) or ""
        with self._lock:
            removed = self._oneshots.pop(name, None)
        answer["ErrorCode"] = 0 if removed is not None else ERROR_ACCESS_DENIED
        return answer
