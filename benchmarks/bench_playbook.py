#!/usr/bin/env python3
"""secure-relay.yml end to end on a 100-host lab fleet (scenario d of docs/performance.md).

Brings up `relayguard lab up --hosts …` (open Exchange 2019 and 2016 twins that need a
connector fix and a security update, and compliant ones), measures Ansible's own floor on the
same inventory and forks (benchmarks/floor.yml: one no-op task per host, the median of
--floor-runs), runs the playbook in enforce mode with the given forks and batches, then in
audit mode, and reports the wall time of each run, its ratio to the floor, the report's
counts, and where the time went: per phase (task file) and per task, from the callback
plugin benchmarks/callback_plugins/relayguard_timing.py (enabled for these runs only).
Loopback only; run it in a network namespace of its own:
  unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/bench_playbook.py \
      [--hosts SPEC] [--forks N] [--floor-runs N] [--json OUT]'
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from timed_ansible import timed_env

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RELAYGUARD = [sys.executable, "-m", "relayguard.cli"]
HOSTS = "exchange2019/anon-relay:40,exchange2016/star-domain:20,exchange2019/compliant:40"


HERE = Path(__file__).resolve().parent


def playbook(
    lab: Path, reports: Path, forks: int, extra: dict[str, Any], book: str = "secure-relay.yml"
) -> tuple[int, float, dict[str, Any]]:
    """Run `book` on the lab fleet: exit status, wall seconds, the timing callback's figures."""
    timing = reports.parent / "timing.json"
    # the Exchange host locks are named after the address: a run of its own, so that a
    # benchmark in another network namespace on the same addresses never holds them
    env = timed_env(timing, RELAYGUARD_LOCK_DIR=str(reports.parent / "locks"))
    timing.unlink(missing_ok=True)
    started = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(lab / "inventory.yml"), "-i",
         str(ROOT / "inventory" / "lab"), book, "--forks", str(forks),
         "-e", json.dumps({"relay_reports_dir": str(reports), **extra})],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    wall = time.monotonic() - started
    if proc.returncode not in (0, 2):
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
    return proc.returncode, wall, json.loads(timing.read_text()) if timing.exists() else {}


def breakdown(timing: dict[str, Any], top: int) -> dict[str, Any]:
    """Phases by time, and the `top` slowest tasks."""
    tasks = sorted(timing.get("tasks", []), key=lambda t: -t["seconds"])
    return {
        "phases": dict(sorted(timing.get("phases", {}).items(), key=lambda kv: -kv[1])),
        "tasks_run": len(tasks),
        "slowest_tasks": tasks[:top],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default=HOSTS)
    parser.add_argument("--forks", type=int, default=25)
    parser.add_argument("--first-address", default="127.0.34.1")
    parser.add_argument("--floor-runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=15, help="slowest tasks to list")
    parser.add_argument("--skip-audit", action="store_true")
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
        floors = [
            playbook(lab, reports, args.forks, {}, str(HERE / "floor.yml"))[1]
            for _ in range(max(1, args.floor_runs))
        ]
        floor = statistics.median(floors)
        batches = {"relay_serial": [1, "50%", "100%"], "relay_max_fail_percentage": 0}
        rc_enforce, enforce_s, enforce_t = playbook(lab, reports, args.forks, batches)
        enforce_summary = json.loads((reports / "latest" / "report.json").read_text())["summary"]
        audit: dict[str, Any] = {}
        if not args.skip_audit:
            rc_audit, audit_s, audit_t = playbook(lab, reports, args.forks, {"relay_mode": "audit"})
            audit_summary = json.loads((reports / "latest" / "report.json").read_text())["summary"]
            audit = {
                "exit": rc_audit, "wall_s": round(audit_s, 1),
                "ratio_to_floor": round(audit_s / floor, 1), "summary": audit_summary,
                **breakdown(audit_t, args.top),
            }  # fmt: skip
    finally:
        subprocess.run(
            [*RELAYGUARD, "lab", "down", "--dir", str(lab)], capture_output=True, check=False
        )
        shutil.rmtree(directory, ignore_errors=True)
    result = {
        "hosts": args.hosts,
        "forks": args.forks,
        "floor": {"wall_s": round(floor, 2), "runs_s": [round(f, 2) for f in floors]},
        "enforce": {
            "exit": rc_enforce, "wall_s": round(enforce_s, 1),
            "ratio_to_floor": round(enforce_s / floor, 1), "summary": enforce_summary,
            **breakdown(enforce_t, args.top),
        },
        "audit": audit,
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    print(
        f"floor {floor:.2f} s (median of {len(floors)}); enforce {enforce_s:.1f} s = "
        f"{enforce_s / floor:.1f}x the floor"
        + (f"; audit {audit['wall_s']} s = {audit['ratio_to_floor']}x" if audit else ""),
        file=sys.stderr,
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
