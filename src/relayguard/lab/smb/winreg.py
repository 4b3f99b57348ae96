"""The `\\PIPE\\winreg` server of the 5.5 twin: MS-RRP over the twin's state document.

Follows impacket's own `DCERPCServer` pipe servers (srvsvc, wkssvc in impacket.smbserver):
one callback per opnum, request and response structures from `impacket.dcerpc.v5.rrp`.
Opnums served (docs/sources.md#ms-rrp): OpenLocalMachine 2, BaseRegCloseKey 5,
BaseRegDeleteValue 8, BaseRegOpenKey 15, BaseRegQueryInfoKey 16, BaseRegQueryValue 17,
BaseRegSetValue 22, BaseRegGetVersion 26. Every call reads or updates the state through the
store, under its lock, so the SMTP listener, the WinRM twin and this pipe see one document.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from impacket.dcerpc.v5 import rrp
from impacket.dcerpc.v5.ndr import NULL

from relayguard.lab.exchange.store import StateStore
from relayguard.lab.smb import registry
from relayguard.lab.smb.pipes import PipeServer

ERROR_MORE_DATA = 234
ERROR_INVALID_HANDLE = 6
RRP_UUID = ("338CD001-2244-31F1-AAAA-900038001003", "1.0")

Fault = Callable[[str], bool]  # (operation) -> True to fail it (the fault matrix)


def _text(value: Any) -> str:
    return str(value).rstrip("\0")


def _pointer(field: Any) -> Any | None:
    """A parsed unique pointer's referent (impacket hands the referent itself), or None for
    a NULL pointer (impacket leaves b"")."""
    return None if field is None or (isinstance(field, bytes) and field == b"") else field


class WinregServer(PipeServer):
    """MS-RRP on one loopback port; the SMB server forwards the `winreg` pipe to it."""

    def __init__(self, store: StateStore, fail: Fault | None = None) -> None:
        PipeServer.__init__(self)
        self.store = store
        self.fail = fail or (lambda operation: False)
        self._handles: dict[bytes, str] = {}
        self._lock = threading.Lock()
        self.addCallbacks(
            RRP_UUID,
            "\\PIPE\\winreg",
            {
                2: self.open_local_machine,
                5: self.close_key,
                8: self.delete_value,
                15: self.open_key,
                16: self.query_info_key,
                17: self.query_value,
                22: self.set_value,
                26: self.get_version,
            },
        )

    # --- handles -------------------------------------------------------------------------

    def _new_handle(self, path: str) -> rrp.RPC_HKEY:
        handle = rrp.RPC_HKEY()
        uuid = os.urandom(16)
        handle["context_handle_uuid"] = uuid
        with self._lock:
            self._handles[uuid] = path
        return handle

    def _path(self, handle: Any) -> str | None:
        with self._lock:
            return self._handles.get(bytes(handle["context_handle_uuid"]))

    # --- opnums --------------------------------------------------------------------------

    def open_local_machine(self, data: bytes) -> Any:
        rrp.OpenLocalMachine(data)
        answer = rrp.OpenLocalMachineResponse()
        answer["phKey"] = self._new_handle("")
        answer["ErrorCode"] = 0
        return answer

    def close_key(self, data: bytes) -> Any:
        request = rrp.BaseRegCloseKey(data)
        with self._lock:
            self._handles.pop(bytes(request["hKey"]["context_handle_uuid"]), None)
        answer = rrp.BaseRegCloseKeyResponse()
        answer["hKey"] = rrp.RPC_HKEY()
        answer["ErrorCode"] = 0
        return answer

    def open_key(self, data: bytes) -> Any:
        request = rrp.BaseRegOpenKey(data)
        answer = rrp.BaseRegOpenKeyResponse()
        answer["phkResult"] = rrp.RPC_HKEY()
        base = self._path(request["hKey"])
        if base is None:
            answer["ErrorCode"] = ERROR_INVALID_HANDLE
            return answer
        sub = _text(request["lpSubKey"]).strip("\\")
        path = f"{base}\\{sub}".strip("\\") if base else sub
        if not registry.key_exists(self.store.current(), path):
            answer["ErrorCode"] = registry.ERROR_FILE_NOT_FOUND
            return answer
        answer["phkResult"] = self._new_handle(path)
        answer["ErrorCode"] = 0
        return answer

    def query_info_key(self, data: bytes) -> Any:
        request = rrp.BaseRegQueryInfoKey(data)
        answer = rrp.BaseRegQueryInfoKeyResponse()
        path = self._path(request["hKey"])
        found = registry.values(self.store.current(), path or "")
        answer["lpClassOut"] = NULL
        answer["lpcSubKeys"] = 0
        answer["lpcbMaxSubKeyLen"] = 0
        answer["lpcbMaxClassLen"] = 0
        answer["lpcValues"] = len(found)
        answer["lpcbMaxValueNameLen"] = max((len(v.name) * 2 for v in found.values()), default=0)
        answer["lpcbMaxValueLen"] = max((len(v.data) for v in found.values()), default=0)
        answer["lpcbSecurityDescriptor"] = 0
        answer["lpftLastWriteTime"]["dwLowDateTime"] = 0
        answer["lpftLastWriteTime"]["dwHighDateTime"] = 0
        answer["ErrorCode"] = 0 if path is not None else ERROR_INVALID_HANDLE
        return answer

    def query_value(self, data: bytes) -> Any:
        request = rrp.BaseRegQueryValue(data)
        answer = rrp.BaseRegQueryValueResponse()
        path = self._path(request["hKey"])
        value = None
        if path is not None:
            value = registry.values(self.store.current(), path).get(
                _text(request["lpValueName"]).lower()
            )
        if value is None:
            answer["lpType"] = NULL
            answer["lpData"] = NULL
            answer["lpcbData"] = NULL
            answer["lpcbLen"] = NULL
            answer["ErrorCode"] = (
                ERROR_INVALID_HANDLE if path is None else registry.ERROR_FILE_NOT_FOUND
            )
            return answer
        size = len(value.data)
        answer["lpType"] = value.type
        answer["lpcbData"] = size
        answer["lpcbLen"] = size
        wants_data = _pointer(request["lpData"]) is not None
        room = _pointer(request["lpcbData"]) or 0
        if not wants_data:
            answer["lpData"] = NULL
            answer["ErrorCode"] = 0
        elif room < size:
            answer["lpData"] = NULL
            answer["ErrorCode"] = ERROR_MORE_DATA
        else:
            answer["lpData"] = [value.data[i : i + 1] for i in range(size)]
            answer["ErrorCode"] = 0
        return answer

    def set_value(self, data: bytes) -> Any:
        request = rrp.BaseRegSetValue(data)
        answer = rrp.BaseRegSetValueResponse()
        path = self._path(request["hKey"])
        if path is None:
            answer["ErrorCode"] = ERROR_INVALID_HANDLE
            return answer
        if self.fail("registry.set"):
            answer["ErrorCode"] = registry.ERROR_ACCESS_DENIED
            return answer
        name = _text(request["lpValueName"])
        raw = b"".join(
            item if isinstance(item, bytes) else bytes([item]) for item in request["lpData"]
        )
        payload = raw[: request["cbData"]]
        kind = request["dwType"]
        answer["ErrorCode"] = self.store.update(
            lambda state: registry.set_value(state, path, name, kind, payload)
        )
        return answer

    def delete_value(self, data: bytes) -> Any:
        request = rrp.BaseRegDeleteValue(data)
        answer = rrp.BaseRegDeleteValueResponse()
        path = self._path(request["hKey"])
        if path is None:
            answer["ErrorCode"] = ERROR_INVALID_HANDLE
            return answer
        if self.fail("registry.set"):
            answer["ErrorCode"] = registry.ERROR_ACCESS_DENIED
            return answer
        name = _text(request["lpValueName"])
        answer["ErrorCode"] = self.store.update(
            lambda state: registry.delete_value(state, path, name)
        )
        return answer

    def get_version(self, data: bytes) -> Any:
        rrp.BaseRegGetVersion(data)
        answer = rrp.BaseRegGetVersionResponse()
        answer["lpdwVersion"] = 5
        answer["ErrorCode"] = 0
        return answer
