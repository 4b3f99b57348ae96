"""The op handlers of the Exchange twins for payload protocol v1, and their registry.

Each handler answers with the JSON document the real relayguard script would print on a real
server in the twin's state (docs/payloads.md is the contract), and applies writes to the
state document. `registry()` builds the `OpRegistry` the WinRM endpoint dispatches to; the
twin object handed to each handler is a `TwinContext`.

Lab-only fault injection (`LabKnobs.faults`, persisted in the state) wraps every handler: an
op can fail before it runs, fail after it applied its change (a step that half-ran), or hang.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

from relayguard.lab.exchange import ops55, ops_modern, ops_remote55
from relayguard.lab.exchange.oplib import (
    TwinContext,
    fail,
    require_exchange55,
    require_modern,
    service_document,
    service_of,
)
from relayguard.lab.exchange.packages import LabPackage, parse_package, sha256
from relayguard.lab.exchange.state import (
    Exchange55,
    ExchangeModern,
    Fault,
    InstalledUpdate,
    TwinState,
)
from relayguard.lab.wsman.dispatch import OpError, OpOutput, OpRegistry, OpResult
from relayguard.lab.wsman.scratch import ScratchError

SETUP55_KEY = "HKLM:\\SOFTWARE\\Microsoft\\Exchange\\Setup"
SETUP15_KEY = "HKLM:\\SOFTWARE\\Microsoft\\ExchangeServer\\v15\\Setup"
PATCHES_DIR = "C:\\Patches\\"  # the lab's pre-staged package share, as seen on the host

# msiexec exit codes (Windows Installer error codes)
MSI_SUCCESS = 0
MSI_REBOOT_REQUIRED = 3010
MSI_BAD_PACKAGE = 1620  # "This installation package could not be opened."
MSI_PATCH_TARGET_NOT_FOUND = 1642  # the patch does not apply to the installed product


# ------------------------------------------------------------------ file versions


def imc_path(x: Exchange55) -> str:
    return f"{x.InstallPath}\\connect\\msexcimc\\bin\\msexcimc.exe"


def exsetup_path(m: ExchangeModern) -> str:
    return f"{m.InstallPath}bin\\ExSetup.exe"


def file_version_document(path: str, version: str, *, padded: bool) -> dict[str, Any]:
    """`(Get-Item PATH).VersionInfo`: FileVersion as the resource string, and its four parts.

    Exchange 15's binaries carry a zero-padded FileVersion string ("15.02.1544.004").
    """
    parts = [int(p) for p in version.split(".")]
    text = f"{parts[0]}.{parts[1]:02d}.{parts[2]}.{parts[3]:03d}" if padded else version
    return {
        "Path": path,
        "FileVersion": text,
        "FileMajorPart": parts[0],
        "FileMinorPart": parts[1],
        "FileBuildPart": parts[2],
        "FilePrivatePart": parts[3],
    }


def _files(state: TwinState) -> dict[str, dict[str, Any]]:
    if state.exchange55 is not None:
        x = state.exchange55
        return {
            imc_path(x).lower(): file_version_document(imc_path(x), x.ImcFileVersion, padded=False)
        }
    m = require_modern(state)
    return {
        exsetup_path(m).lower(): file_version_document(
            exsetup_path(m), m.ExSetupVersion, padded=True
        )
    }


def file_version(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    path = params.get("Path")
    if not isinstance(path, str) or not path:
        fail("Cannot bind argument to parameter 'Path' because it is an empty string.")
    found = _files(ctx.store.current()).get(path.lower())
    if found is None:
        fail(f"Cannot find path '{path}' because it does not exist.")
    return found


# ------------------------------------------------------------------ detect


def detect(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    state = ctx.store.current()
    doc: dict[str, Any] = {"ComputerName": "", "Exchange55": None, "Exchange15": None}
    if state.exchange55 is not None:
        x = state.exchange55
        doc["ComputerName"] = x.ServerName
        doc["Exchange55"] = {
            "SetupKey": {"Path": SETUP55_KEY, **x.setup_values},
            "ImcService": service_document(x.Service),
            "Imc": file_version_document(imc_path(x), x.ImcFileVersion, padded=False),
        }
        doc["RebootPending"] = x.RebootRequired
    else:
        m = require_modern(state)
        major, minor, build, revision = (int(p) for p in m.SetupVersion.split("."))
        doc["ComputerName"] = m.ServerName
        doc["Exchange15"] = {
            "SetupKey": {
                "Path": SETUP15_KEY,
                "MsiInstallPath": m.InstallPath,
                "MsiProductMajor": major,
                "MsiProductMinor": minor,
                "MsiBuildMajor": build,
                "MsiBuildMinor": revision,
            },
            "ExSetup": file_version_document(exsetup_path(m), m.ExSetupVersion, padded=True),
            "UpdatesKey": m.updates_key,
            "InstalledUpdates": [
                {"Key": u.Key, "PackageName": u.PackageName, "InstalledDate": u.InstalledDate}
                for u in m.Updates
            ],
            "TransportService": service_document(m.Service),
        }
        doc["RebootPending"] = m.RebootRequired
    return doc


# ------------------------------------------------------------------ services and reboots


def _service_names(state: TwinState) -> set[str]:
    if state.exchange55 is not None:
        return {"msexchangeimc"}
    return {"msexchangefrontendtransport", "msexchangetransport"}


def restart_service(params: dict[str, Any], ctx: TwinContext) -> OpOutput:
    """`Restart-Service NAME`: the SMTP listener is down for `restart_seconds`, the IMS
    re-reads its registry parameters, and the command returns once the service runs."""
    name = params.get("Name")
    state = ctx.store.current()
    if not isinstance(name, str) or name.lower() not in _service_names(state):
        fail(f"Cannot find any service with service name '{name}'.")

    def restart(state: TwinState) -> tuple[dict[str, str], float]:
        seconds = state.lab.restart_seconds
        service = service_of(state)
        service.Status = "Running"
        service.restart_until = time.time() + seconds
        if state.exchange55 is not None:
            state.exchange55.Running = state.exchange55.snapshot()
        return service_document(service), seconds

    document, seconds = ctx.store.update(restart)
    return OpResult(document, delay_seconds=seconds)


def restart_computer(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    """`Restart-Computer -Force`: clears a pending reboot; mail is down while it boots."""

    def reboot(state: TwinState) -> dict[str, Any]:
        x = state.exchange55 or state.modern
        assert x is not None
        x.RebootRequired = False
        x.Service.Status = "Running"
        x.Service.restart_until = time.time() + 2 * state.lab.restart_seconds
        if state.exchange55 is not None:
            state.exchange55.Running = state.exchange55.snapshot()
        return {"ComputerName": x.ServerName, "Restarting": True}

    return ctx.store.update(reboot)


# ------------------------------------------------------------------ the patch installer


def _read_package(path: str, ctx: TwinContext) -> bytes:
    if ctx.scratch is not None:
        try:
            if ctx.scratch.exists(path):
                return ctx.scratch.read(path)
        except ScratchError as exc:
            fail(str(exc))
    if path.lower().startswith(PATCHES_DIR.lower()) and ctx.packages_dir is not None:
        name = path[len(PATCHES_DIR) :]
        candidate = ctx.packages_dir / name
        if "\\" not in name and "/" not in name and candidate.is_file():
            return candidate.read_bytes()
    fail(f"Cannot find path '{path}' because it does not exist.")


def install_patch(params: dict[str, Any], ctx: TwinContext) -> OpOutput:
    """Run the package's installer (msiexec /update /qn for .msp, the .exe's quiet switch)."""
    path = params.get("Path")
    if not isinstance(path, str) or not path:
        fail("Cannot bind argument to parameter 'Path' because it is an empty string.")
    data = _read_package(path, ctx)
    digest = sha256(data)
    expected = params.get("Sha256")
    if expected is not None and (not isinstance(expected, str) or expected.upper() != digest):
        fail(f"The SHA-256 of '{path}' is {digest}, not the expected {expected}; not installed.")
    package = parse_package(data)

    def install(state: TwinState) -> tuple[dict[str, Any], float]:
        before = _target_version(state)
        result: dict[str, Any] = {"Path": path, "Sha256": digest, "FileVersionBefore": before}
        if package is None:
            code, seconds = MSI_BAD_PACKAGE, 0.0
        elif not _applies(package, state):
            code, seconds = MSI_PATCH_TARGET_NOT_FOUND, 0.0
        else:
            code, seconds = _apply_package(package, state), package.InstallSeconds
        x = state.exchange55 or state.modern
        assert x is not None
        result |= {
            "ExitCode": code,
            "FileVersionAfter": _target_version(state),
            "RebootRequired": x.RebootRequired,
        }
        return result, seconds

    document, seconds = ctx.store.update(install)
    return OpResult(document, delay_seconds=seconds)


def _target_version(state: TwinState) -> str:
    doc = next(iter(_files(state).values()))
    return str(doc["FileVersion"])


def _applies(package: LabPackage, state: TwinState) -> bool:
    if state.exchange55 is not None:
        return package.TargetFile.lower() == "msexcimc.exe" and (
            state.exchange55.ProductVersion.startswith(package.AppliesTo + ".")
        )
    m = require_modern(state)
    return package.TargetFile.lower() == "exsetup.exe" and (
        m.SetupVersion.startswith(package.AppliesTo + ".")
    )


def _newer(candidate: str, current: str) -> bool:
    return tuple(int(p) for p in candidate.split(".")) > tuple(int(p) for p in current.split("."))


def _apply_package(package: LabPackage, state: TwinState) -> int:
    """Replace the binary; the installer stops and restarts the service around it."""
    until = time.time() + package.InstallSeconds
    if state.exchange55 is not None:
        x = require_exchange55(state)
        if _newer(package.FileVersion, x.ImcFileVersion):
            x.ImcFileVersion = package.FileVersion
            x.Service.restart_until = until
            x.Running = x.snapshot()
        return MSI_SUCCESS
    m = require_modern(state)
    if not _newer(package.FileVersion, m.ExSetupVersion):
        return MSI_SUCCESS  # already installed: Windows Installer does nothing
    m.ExSetupVersion = package.FileVersion
    m.Service.restart_until = until
    today = datetime.datetime.now(datetime.UTC).date()
    date = f"{today.month}/{today.day}/{today.year}"  # as the installer writes InstalledDate
    m.Updates.append(
        InstalledUpdate(Key=package.KB, PackageName=package.PackageName, InstalledDate=date)
    )
    if package.RebootRequired:
        m.RebootRequired = True
        return MSI_REBOOT_REQUIRED
    return MSI_SUCCESS


# ------------------------------------------------------------------ faults and the registry

Handler = Callable[[dict[str, Any], TwinContext], OpOutput]


def _take_fault(ctx: TwinContext, op: str) -> Fault | None:
    if not any(f.op == op for f in ctx.store.current().lab.faults):
        return None

    def take(state: TwinState) -> Fault | None:
        for fault in state.lab.faults:
            if fault.op == op and fault.count > 0:
                fault.count -= 1
                found = Fault(**fault.__dict__)
                state.lab.faults = [f for f in state.lab.faults if f.count > 0]
                return found
        return None

    return ctx.store.update(take)


def with_faults(op: str, handler: Handler) -> Handler:
    def run(params: dict[str, Any], ctx: TwinContext) -> OpOutput:
        fault = _take_fault(ctx, op)
        if fault is None:
            return handler(params, ctx)
        delay = fault.hang_seconds if fault.mode == "hang" else 0.0
        if fault.after_apply:
            handler(params, ctx)
        raise OpError(fault.message, delay_seconds=delay)

    return run


OPS: dict[str, Handler] = {
    "exchange.detect": detect,
    "exchange.file_version": file_version,
    "exchange.restart_service": restart_service,
    "exchange.restart_computer": restart_computer,
    "exchange.install_patch": install_patch,
    "exchange55.read_config": ops55.read_config,
    "exchange55.write_config": ops55.write_config,
    "modern.read_config": ops_modern.read_config,
    "modern.write_config": ops_modern.write_config,
    **ops_remote55.OPS,
}


def registry() -> OpRegistry[TwinContext]:
    reg: OpRegistry[TwinContext] = OpRegistry()
    for op, handler in OPS.items():
        reg.register(op, with_faults(op, handler))
    return reg
