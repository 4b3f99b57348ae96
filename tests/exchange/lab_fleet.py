"""A lab fleet for the Exchange tests: `relayguard lab up` in a temporary directory, torn down
(and removed) even when a test fails, plus WinRM clients for its twins (HTTPS, NTLM, the lab
CA validated)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from relayguard.cli import main
from relayguard.exchange.transport import Secret, WinRMClient, WinRMOptions


def lab_command(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["lab", *args])
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def running_lab(*selection: str) -> Iterator[dict[str, Any]]:
    """The `lab up --json` document, with "dir" added (the lab directory)."""
    parent = Path(tempfile.mkdtemp(prefix="relayguard-facts-"))
    directory = parent / "lab"
    try:
        code, out, err = lab_command("up", "--json", "--dir", str(directory), *selection)
        assert code == 0, err
        yield {**json.loads(out), "dir": str(directory)}
    finally:
        lab_command("down", "--dir", str(directory))
        shutil.rmtree(parent, ignore_errors=True)


def winrm_address(host: dict[str, Any]) -> tuple[str, int]:
    address, port = host["winrm"].split("//")[1].split("/")[0].rsplit(":", 1)
    return address, int(port)


def client_for(lab: dict[str, Any], host: dict[str, Any], **changes: Any) -> WinRMClient:
    address, port = winrm_address(host)
    settings: dict[str, Any] = {
        "host": address,
        "port": port,
        "username": host["username"],
        "password": Secret(host["password"]),
        "ca_trust_path": lab["ca"],
        "command_timeout": 120.0,
    }
    settings.update(changes)
    return WinRMClient(WinRMOptions(**settings))
