"""Helpers for the real-Postfix tests: run `relayguard probe --json`, read an instance's log."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relayguard.lab.postfix.instance import PostfixInstance

_PROBE_TIMEOUT_S = 540.0


def relayguard_command() -> str:
    """The console script installed beside the interpreter running the tests (.venv/bin)."""
    beside = Path(sys.executable).parent / "relayguard"
    found = str(beside) if beside.exists() else shutil.which("relayguard")
    assert found, "relayguard is not installed in this environment: pip install -e .[dev]"
    return found


@dataclass(frozen=True)
class ProbeRun:
    """One `relayguard probe --json` run against one target."""

    argv: tuple[str, ...]
    returncode: int
    document: dict[str, Any]
    stderr: str

    @property
    def host(self) -> dict[str, Any]:
        hosts: list[dict[str, Any]] = self.document["hosts"]
        assert len(hosts) == 1, hosts
        return hosts[0]

    @property
    def tests(self) -> list[dict[str, Any]]:
        tests: list[dict[str, Any]] = self.host["tests"]
        return tests

    def nmap_tests(self) -> dict[int, dict[str, Any]]:
        """relayguard's tests that carry an nmap number, by number (each number once)."""
        numbered = [t for t in self.tests if t["nmap"] is not None]
        by_number = {t["nmap"]: t for t in numbered}
        assert len(by_number) == len(numbered), "an nmap number appears twice"
        return by_number

    def summary(self) -> str:
        """Verdict, reason and every test's outcome and reply: the assertion message."""
        host = self.host
        lines = [f"{host['verdict']} ({host.get('reason')}), exit {self.returncode}"]
        for test in self.tests:
            lines.append(
                f"  {test['id']:<28} {test['outcome']:<13} {test['code']} {test['reply'][:70]}"
            )
        return "\n".join(lines)


def run_probe(target: str, source: str, *extra: str) -> ProbeRun:
    argv = (relayguard_command(), "probe", "--json", "--source-address", source, *extra, target)
    completed = subprocess.run(
        argv, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=False
    )
    try:
        document = json.loads(completed.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(
            f"{' '.join(argv)} exited {completed.returncode} without a JSON document: "
            f"{completed.stderr.strip()[-2000:]}"
        ) from exc
    return ProbeRun(argv, completed.returncode, document, completed.stderr)


class MaillogWindow:
    """The part of an instance's maillog written after this object was made."""

    _CONNECT = r"smtpd\[\d+\]: connect from \S*\[{address}\]"
    _DISCONNECT = r"smtpd\[\d+\]: disconnect from \S*\[{address}\]"

    def __init__(self, server: PostfixInstance) -> None:
        self.server = server
        self.offset = len(server.maillog_text())

    def text(self) -> str:
        return self.server.maillog_text()[self.offset :]

    def connections(self, address: str) -> int:
        return len(re.findall(self._CONNECT.format(address=re.escape(address)), self.text()))

    def settled(self, address: str, timeout: float = 15.0) -> str:
        """The window once every session from `address` logged its disconnect (bounded:
        postlogd writes asynchronously)."""
        connect = self._CONNECT.format(address=re.escape(address))
        disconnect = self._DISCONNECT.format(address=re.escape(address))
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            opened = len(re.findall(connect, text))
            if opened and opened == len(re.findall(disconnect, text)):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{address}: {opened} sessions in the maillog, not all ended:\n{text[-3000:]}"
                )
            time.sleep(0.1)
