"""Bring an Exchange server to a required fix level: decide (pure), upload, install, verify.

The fix level is the file version of the binary Microsoft's fixes replace: `msexcimc.exe` for
the Exchange 5.5 IMS (MS99-027 is fixed from 5.5.2650.1, KB Q237927) and `ExSetup.exe` for
2013 and later (HealthChecker reads it; the v15 Setup values stay at the CU). `patch_decision`
says whether a package is needed and whether it can apply; `install_patch` uploads a package
from the controller when asked (over WinRM in bulk on a command's stdin, `upload_file`; over
SMB in `file.append_chunk` pieces), runs `exchange.install_patch` (the script checks the
SHA-256 again on the host and stops/starts MSExchangeIMC around a 5.5 hotfix), checks the
installer's exit code and the file version after, and reboots only when told to (also a
reboot an earlier run's install left pending). When the install command itself fails (a
dropped connection, a hang, an error), it may have run: the file version is read again so the
error says whether the package is installed, and `PatchError.changed` says the same.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relayguard.exchange import payloads
from relayguard.exchange.apply import SmtpWait, wait_for_smtp
from relayguard.exchange.current import FileUploader, PayloadRunner, ReadError, read_detect
from relayguard.exchange.desired import controller_path, host_path, sha256_hex, version
from relayguard.exchange.transport import (
    DEFAULT_REMOTE_TEMP_DIR,
    TransportError,
    max_chunk_bytes,
)
from relayguard.validate import InputError
from relayguard.vocabulary import ExchangeGeneration

Version = tuple[int, int, int, int]

# Windows Installer exit codes (learn.microsoft.com, "MsiExec.exe and InstMsi.exe error messages")
MSI_SUCCESS = 0
MSI_REBOOT_REQUIRED = 3010
MSI_BAD_PACKAGE = 1620
MSI_PATCH_TARGET_NOT_FOUND = 1642
SUCCESS_CODES = (MSI_SUCCESS, MSI_REBOOT_REQUIRED)

# Quiet switches of .exe packages when the operator gives none. Unverified for the 1999-era
# IMS hotfix packages (hotfix.exe style: -q quiet, -z no reboot); Exchange SU .exe packages
# accept /passive (Microsoft's SU release notes). Override with installer_arguments.
DEFAULT_EXE_ARGUMENTS = {
    ExchangeGeneration.EXCHANGE55: ("-q", "-z"),
    ExchangeGeneration.MODERN: ("/passive", "/norestart"),
}
_SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")


class PatchError(Exception):
    """The patch is refused or failed; `changed` says whether the host may have changed,
    `version_after` the binary's version read after the attempt, when it was read."""

    def __init__(
        self, message: str, *, changed: bool = False, version_after: str | None = None
    ) -> None:
        super().__init__(message)
        self.changed = changed
        self.version_after = version_after


@dataclass(frozen=True)
class PatchRequest:
    sha256: str
    target_version: Version
    minimum_version: Version
    package_path: str | None = None  # on the host, or a UNC path
    package_src: str | None = None  # on the controller: uploaded in chunks
    installer_arguments: tuple[str, ...] | None = None
    reboot: bool = False

    @property
    def package_name(self) -> str:
        source = self.package_path or self.package_src or ""
        return re.split(r"[\\/]", source)[-1]


def patch_request(
    *,
    sha256: object,
    target_version: object,
    minimum_version: object = None,
    package_path: object = None,
    package_src: object = None,
    installer_arguments: object = None,
    reboot: object = False,
) -> PatchRequest:
    """Validate every option (InputError names the first bad one)."""
    if (package_path is None) == (package_src is None):
        raise InputError(
            "package_path", package_path, "give exactly one of package_path and package_src"
        )
    host = None
    src = None
    suffixes = (".msp", ".exe")
    if package_path is not None:
        host = host_path("package_path", package_path, suffixes=suffixes)
    else:
        src = controller_path("package_src", package_src)
        name = Path(src).name
        if not _SAFE_FILE_NAME.match(name) or not name.lower().endswith(suffixes):
            raise InputError(
                "package_src", package_src, "needs a plain file name ending in .msp or .exe"
            )
    target = version("target_version", target_version)
    minimum = target if minimum_version is None else version("minimum_version", minimum_version)
    if minimum > target:
        raise InputError(
            "minimum_version",
            minimum_version,
            "is above target_version: the package cannot reach it",
        )
    arguments = None
    if installer_arguments is not None:
        if isinstance(installer_arguments, str) or not isinstance(installer_arguments, Sequence):
            raise InputError("installer_arguments", installer_arguments, "is not a list")
        for item in installer_arguments:
            if not isinstance(item, str) or not re.fullmatch(r"[A-Za-z0-9/:=._-]{1,64}", item):
                raise InputError(
                    "installer_arguments", item, "is not a plain switch (letters, digits, /:=._-)"
                )
        arguments = tuple(installer_arguments)
    if not isinstance(reboot, bool):
        raise InputError("reboot", reboot, "is not a boolean")
    return PatchRequest(
        sha256=sha256_hex("sha256", sha256),
        target_version=target,
        minimum_version=minimum,
        package_path=host,
        package_src=src,
        installer_arguments=arguments,
        reboot=reboot,
    )


