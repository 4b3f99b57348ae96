"""Secrets never printed: the password-taking CLI and module paths, on their error paths
(refused input, unreachable host, a peer that is not WinRM) and at higher verbosity.

Wrong-password paths against the WinRM twin: tests/exchange/test_facts_lab.py and
tests/lab_winrm/test_transport.py; the playbook at -vvv: tests/playbook (issue 10).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.hostile import RawServer

from relayguard.cli import main

ROOT = Path(__file__).resolve().parents[2]
SECRET = "RgHostile-S3cret-71"


async def _not_winrm(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, st: Any) -> None:
    """Accepts, echoes what it is sent back (a hostile peer quoting the request), closes."""
    data = await reader.read(4096)
    writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: " + str(len(data)).encode())
    writer.write(b"\r\n\r\n" + data)
    await writer.drain()


@pytest.fixture(scope="module")
def not_winrm() -> Iterator[RawServer]:
    with RawServer(_not_winrm, "127.0.3.155") as srv:
        yield srv


def run_module(name: str, args: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"_ansible_verbosity": 4, **args}}))
    # the module imports its module_utils as Ansible ships them: ansible_collections.relayguard...
    env = {**os.environ, "PYTHONPATH": str(ROOT / "collections")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "plugins" / "modules" / f"{name}.py"), str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    result = json.loads(proc.stdout)
    assert result.get("failed") is True, result
    return proc.stdout + proc.stderr


def hosts(not_winrm: RawServer) -> list[dict[str, Any]]:
    """Refused input, nothing listening, a peer that is not WinRM (plain HTTP, Basic)."""
    return [
        {"host": "$(id)", "port": 5986},
        {"host": "127.0.3.156", "port": 9},
        {"host": not_winrm.host, "port": not_winrm.port},
    ]


def test_exchange_facts_module_error_paths(not_winrm: RawServer, tmp_path: Path) -> None:
    for where in hosts(not_winrm):
        output = run_module(
            "exchange_facts",
            {
                "winrm_host": where["host"],
                "winrm_port": where["port"],
                "winrm_username": "admin",
                "winrm_password": SECRET,
                "winrm_transport": "basic" if where["host"] == not_winrm.host else "ntlm",
                "winrm_connect_timeout": 3,
                "winrm_command_timeout": 10,
            },
            tmp_path,
        )
        assert SECRET not in output


@pytest.mark.parametrize("module", ["exchange_relay", "exchange_patch"])
def test_exchange_remediation_modules_error_paths(
    module: str, not_winrm: RawServer, tmp_path: Path
) -> None:
    extra: dict[str, Any] = (
        {"inbound_domains": ["example.net"], "relay_allowed_networks": ["10.0.0.0/8"]}
        if module == "exchange_relay"
        else {
            "package_path": "C:\\Patches\\Exchange2019-KB5000000.exe",
            "sha256": "0" * 64,
            "target_version": "15.2.1544.4",
        }
    )
    for where in hosts(not_winrm):
        output = run_module(
            module,
            {
                "winrm_host": where["host"],
                "winrm_port": where["port"],
                "winrm_username": "admin",
                "winrm_password": SECRET,
                "winrm_transport": "basic" if where["host"] == not_winrm.host else "ntlm",
                "winrm_operation_timeout": 5,
                "winrm_command_timeout": 10,
                **extra,
            },
            tmp_path,
        )
        assert SECRET not in output


def _cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue() + err.getvalue()


def test_facts_cli_error_paths(not_winrm: RawServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RG_HOSTILE_PW", SECRET)
    for where in hosts(not_winrm):
        for shape in ([], ["--json"]):
            code, output = _cli(
                [
                    "facts",
                    "--username=admin",
                    "--password-env=RG_HOSTILE_PW",
                    f"--port={where['port']}",
                    "--timeout=10",
                    *shape,
                    "--",
                    where["host"],
                ]
            )
            assert code in (1, 3), output
            assert SECRET not in output
            assert "Traceback" not in output


@pytest.mark.parametrize("shape", [["-v"], ["--json"], []])
def test_probe_cli_with_a_password_in_the_vantage(shape: list[str]) -> None:
    code, output = _cli(
        ["probe", *shape, "--via", f"ssh://ops:{SECRET}@127.0.3.157", "127.0.3.158:25"]
    )
    assert code == 1
    assert SECRET not in output
    assert "password" in output


def test_basic_over_plain_http_to_an_echoing_peer(not_winrm: RawServer, tmp_path: Path) -> None:
    """A peer that would echo the request back (and with it a Basic Authorization header):
    Basic over plain HTTP is refused before anything is sent, and nothing leaks."""
    output = run_module(
        "exchange_relay",
        {
            "winrm_host": not_winrm.host,
            "winrm_port": not_winrm.port,
            "winrm_username": "admin",
            "winrm_password": SECRET,
            "winrm_transport": "basic",
            "winrm_scheme": "http",
            "inbound_domains": ["example.net"],
        },
        tmp_path,
    )
    assert "plain HTTP" in output
    assert SECRET not in output
