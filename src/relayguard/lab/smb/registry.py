"""The twin's HKLM as the remote registry (MS-RRP) shows it, over the twin's state document.

Only the keys an Exchange 5.5 host's IMS is judged by exist here; each read comes from the
same `TwinState` the SMTP listener answers from, and a write changes it (the IMS picks it up
at its next start, KB Q193922). Values (docs/sources.md#kb-q193922, #exchange55-setup-key):

- `SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC\\Parameters`: `RelayFlags` REG_DWORD,
  `RelayAllowList`, `RelayDenyList`, `RelayLocalIPList` REG_MULTI_SZ (absent when None; an
  empty list is an empty REG_MULTI_SZ, not an absent value);
- `SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC`: `ImagePath` (msexcimc.exe), `Start`;
- `SOFTWARE\\Microsoft\\Exchange\\Setup`: `NewestBuild`, `ServicePackBuild` (REG_DWORD);
- two keys every NT host has, which a management host reads through the remote registry:
  `SYSTEM\\CurrentControlSet\\Control\\ComputerName\\ComputerName` (`ComputerName`) and
  `SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion` (`SystemRoot`, C:\\WINNT on NT 4.0 / 2000).

The Routing tab's storage is undocumented (docs/sources.md#exchange55-routing-storage): the
twin does not invent a registry place for it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from relayguard.lab.exchange.state import Exchange55, TwinState

REG_SZ = 1
REG_EXPAND_SZ = 2
REG_DWORD = 4
REG_MULTI_SZ = 7

ERROR_SUCCESS = 0
ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_PARAMETER = 87

PARAMETERS = "SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC\\Parameters"
SERVICE = "SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC"
SETUP = "SOFTWARE\\Microsoft\\Exchange\\Setup"
COMPUTER_NAME = "SYSTEM\\CurrentControlSet\\Control\\ComputerName\\ComputerName"
CURRENT_VERSION = "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion"
SYSTEM_ROOT = "C:\\WINNT"
LISTS = ("RelayAllowList", "RelayDenyList", "RelayLocalIPList")
WRITABLE = ("RelayFlags", *LISTS)


@dataclass(frozen=True)
class RegValue:
    name: str
    type: int
    data: bytes


def imc_image_path(x: Exchange55) -> str:
    return f"{x.InstallPath}\\connect\\msexcimc\\bin\\msexcimc.exe"


def encode_multi_sz(items: list[str]) -> bytes:
    """Each string NUL-terminated and a final NUL (MS-RRP REG_MULTI_SZ); [] is one NUL."""
    return ("".join(f"{item}\0" for item in items) + "\0").encode("utf-16le")


def decode_multi_sz(data: bytes) -> list[str]:
    text = data.decode("utf-16le", errors="replace")
    items: list[str] = []
    for item in text.split("\0"):
        if item == "":
            break  # the terminating empty string
        items.append(item)
    return items


def _dword(value: int) -> bytes:
    return struct.pack("<I", value & 0xFFFFFFFF)


def _sz(text: str) -> bytes:
    return (text + "\0").encode("utf-16le")


def key_exists(state: TwinState, path: str) -> bool:
    if state.exchange55 is None:
        return False
    wanted = path.strip("\\").lower()
    known = (PARAMETERS, SERVICE, SETUP, COMPUTER_NAME, CURRENT_VERSION)
    return any(k.lower() == wanted or k.lower().startswith(wanted + "\\") for k in known)


def values(state: TwinState, path: str) -> dict[str, RegValue]:
    """The values of a key, by lower-case name (empty for a key without values)."""
    x = state.exchange55
    if x is None:
        return {}
    key = path.strip("\\").lower()
    out: list[RegValue] = []
    if key == PARAMETERS.lower():
        p = x.Parameters
        if p.RelayFlags is not None:
            out.append(RegValue("RelayFlags", REG_DWORD, _dword(p.RelayFlags)))
        for name in LISTS:
            items = getattr(p, name)
            if items is not None:
                out.append(RegValue(name, REG_MULTI_SZ, encode_multi_sz(list(items))))
    elif key == SERVICE.lower():
        out.append(RegValue("ImagePath", REG_EXPAND_SZ, _sz(imc_image_path(x))))
        start = {"Automatic": 2, "Manual": 3, "Disabled": 4}[x.Service.StartType]
        out.append(RegValue("Start", REG_DWORD, _dword(start)))
        out.append(RegValue("DisplayName", REG_SZ, _sz(x.Service.DisplayName)))
    elif key == SETUP.lower():
        for name, number in x.setup_values.items():
            out.append(RegValue(name, REG_DWORD, _dword(number)))
    elif key == COMPUTER_NAME.lower():
        out.append(RegValue("ComputerName", REG_SZ, _sz(x.ServerName)))
    elif key == CURRENT_VERSION.lower():
        out.append(RegValue("SystemRoot", REG_SZ, _sz(SYSTEM_ROOT)))
    return {v.name.lower(): v for v in out}


def set_value(state: TwinState, path: str, name: str, kind: int, data: bytes) -> int:
    """Write one value of the Parameters key; the error code the server answers with."""
    x = state.exchange55
    if x is None or path.strip("\\").lower() != PARAMETERS.lower():
        return ERROR_ACCESS_DENIED
    canonical = next((w for w in WRITABLE if w.lower() == name.lower()), None)
    if canonical is None:
        return ERROR_ACCESS_DENIED  # the twin models these values only (lab choice)
    if canonical == "RelayFlags":
        if kind != REG_DWORD or len(data) != 4:
            return ERROR_INVALID_PARAMETER
        x.Parameters.RelayFlags = struct.unpack("<I", data)[0]
        return ERROR_SUCCESS
    if kind != REG_MULTI_SZ:
        return ERROR_INVALID_PARAMETER
    setattr(x.Parameters, canonical, decode_multi_sz(data))
    return ERROR_SUCCESS


def delete_value(state: TwinState, path: str, name: str) -> int:
    x = state.exchange55
    if x is None or path.strip("\\").lower() != PARAMETERS.lower():
        return ERROR_ACCESS_DENIED
    canonical = next((w for w in WRITABLE if w.lower() == name.lower()), None)
    if canonical is None:
        return ERROR_FILE_NOT_FOUND
    if getattr(x.Parameters, canonical) is None:
        return ERROR_FILE_NOT_FOUND
    setattr(x.Parameters, canonical, None)
    return ERROR_SUCCESS