@dataclass(frozen=True)
class PatchDecision:
    platform: ExchangeGeneration
    binary: str
    installed: Version
    needed: bool
    reason: str


def _parts(document: Mapping[str, Any]) -> Version:
    return (
        int(document["FileMajorPart"]),
        int(document["FileMinorPart"]),
        int(document["FileBuildPart"]),
        int(document["FilePrivatePart"]),
    )


def version_text(value: Version) -> str:
    return ".".join(str(p) for p in value)


def parse_file_version(text: object) -> Version | None:
    """A FileVersion resource string ("15.02.1544.014", "5.5.2650.1") as numbers."""
    if not isinstance(text, str) or not re.fullmatch(r"\d+(\.\d+){3}", text.strip()):
        return None
    a, b, c, d = (int(p) for p in text.strip().split("."))
    return (a, b, c, d)


def patch_decision(detect: Mapping[str, Any], request: PatchRequest) -> PatchDecision:
    """Pure: is the package needed, and can it apply to this product and CU?"""
    name = request.package_name.lower()
    if detect.get("Exchange55"):
        imc = detect["Exchange55"].get("Imc")
        if not imc:
            raise PatchError("Exchange 5.5 without msexcimc.exe: the IMS is not installed")
        installed = _parts(imc)
        platform, binary = ExchangeGeneration.EXCHANGE55, "msexcimc.exe"
        if request.target_version[:2] != (5, 5):
            raise PatchError(
                f"the package yields {version_text(request.target_version)}, not an Exchange "
                f"5.5 build; the server runs msexcimc.exe {version_text(installed)}"
            )
        if not name.endswith(".exe"):
            raise PatchError("an Exchange 5.5 IMS hotfix is an .exe package")
    elif detect.get("Exchange15"):
        exsetup = detect["Exchange15"].get("ExSetup")
        if not exsetup:
            raise PatchError("ExSetup.exe not found: cannot read the installed build")
        installed = _parts(exsetup)
        platform, binary = ExchangeGeneration.MODERN, "ExSetup.exe"
        if request.target_version[:3] != installed[:3]:
            raise PatchError(
                f"the package yields {version_text(request.target_version)} but the server "
                f"runs build {version_text(installed)}: a security update applies only to "
                "its own CU"
            )
    else:
        raise PatchError("no Exchange found on the host")
    if installed >= request.minimum_version:
        return PatchDecision(
            platform,
            binary,
            installed,
            False,
            f"{binary} {version_text(installed)} already meets "
            f"{version_text(request.minimum_version)}",
        )
    return PatchDecision(
        platform,
        binary,
        installed,
        True,
        f"{binary} {version_text(installed)} is below {version_text(request.minimum_version)}",
    )


@dataclass
class PatchResult:
    changed: bool
    decision: PatchDecision
    version_before: str
    version_after: str
    exit_code: int | None = None
    reboot_required: bool = False
    rebooted: bool = False
    package_path: str | None = None
    messages: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "platform": self.decision.platform,
            "binary": self.decision.binary,
            "reason": self.decision.reason,
            "version_before": self.version_before,
            "version_after": self.version_after,
            "exit_code": self.exit_code,
            "reboot_required": self.reboot_required,
            "rebooted": self.rebooted,
            "package_path": self.package_path,
            "messages": list(self.messages),
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().upper()


def upload(client: PayloadRunner, data: bytes, remote: str) -> None:
    """Write `data` to `remote`: in bulk where the transport can (WinRM: one command, the
    file on its stdin, length and SHA-256 checked on the host), else in chunks."""
    if isinstance(client, FileUploader):
        client.upload_file(data, remote)
        return
    upload_in_chunks(client, data, remote)


def upload_in_chunks(client: PayloadRunner, data: bytes, remote: str) -> None:
    """Write `data` to `remote` with file.append_chunk, checking the length after each chunk
    (a transport without stdin: the SMB channel's `SmbRunner`)."""
    size = max_chunk_bytes(remote)
    held = 0
    for start in range(0, len(data), size):
        chunk = data[start : start + size]
        answer = client.run_payload(
            payloads.render(
                "file.append_chunk",
                {"path": remote, "chunk_b64": base64.b64encode(chunk).decode("ascii")},
            )
        )
        held += len(chunk)
        if not isinstance(answer, dict) or answer.get("length") != held:
            raise PatchError(f"uploading to {remote}: the file does not hold the bytes sent")


