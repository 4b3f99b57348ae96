"""Drive `relayguard lab` in tests and read a running lab (independent clients included)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

from support.realserver import tool_path

from relayguard.cli import main

UNTRUSTED = "127.0.60.200"


def lab(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["lab", *args])
    return code, out.getvalue(), err.getvalue()


def lab_up(directory: Path, *extra: str) -> dict[str, Any]:
    code, out, err = lab("up", "--json", "--dir", str(directory), *extra)
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def listening_sockets(addresses: set[str]) -> list[str]:
    """Every TCP socket in LISTEN state on one of `addresses` (from /proc/net/tcp)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state != "0A":
            continue
        hex_ip, hex_port = local.split(":")
        ip = ".".join(str(int(hex_ip[i : i + 2], 16)) for i in (6, 4, 2, 0))
        if ip in addresses:
            found.append(f"{ip}:{int(hex_port, 16)}")
    return found


def nmap_verdict(address: str, port: int, source: str = UNTRUSTED) -> str:
    """nmap's smtp-open-relay from `source`: "open" or "closed" (port must be 25: portrule)."""
    result = subprocess.run(
        [
            tool_path("nmap"),
            "-n",
            "-Pn",
            "-sT",
            "-p",
            str(port),
            "-S",
            source,
            "-e",
            "lo",
            "--script",
            "smtp-open-relay",
            "--script-args",
            "smtp-open-relay.domain=example.com",
            address,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if "Server is an open relay" in result.stdout:
        return "open"
    if re.search(r"doesn't seem to be an open relay", result.stdout):
        return "closed"
    raise AssertionError(f"nmap gave no verdict for {address}:{port}: {result.stdout}")


def swaks_accepts(address: str, port: int, source: str = UNTRUSTED) -> bool:
    """swaks: does a foreign RCPT get accepted? (exit 0; 24 = no RCPT accepted)."""
    result = subprocess.run(
        [
            tool_path("swaks"),
            "--server",
            f"{address}:{port}",
            "--from",
            "antispam@example.com",
            "--to",
            "relaytest@example.com",
            "--quit-after",
            "RCPT",
            "--local-interface",
            source,
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode in (0, 24), result.stdout + result.stderr
    return result.returncode == 0


def payload(op: str, params: dict[str, Any] | None = None, filler: int = 0) -> str:
    b64 = base64.b64encode(json.dumps(params or {}).encode()).decode()
    lines = [
        f"# relayguard-payload: {op} v1",
        "$RelayguardParams = [System.Text.Encoding]::UTF8.GetString("
        f"[System.Convert]::FromBase64String('{b64}')) | ConvertFrom-Json",
        "$ErrorActionPreference = 'Stop'",
    ]
    lines += [f"# filler {i:05d} " + "x" * 60 for i in range(filler)]
    return "\n".join(lines) + "\n"


def swaks_imcea_accepted(address: str, port: int, recipient: str) -> bool:
    result = subprocess.run(
        [
            tool_path("swaks"),
            "--server",
            f"{address}:{port}",
            "--from",
            "antispam@example.com",
            "--to",
            recipient,
            "--quit-after",
            "RCPT",
            "--local-interface",
            UNTRUSTED,
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode in (0, 24), result.stdout + result.stderr
    return result.returncode == 0
