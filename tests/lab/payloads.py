"""Render payload-protocol-v1 scripts the way relayguard's templates do (header + params line)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from relayguard.lab.exchange.oplib import TwinContext
from relayguard.lab.exchange.ops import registry
from relayguard.lab.exchange.store import StateStore
from relayguard.lab.wsman.dispatch import CommandContext, CommandResult, PayloadDispatcher
from relayguard.lab.wsman.scratch import ScratchStore


def script(op: str, params: dict[str, Any] | None = None) -> str:
    b64 = base64.b64encode(json.dumps(params or {}).encode()).decode()
    return (
        f"# relayguard-payload: {op} v1\n"
        "$RelayguardParams = [System.Text.Encoding]::UTF8.GetString("
        f"[System.Convert]::FromBase64String('{b64}')) | ConvertFrom-Json\n"
        "$ErrorActionPreference = 'Stop'\n"
        "[Console]::Out.Write(($Result | ConvertTo-Json -Depth 10 -Compress))\n"
    )


class Host:
    """A twin's payload side, without the WinRM transport."""

    def __init__(self, store: StateStore, directory: Path, packages: Path | None = None) -> None:
        self.scratch = ScratchStore(directory / "scratch")
        self.context = TwinContext(store=store, scratch=self.scratch, packages_dir=packages)
        self.dispatcher = PayloadDispatcher(registry(), self.context)

    def run(self, op: str, params: dict[str, Any] | None = None) -> CommandResult:
        ctx = CommandContext(
            twin="t",
            hostname="t",
            username="relayguard",
            client_address="127.0.60.200",
            shell_id="s",
            command_id="c",
            scratch=self.scratch,
        )
        return self.dispatcher(script(op, params), ctx)

    def ok(self, op: str, params: dict[str, Any] | None = None) -> Any:
        result = self.run(op, params)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)
