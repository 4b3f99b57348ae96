#!/usr/bin/env python3
"""secure-relay.yml end to end on a 100-host lab fleet (scenario d of docs/performance.md).

Brings up `relayguard lab up --hosts …` (open Exchange 2019 and 2016 twins that need a
connector fix and a security update, and compliant ones), runs the playbook in enforce mode
with the given forks and batches, then in audit mode, and reports wall time of each run and
the report's counts. Loopback only. Usage:
  .venv/bin/python benchmarks/bench_playbook.py [--hosts SPEC] [--forks N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RELAYGUARD = [sys.executable, "-m", "relayguard.cli"]
HOSTS = "exchange2019/anon-relay:40,exchange2016/star-domain:20,exchange2019/compliant:40"


def playbook(lab: Path, reports: Path, forks: int, extra: dict[str, Any]) -> tuple[int, float]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    started = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(lab / "inventory.yml"), "-i",
         str(ROOT / "inventory" / "lab"), "secure-relay.yml", "--forks", str(forks),
         "-e", json.dumps({"relay_reports_dir": str(reports), **extra})],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    return proc.returncode, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default=HOSTS)
    parser.add_argument("--forks", type=int, default=25)
    parser.add_argument("--first-address", default="127.0.34.1")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="rg-bench-playbook-"))
    directory.chmod(0o755)
    lab, reports = directory / "lab", directory / "reports"
    try:
        subprocess.run(
            [*RELAYGUARD, "lab", "up", "--dir", str(lab), "--hosts", args.hosts, "--tarpit", "0",
             "--restart-seconds", "0", "--first-address", args.first_address, "--timeout", "600"],
            check=True, capture_output=True, timeout=900,
        )  # fmt: skip
        batches = {"relay_serial": [1, "50%", "100%"], "relay_max_fail_percentage": 0}
        rc_enforce, enforce_s = playbook(lab, reports, args.forks, batches)
        enforce_summary = json.loads((reports / "latest" / "report.json").read_text())["summary"]
        rc_audit, audit_s = playbook(lab, reports, args.forks, {"relay_mode": "audit"})
        audit_summary = json.loads((reports / "latest" / "report.json").read_text())["summary"]
    finally:
        subprocess.run(
            [*RELAYGUARD, "lab", "down", "--dir", str(lab)], capture_output=True, check=False
        )
        shutil.rmtree(directory, ignore_errors=True)
    result = {
        "hosts": args.hosts,
        "forks": args.forks,
        "enforce": {"exit": rc_enforce, "wall_s": round(enforce_s, 1), "summary": enforce_summary},
        "audit": {"exit": rc_audit, "wall_s": round(audit_s, 1), "summary": audit_summary},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
