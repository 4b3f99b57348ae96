"""Exchange 5.5 through a Windows management host: WinRM to it, the 5.5 host reached from there.

Where a site keeps a Windows management host (Windows Server 2008 R2 or later, Windows
PowerShell 3.0 or later) that reaches its NT 4.0 / 2000 Exchange 5.5 hosts, relayguard can run
its payloads there instead of speaking SMB from the controller: the `remote55.*` templates
read and write the 5.5 host's IMS registry values with `RegistryKey.OpenRemoteBaseKey`, its
MSExchangeIMC service with `Get-Service -ComputerName` / ServiceController, msexcimc.exe's
version from `\\\\host\\C$` with `FileVersionInfo.GetVersionInfo`, and run a hotfix copied to
`\\\\host\\ADMIN$\\Temp` as a one-shot service with `sc.exe \\\\host`
(docs/sources.md#management-host-apis). On the wire to the 5.5 host that is the same MS-RRP,
MS-SCMR and SMB the SMB channel speaks.

`ManagementHostRunner` is a `PayloadRunner`: it takes the same payloads every room renders for
a 5.5 host (`exchange.detect`, `exchange55.read_config`, ...), re-renders each as its
`remote55.*` op with the target (and its credential, when given) added, and runs it over
WinRM on the management host. The documents are the local ops' documents, so facts, the rule
table, apply/rollback and patching run unchanged: same rules, same facts. Packages are
uploaded to the management host (`upload_file` in bulk over its WinRM, `file.*` run there)
and copied on by `remote55.install_patch`.
Every failure names the target and the management host; the target password never appears.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relayguard.exchange import payloads
from relayguard.exchange.current import FileUploader, PayloadRunner, held_session
from relayguard.exchange.transport import FailureCause, Secret, TransportError

# The ops a 5.5 host needs, and the op that does the same from a management host.
REMOTE_OPS = {
    "exchange.detect": "remote55.detect",
    "exchange55.read_config": "remote55.read_config",
    "exchange55.write_config": "remote55.write_config",
    "exchange.restart_service": "remote55.restart_service",
    "exchange.file_version": "remote55.file_version",
    "exchange.install_patch": "remote55.install_patch",
}
# Run on the management host itself: the package is uploaded there first.
LOCAL_OPS = frozenset({"file.append_chunk", "file.remove", "file.run"})


@dataclass(frozen=True)
class TargetCredential:
    """The account the management host connects to the 5.5 host with (None: its own)."""

    username: str
    password: Secret

    def __repr__(self) -> str:
        return f"TargetCredential(username={self.username!r})"


class ManagementHostRunner:
    """A `PayloadRunner` for one Exchange 5.5 host, through a management host's WinRM."""

    def __init__(
        self,
        management: PayloadRunner,
        target: str,
        *,
        management_host: str,
        credential: TargetCredential | None = None,
    ) -> None:
        self.management = management
        self.target = target
        self.management_host = management_host
        self.credential = credential

    def __repr__(self) -> str:
        return f"ManagementHostRunner({self.target!r} via {self.management_host!r})"

    def remote_payload(self, payload: payloads.RenderedPayload) -> payloads.RenderedPayload:
        """`payload` as its remote55 op, with Target and Credential added to its params."""
        op = REMOTE_OPS.get(payload.op)
        if op is None:
            raise TransportError(
                self.target,
                payload.op,
                FailureCause.CONFIGURATION,
                "not available through a management host (Exchange 5.5 only)",
            )
        params = payloads.decode_params(payload.script)
        merged: dict[str, Any] = dict(params) if isinstance(params, Mapping) else {}
        merged["Target"] = self.target
        merged["Credential"] = (
            None
            if self.credential is None
            else {
                "UserName": self.credential.username,
                "Password": self.credential.password.reveal(),
            }
        )
        return payloads.render(op, merged)

    def run_payload(self, payload: payloads.RenderedPayload) -> Any:
        try:
            if payload.op in LOCAL_OPS:
                return self.management.run_payload(payload)
            return self.management.run_payload(self.remote_payload(payload))
        except TransportError as exc:
            raise self._named(exc) from None

    def session(self) -> contextlib.AbstractContextManager[None]:
        """The management host's payloads share one shell (its transport's session)."""
        return held_session(self.management)

    def upload_file(self, data: bytes, remote: str) -> None:
        """A package onto the management host, in bulk over its WinRM."""
        if not isinstance(self.management, FileUploader):
            raise TransportError(
                self.target,
                "upload",
                FailureCause.CONFIGURATION,
                "the management host's transport cannot upload files",
            )
        try:
            self.management.upload_file(data, remote)
        except TransportError as exc:
            raise self._named(exc) from None

    def _named(self, exc: TransportError) -> TransportError:
        """The error as the target's, through the management host; no password in it."""
        detail = self._scrub(exc.detail)
        return TransportError(
            f"{self.target} (via {self.management_host})",
            exc.step,
            exc.cause,
            detail,
            stderr=self._scrub(exc.stderr),
            exit_code=exc.exit_code,
        )

    def _scrub(self, text: str) -> str:
        if self.credential is not None and self.credential.password.reveal():
            return text.replace(self.credential.password.reveal(), "***")
        return text
