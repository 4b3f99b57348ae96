"""A lab fleet for the playbook tests, and real `ansible-playbook secure-relay.yml` runs on it.

Each test brings up its own small fleet with `relayguard lab up` in a temporary directory, on
this room's addresses (127.0.40.1-127.0.44.255), with the tarpit off, and takes it down when
the test ends, passed or failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.M,
)
PLAYBOOK_TIMEOUT = 420


@dataclass
class Run:
    """One ansible-playbook run: exit status, output, the recap per host."""

    returncode: int
    output: str
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    def explain(self) -> str:
        return f"exit {self.returncode}\n{self.output[-6000:]}"


@dataclass
class Fleet:
    """A running lab fleet and the paths a playbook run needs."""

    directory: Path
    lab: Path
    reports: Path
    up: dict[str, Any]

    @property
    def hosts(self) -> list[dict[str, Any]]:
        hosts: list[dict[str, Any]] = self.up["hosts"]
        return hosts

    @property
    def names(self) -> list[str]:
        return [h["name"] for h in self.hosts]

    def playbook(
        self, *args: str, extra: dict[str, Any] | None = None, playbook: str = "secure-relay.yml"
    ) -> Run:
        command = [
            str(BIN / "ansible-playbook"),
            "-i",
            str(self.lab / "inventory.yml"),
            "-i",
            str(ROOT / "inventory" / "lab"),
            playbook,
            "-e",
            json.dumps({"relay_reports_dir": str(self.reports), **(extra or {})}),
            *args,
        ]
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        }
        proc = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=PLAYBOOK_TIMEOUT,
            check=False,
        )
        output = proc.stdout + proc.stderr
        recap = {
            m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
            for m in RECAP.finditer(output.split("PLAY RECAP", 1)[-1])
        }
        return Run(proc.returncode, output, recap)

    def report(self) -> dict[str, Any]:
        """The newest report (reports/latest/report.json)."""
        document: dict[str, Any] = json.loads(
            (self.reports / "latest" / "report.json").read_text(encoding="utf-8")
        )
        return document

    def report_hosts(self) -> dict[str, dict[str, Any]]:
        return {h["host"]: h for h in self.report()["hosts"]}

    def relay_config(self, name: str) -> str:
        """What decides relaying on a host: a twin's configuration, or Postfix's main.cf."""
        host = next(h for h in self.hosts if h["name"] == name)
        if host["platform"] == "postfix":
            config = self.lab / "postfix" / name / "config" / "main.cf"
            return config.read_text(encoding="utf-8")
        state = json.loads((self.lab / "state" / f"{name}.json").read_text(encoding="utf-8"))
        return json.dumps({k: state.get(k) for k in ("exchange55", "modern")}, sort_keys=True)

    def modern_relay_settings(self, name: str) -> dict[str, Any]:
        """An Exchange 2013+ twin's relay settings (not its build: a fix is never rolled back)."""
        state = json.loads((self.lab / "state" / f"{name}.json").read_text(encoding="utf-8"))
        keys = ("ReceiveConnectors", "AcceptedDomains", "RecipientFilter")
        return {k: state["modern"][k] for k in keys}

    def fingerprint(self) -> dict[str, str]:
        """A hash of every host's relay configuration."""
        return {n: hashlib.sha256(self.relay_config(n).encode()).hexdigest() for n in self.names}

    def break_legit_flow_after_change(self, name: str) -> None:
        """Lab knob: once the relay configuration changes, even allowed clients are refused."""
        from relayguard.lab.exchange.store import StateStore

        def knob(state: Any) -> None:
            state.lab.break_legit_flow_after_change = True

        StateStore(self.lab / "state" / f"{name}.json").update(knob)


def _lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "relayguard"), "lab", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@contextmanager
def lab_fleet(hosts: str, first_address: str) -> Iterator[Fleet]:
    """`relayguard lab up --hosts HOSTS` in a fresh directory; always taken down and removed.

    The directory is world-searchable (0755): Postfix's unprivileged daemons must reach the
    lab's Postfix instances inside it, which pytest's private tmp_path would not allow."""
    directory = Path(tempfile.mkdtemp(prefix="relayguard-playbook-"))
    directory.chmod(0o755)
    lab = directory / "lab"
    try:
        up = _lab(
            "up",
            "--json",
            "--tarpit",
            "0",
            "--restart-seconds",
            "0",
            "--hosts",
            hosts,
            "--first-address",
            first_address,
            "--dir",
            str(lab),
        )
        assert up.returncode == 0, up.stderr
        yield Fleet(directory, lab, directory / "reports", json.loads(up.stdout))
    finally:
        _lab("down", "--dir", str(lab))
        shutil.rmtree(directory, ignore_errors=True)