def install_patch(
    client: PayloadRunner,
    request: PatchRequest,
    *,
    check_mode: bool = False,
    smtp: SmtpWait | None = None,
    remote_temp_dir: str = DEFAULT_REMOTE_TEMP_DIR,
) -> PatchResult:
    detect = read_detect(client)
    decision = patch_decision(detect, request)
    before = version_text(decision.installed)
    result = PatchResult(False, decision, before, before)
    if not decision.needed:
        result.reboot_required = bool(detect.get("RebootPending"))
        if result.reboot_required and request.reboot:
            # Installed, but the reboot it needs never happened (an earlier run failed at
            # the reboot): finish the job, as the install would have.
            result.changed = True
            if not check_mode:
                _reboot_or_fail(client, smtp, result, f"{decision.binary} is {before}")
        return result
    data = None
    if request.package_src is not None:
        local = Path(request.package_src)
        if not local.is_file():
            raise PatchError(f"package_src: {request.package_src!r} is not a file")
        digest = file_sha256(local)
        if digest != request.sha256:
            raise PatchError(
                f"package_src: the SHA-256 of {request.package_src!r} is {digest}, not the "
                f"expected {request.sha256}; not uploaded, not installed"
            )
        data = local.read_bytes()
    result.changed = True
    if check_mode:
        return result
    remote = request.package_path
    if data is not None:
        directory = remote_temp_dir.rstrip("\\")
        remote = f"{directory}\\relayguard-{uuid.uuid4().hex}-{request.package_name}"
        upload(client, data, remote)
    assert remote is not None
    result.package_path = remote
    params: dict[str, Any] = {"Path": remote, "Sha256": request.sha256}
    if decision.platform is ExchangeGeneration.EXCHANGE55:
        params["Service"] = "MSExchangeIMC"
    if remote.lower().endswith(".exe"):
        params["Arguments"] = list(
            request.installer_arguments or DEFAULT_EXE_ARGUMENTS[decision.platform]
        )
    install = payloads.render("exchange.install_patch", params)
    try:
        output = client.run_payload(install)
    except (TransportError, payloads.PayloadError) as exc:
        what = f"installing {request.package_name} failed: {exc}"
        raise _install_failed(client, request, decision, what) from None
    finally:
        if data is not None:
            _remove_upload(client, remote, result)
    code = output.get("ExitCode") if isinstance(output, dict) else None
    result.exit_code = code if isinstance(code, int) else None
    if code == MSI_PATCH_TARGET_NOT_FOUND:
        raise PatchError(
            f"the installer says the package does not apply to this product or CU (exit {code}); "
            "nothing was installed"
        )
    if code == MSI_BAD_PACKAGE:
        raise PatchError(
            f"the installer cannot open the package (exit {code}); nothing was installed"
        )
    if code not in SUCCESS_CODES:
        raise PatchError(f"the installer failed with exit code {code}", changed=True)
    after = parse_file_version(output.get("FileVersionAfter"))
    result.version_after = version_text(after) if after else str(output.get("FileVersionAfter"))
    if after is None or after < request.minimum_version:
        raise PatchError(
            f"after the install {decision.binary} is {result.version_after}, below "
            f"{version_text(request.minimum_version)}",
            changed=True,
            version_after=result.version_after,
        )
    result.reboot_required = bool(output.get("RebootRequired"))
    installed = f"installed {result.version_after}"
    try:
        wait_for_smtp(smtp)
    except TransportError as exc:
        raise PatchError(
            f"{installed}; waiting for SMTP failed: {exc}",
            changed=True,
            version_after=result.version_after,
        ) from None
    if result.reboot_required and request.reboot:
        _reboot_or_fail(client, smtp, result, installed)
    return result


def _reboot_or_fail(
    client: PayloadRunner, smtp: SmtpWait | None, result: PatchResult, done: str
) -> None:
    """Restart the server and wait for SMTP; a failure says what was done before it."""
    try:
        client.run_payload(payloads.render("exchange.restart_computer", {}))
        wait_for_smtp(smtp)
    except (TransportError, payloads.PayloadError) as exc:
        raise PatchError(
            f"{done}; the reboot failed: {exc}; a rerun reboots it if one is still pending",
            changed=True,
            version_after=result.version_after,
        ) from None
    result.rebooted = True
    result.reboot_required = False


def _remove_upload(client: PayloadRunner, remote: str, result: PatchResult) -> None:
    """Remove an uploaded package; a failure is noted, never raised over the install's."""
    try:
        client.run_payload(payloads.render("file.remove", {"path": remote}))
    except (TransportError, payloads.PayloadError) as exc:
        result.messages.append(f"the uploaded package {remote} was left on the host: {exc}")


def _install_failed(
    client: PayloadRunner, request: PatchRequest, decision: PatchDecision, what: str
) -> PatchError:
    """The install command failed (dropped, timed out, errored): it may have run, so read
    the file version again and say whether the package is installed."""
    was = version_text(decision.installed)
    try:
        now = patch_decision(read_detect(client), request).installed
    except (TransportError, ReadError, PatchError, payloads.PayloadError) as exc:
        return PatchError(
            f"{what}; reading {decision.binary} again failed too ({exc}): the package may "
            f"or may not be installed, a rerun finds out",
            changed=True,
        )
    if now == decision.installed:
        return PatchError(
            f"{what}; {decision.binary} is still {was}: nothing was installed", version_after=was
        )
    return PatchError(
        f"{what}; {decision.binary} is now {version_text(now)}: the package was installed "
        f"(was {was})",
        changed=True,
        version_after=version_text(now),
    )
