"""The `remote55.*` ops: any twin playing a Windows management host for an Exchange 5.5 twin.

The real scripts (docs/payloads.md#remote55) run on a management host and reach the 5.5 host
with OpenRemoteBaseKey, Get-Service -ComputerName, sc.exe \\\\host and UNC paths. These
handlers do what those calls do on the wire, through `lab.smb.remote` against the target
twin's SMB endpoint (its winreg, svcctl and C$ / ADMIN$), never through its state document, so
a relayguard run through the management-host twin exercises the remote path end to end. The
documents are the local ops' documents. Errors name the target, as the scripts' do.

Lab model of the second hop: without a "Credential" the management host's WinRM session has no
network credentials (no CredSSP or delegation in the lab) and the target refuses it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import PureWindowsPath
from typing import Any

import pefile

from relayguard.lab.exchange.oplib import TwinContext, fail
from relayguard.lab.smb.remote import RemoteAccount, RemoteError, RemoteHost
from relayguard.lab.wsman.dispatch import OpError, OpOutput
from relayguard.lab.wsman.scratch import ScratchError

IMC_SERVICE_KEY = "SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC"
IMC_PARAMETERS_KEY = IMC_SERVICE_KEY + "\\Parameters"
SETUP55_KEY = "SOFTWARE\\Microsoft\\Exchange\\Setup"
COMPUTER_NAME_KEY = "SYSTEM\\CurrentControlSet\\Control\\ComputerName\\ComputerName"
CURRENT_VERSION_KEY = "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion"
LISTS = ("RelayAllowList", "RelayDenyList", "RelayLocalIPList")
START_TYPES = {2: "Automatic", 3: "Manual", 4: "Disabled"}
ERROR_SERVICE_REQUEST_TIMEOUT = 1053


def _target(params: dict[str, Any]) -> str:
    target = params.get("Target")
    if not isinstance(target, str) or not target or len(target) > 253:
        fail(f"The target '{target}' is not a host name or IPv4 address.")
    return target


def _connect(params: dict[str, Any], ctx: TwinContext) -> RemoteHost:
    target = _target(params)
    credential = params.get("Credential")
    if not isinstance(credential, dict):
        # the second hop: a WinRM session without delegation has no network credentials
        fail(f"cannot open the remote registry of {target}: Access is denied.")
    account = RemoteAccount(str(credential.get("UserName")), str(credential.get("Password")))
    try:
        return RemoteHost(target, ctx.smb_port, account)
    except RemoteError as exc:
        fail(str(exc))


def remote(
    body: Callable[[RemoteHost, dict[str, Any]], OpOutput],
) -> Callable[[dict[str, Any], TwinContext], OpOutput]:
    """A handler: connect (with the credential), run `body`, name the target in any error."""

    def handler(params: dict[str, Any], ctx: TwinContext) -> OpOutput:
        host = _connect(params, ctx)
        try:
            return body(host, params)
        except RemoteError as exc:
            message = str(exc)
            fail(message if host.target in message else f"{host.target}: {message}")
        except OpError as exc:
            if host.target not in exc.message:
                exc.message = f"{host.target}: {exc.message}"
            raise
        finally:
            host.close()

    return handler


def _one(found: dict[str, Any] | None, name: str) -> Any:
    return None if found is None else found.get(name)


def imc_path(host: RemoteHost) -> str | None:
    image = str(_one(host.values(IMC_SERVICE_KEY, ("ImagePath",)), "ImagePath") or "").strip()
    if not image:
        return None
    root = _one(host.values(CURRENT_VERSION_KEY, ("SystemRoot",)), "SystemRoot") or "C:\\WINNT"
    image = _replace_ci(image, "%systemroot%", str(root))
    return image[1:].split('"', 1)[0] if image.startswith('"') else image.split(" ", 1)[0]


def _replace_ci(text: str, old: str, new: str) -> str:
    at = text.lower().find(old)
    return text if at < 0 else text[:at] + new + text[at + len(old) :]


def _unc(host: RemoteHost, local: str) -> tuple[str, str]:
    path = PureWindowsPath(local)
    if len(path.drive) != 2 or ".." in path.parts or len(path.parts) < 2:
        fail(f"'{local}' is not a local absolute path on {host.target}.")
    return f"{path.drive[0].upper()}$", "\\".join(path.parts[1:])


def version_document(host: RemoteHost, local: str) -> dict[str, Any] | None:
    """FileVersionInfo.GetVersionInfo(\\\\target\\C$\\...): the fixed four parts."""
    data = host.read(*_unc(host, local))
    if data is None:
        return None
    try:
        pe = pefile.PE(data=data, fast_load=True)
        pe.parse_data_directories(
            directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_RESOURCE"]]
        )
        fixed = pe.VS_FIXEDFILEINFO[0]
    except (pefile.PEFormatError, AttributeError, IndexError):
        parts = (0, 0, 0, 0)  # GetVersionInfo of a file without a version resource
    else:
        ms, ls = fixed.FileVersionMS, fixed.FileVersionLS
        parts = (ms >> 16, ms & 0xFFFF, ls >> 16, ls & 0xFFFF)
    return {
        "Path": local,
        "FileVersion": ".".join(str(p) for p in parts),
        "FileMajorPart": parts[0],
        "FileMinorPart": parts[1],
        "FileBuildPart": parts[2],
        "FilePrivatePart": parts[3],
    }


def service_document(host: RemoteHost) -> dict[str, Any] | None:
    state = host.service("MSExchangeIMC")
    if state is None:
        return None
    found = host.values(IMC_SERVICE_KEY, ("Start", "DisplayName"))
    return {
        "Name": "MSExchangeIMC",
        "DisplayName": _one(found, "DisplayName"),
        "Status": state[0],
        "StartType": START_TYPES.get(int(_one(found, "Start") or 0)),
    }


def config_document(host: RemoteHost) -> dict[str, Any]:
    values = host.values(IMC_PARAMETERS_KEY, ("RelayFlags", *LISTS))
    return {
        "Parameters": {
            "Path": "HKLM:\\" + IMC_PARAMETERS_KEY,
            "RelayFlags": _one(values, "RelayFlags"),
            **{name: _one(values, name) for name in LISTS},
        },
        "Routing": {"Source": "unknown", "RerouteIncoming": None, "RoutingList": None},
        "Service": service_document(host),
        "ImcFileVersion": None,
    }


def _require_exchange55(host: RemoteHost) -> None:
    with host.key(IMC_SERVICE_KEY) as handle:
        if handle is None:
            fail(f"Exchange Server 5.5 is not installed on {host.target}.")


def detect(host: RemoteHost, params: dict[str, Any]) -> OpOutput:
    name = _one(host.values(COMPUTER_NAME_KEY, ("ComputerName",)), "ComputerName")
    setup = host.values(SETUP55_KEY, ("NewestBuild", "ServicePackBuild"))
    with host.key(IMC_SERVICE_KEY) as handle:
        has_service = handle is not None
    exchange55 = None
    if setup is not None or has_service:
        path = imc_path(host)
        exchange55 = {
            "SetupKey": {
                "Path": "HKLM:\\" + SETUP55_KEY,
                "NewestBuild": _one(setup, "NewestBuild"),
                "ServicePackBuild": _one(setup, "ServicePackBuild"),
            },
            "ImcService": service_document(host),
            "Imc": None if path is None else version_document(host, path),
        }
    return {
        "ComputerName": str(name or host.target),
        "Exchange55": exchange55,
        "Exchange15": None,
        "RebootPending": None,
    }


def read_config(host: RemoteHost, params: dict[str, Any]) -> OpOutput:
    _require_exchange55(host)
    document = config_document(host)
    path = imc_path(host)
    version = None if path is None else version_document(host, path)
    document["ImcFileVersion"] = None if version is None else version["FileVersion"]
    return document


def write_config(host: RemoteHost, params: dict[str, Any]) -> OpOutput:
    unknown = set(params) - {"Target", "Credential", "Parameters", "Routing"}
    if unknown:
        fail(f"A parameter cannot be found that matches parameter name '{sorted(unknown)[0]}'.")
    if params.get("Routing") is not None:
        fail(
            "Writing the IMS Routing tab is not supported: its storage is unverified "
            "(docs/sources.md#exchange55-routing-storage)."
        )
    _require_exchange55(host)
    writes = dict(params.get("Parameters") or {})
    for name, value in writes.items():
        if name == "RelayFlags":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32
            ):
                fail(f'Cannot convert value "{value}" to type "System.UInt32".')
        elif name in LISTS:
            if value is not None and (
                not isinstance(value, list) or not all(isinstance(v, str) for v in value)
            ):
                fail(f'Cannot convert value "{value}" to type "System.String[]".')
        else:
            fail(f"Property {name} does not exist at path HKLM:\\{IMC_PARAMETERS_KEY}.")
    if writes:
        host.write(IMC_PARAMETERS_KEY, writes)
    return config_document(host)


def _wait(host: RemoteHost, name: str, wanted: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while True:
        found = host.service(name)
        state = "missing" if found is None else found[0]
        if state == wanted or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def restart_service(host: RemoteHost, params: dict[str, Any]) -> OpOutput:
    name = str(params.get("Name") or "")
    if name != "MSExchangeIMC":
        fail(f"Cannot find any service with service name '{name}'.")
    seconds = float(params.get("TimeoutSeconds") or 120)
    found = host.service(name)
    if found is None:
        fail(f"Cannot find any service with service name '{name}'.")
    if found[0] != "Stopped":
        host.control(name, "stop")
        if _wait(host, name, "Stopped", seconds) != "Stopped":
            fail(f"Service '{name}' on '{host.target}' did not stop: Time out has expired.")
    code = host.control(name, "start")
    if code != 0:
        fail(f"Cannot start service {name} on computer '{host.target}'. (error {code})")
    if _wait(host, name, "Running", seconds) != "Running":
        fail(f"Service '{name}' on '{host.target}' did not start: Time out has expired.")
    document = service_document(host)
    if document is None:
        fail(f"Cannot find any service with service name '{name}'.")
    return document


def file_version(host: RemoteHost, params: dict[str, Any]) -> OpOutput:
    path = str(params.get("Path") or "")
    document = version_document(host, path)
    if document is None:
        fail(f"Cannot find path '{path}' on {host.target} because it does not exist.")
    return document


def install_patch(ctx: TwinContext) -> Callable[[RemoteHost, dict[str, Any]], OpOutput]:
    def run(host: RemoteHost, params: dict[str, Any]) -> OpOutput:
        source = str(params.get("Path") or "")
        try:
            data = None if ctx.scratch is None else ctx.scratch.read(source)
        except (ScratchError, OSError):
            data = None
        if data is None:
            fail(f"Cannot find path '{source}' because it does not exist.")
        name = PureWindowsPath(source).name
        digest = hashlib.sha256(data).hexdigest().upper()
        expected = params.get("Sha256")
        if expected and str(expected).upper() != digest:
            fail(
                f"The SHA-256 of '{source}' is {digest}, not the expected {expected}; "
                "not installed."
            )
        seconds = float(params.get("TimeoutSeconds") or 600)
        _require_exchange55(host)
        path = imc_path(host)
        before = None if path is None else version_document(host, path)
        host.put("ADMIN$", f"Temp\\{name}", data)  # Copy-Item to \\target\ADMIN$\Temp
        try:
            if hashlib.sha256(host.read("ADMIN$", f"Temp\\{name}") or b"").hexdigest().upper() != (
                digest
            ):
                fail(f"The copy of '{name}' on {host.target} does not match its SHA-256.")
            arguments = [str(a) for a in params.get("Arguments") or ()]
            service = "relayguard-" + os.urandom(4).hex()
            host.create_service(service, " ".join([f"%SystemRoot%\\Temp\\{name}", *arguments]))
            try:
                code = host.control(service, "start")
                if code not in (0, ERROR_SERVICE_REQUEST_TIMEOUT):
                    fail(f"sc.exe \\\\{host.target} start failed with error {code}.")
                _wait(host, service, "Stopped", seconds)
                state = host.service(service)
                exit_code = 0 if state is None else state[1]
            finally:
                host.delete_service(service)
        finally:
            host.remove("ADMIN$", f"Temp\\{name}")
        if host.service("MSExchangeIMC") is not None:
            _wait(host, "MSExchangeIMC", "Running", seconds)
        after = None if path is None else version_document(host, path)
        return {
            "Path": source,
            "Sha256": digest,
            "FileVersionBefore": None if before is None else before["FileVersion"],
            "ExitCode": exit_code,
            "FileVersionAfter": None if after is None else after["FileVersion"],
            "RebootRequired": exit_code == 3010,
        }

    return run


def _install(params: dict[str, Any], ctx: TwinContext) -> OpOutput:
    return remote(install_patch(ctx))(params, ctx)


OPS: dict[str, Callable[[dict[str, Any], TwinContext], OpOutput]] = {
    "remote55.detect": remote(detect),
    "remote55.read_config": remote(read_config),
    "remote55.write_config": remote(write_config),
    "remote55.restart_service": remote(restart_service),
    "remote55.file_version": remote(file_version),
    "remote55.install_patch": _install,
}
