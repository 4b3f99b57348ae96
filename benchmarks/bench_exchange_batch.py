#!/usr/bin/env python3
"""The Exchange batch calls of secure-relay.yml, alone: `exchange_batch` detect on the whole
100-host lab fleet of benchmarks/bench_playbook.py, then apply on its open hosts, with the CPU
each side spends (docs/performance.md, "The Exchange batch calls").

Each run brings up a fresh fleet (`relayguard lab up`: one lab daemon process serves every
twin), calls `relayguard.exchange.batch.run_batch` in this process with the requests the
playbook builds (roles/exchange_detect `relay_exchange_request`, the lab inventory's
group_vars), and reads wall time, this process's CPU (user + system, every thread) and the
lab daemon's (/proc/<pid>/stat utime + stime) around each call. `--py-spy DIR` also samples
both processes during each call (py-spy from PyPI, not a project dependency) and writes
collapsed stacks plus a top-functions summary there. Loopback only; run it in a network
namespace of its own:
  unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/bench_exchange_batch.py \
      [--runs N] [--hosts SPEC] [--workers N] [--json OUT] [--py-spy DIR]'
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from exchange_remediation.labrun import batch_relay_options  # noqa: E402
from support.collection_specs import CONNECTION_SPEC, PATCH_SPEC  # noqa: E402

from relayguard.exchange import batch, connection  # noqa: E402
from relayguard.exchange.record import applicable_package  # noqa: E402

RELAYGUARD = [sys.executable, "-m", "relayguard.cli"]
HOSTS = "exchange2019/anon-relay:40,exchange2016/star-domain:20,exchange2019/compliant:40"
# the lab inventory's group_vars (inventory/lab/group_vars/all.yml) and roles/relay defaults
INBOUND = ["corp.example"]
PATCH_POLICY = "cu_n_minus_1"
CONNECTOR = "Relay {computer_name}"
SPY_FLAGS: list[str] = os.environ.get("BENCH_PY_SPY_FLAGS", "").split()
TICKS = os.sysconf("SC_CLK_TCK")


def daemon_cpu(pid: int) -> float:
    """utime + stime of process `pid`, seconds (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def relay_options(ca: str, host: dict[str, Any], backups: Path) -> dict[str, Any]:
    """exchange_batch's relay options for a lab host, as roles/exchange_detect builds them:
    the lab tests' (tests/exchange_remediation/labrun.py), with the playbook's defaults where
    those differ (relay_authenticated keep reads as false; the connector named by detect)."""
    return batch_relay_options(ca, host, backups) | {
        "winrm_command_timeout": CONNECTION_SPEC["winrm_command_timeout"].get("default"),
        "relay_authenticated": False,
        "inbound_domains": INBOUND,
        "relay_connector_name": CONNECTOR,
    }


def apply_requests(
    detected: dict[str, dict[str, Any]],
    requests: Sequence[batch.HostRequest],
    packages: Sequence[dict[str, Any]],
) -> list[batch.HostRequest]:
    """The hosts the playbook changes (a plan with changes, or a patch missing), each with its
    connector name read at detect and the patch it needs."""
    out = []
    for request in requests:
        result = detected[request.name]
        plan = result["plan"] or {}
        missing = (result.get("patch") or {}).get("state") == "missing"
        if not plan.get("changes") and not missing:
            continue
        package = applicable_package(packages, result["facts"]["version"]) if missing else None
        patch = None
        if package is not None:
            patch = {name: option.get("default") for name, option in PATCH_SPEC.items()} | {
                "package_src": package["file"],
                "sha256": package["sha256"],
                "target_version": package["file_version"],
                "reboot": False,
            }
        computer = result["facts"].get("computer_name") or request.name
        relay = dict(request.relay) | {"relay_connector_name": f"Relay {computer}"}
        out.append(batch.HostRequest(request.name, relay, patch, request.patch_policy))
    return out


@contextmanager
def sampled(directory: Path | None, label: str, pids: dict[str, int]) -> Iterator[None]:
    """py-spy record of each of `pids` (name -> pid) while the block runs."""
    if directory is None:
        yield
        return
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    running = []
    for name, pid in pids.items():
        out = directory / f"{label}-{name}.txt"
        proc = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
             "--output", str(out), "--nonblocking", *SPY_FLAGS],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        running.append((proc, out))
    time.sleep(0.5)  # py-spy attaches
    try:
        yield
    finally:
        for proc, out in running:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
            if out.exists():
                (out.with_suffix(".top")).write_text(summarize(out.read_text()))


def summarize(collapsed: str, top: int = 40) -> str:
    """Self and inclusive sample counts per function from py-spy's collapsed stacks (idle
    frames — waiting in select, sleep, lock acquire, recv — left out)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    idle = ("select (", "wait (", "_wait_for_tstate_lock", "acquire (", "sleep (", "poll (",
            "accept (", "recv_into (", "readinto (", "_worker (")  # fmt: skip
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if any(frames[-1].startswith(i) or i in frames[-1] for i in idle):
            continue
        count = int(count_text)
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"busy samples: {total}", "", "self:"]
    lines += [f"{n:7d} {n / max(total, 1):6.1%}  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"{n:7d} {n / max(total, 1):6.1%}  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def timed(
    work: Callable[[], dict[str, dict[str, Any]]], daemon: int
) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    cpu0, d0, t0 = own_cpu(), daemon_cpu(daemon), time.monotonic()
    results = work()
    wall, cpu, dcpu = time.monotonic() - t0, own_cpu() - cpu0, daemon_cpu(daemon) - d0
    return results, {
        "wall_s": round(wall, 2),
        "client_cpu_s": round(cpu, 2),
        "daemon_cpu_s": round(dcpu, 2),
    }


def one_run(args: argparse.Namespace, spy: Path | None, run: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="rg-bench-batch-"))
    directory.chmod(0o755)
    lab = directory / "lab"
    # the hosts' change locks (exchange/hostlock.py) in this run's own directory: another
    # run on the same addresses in another network namespace shares /tmp, not this
    os.environ["RELAYGUARD_LOCK_DIR"] = str(directory / "locks")
    try:
        up = subprocess.run(
            [*RELAYGUARD, "lab", "up", "--json", "--dir", str(lab), "--hosts", args.hosts,
             "--tarpit", "0", "--restart-seconds", "0", "--first-address", args.first_address,
             "--timeout", "600"],
            check=True, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        manifest = json.loads(up.stdout)
        daemon = int(json.loads((lab / "daemon.pid").read_text()))
        requests = [
            batch.HostRequest(h["name"], relay_options(manifest["ca"], h, directory), None,
                              PATCH_POLICY)
            for h in manifest["hosts"]
        ]  # fmt: skip
        workers = args.workers
        pids = {"client": os.getpid(), "daemon": daemon}
        with sampled(spy, f"run{run}-detect", pids):
            detected, detect = timed(
                lambda: batch.run_batch(
                    requests, lambda r: batch.detect_host(r, connection.client_for), workers
                ),
                daemon,
            )
        failed = {n: r.get("msg") for n, r in detected.items() if r["failed"]}
        if failed:
            raise SystemExit(f"detect failed on {len(failed)} hosts: {list(failed.items())[:3]}")
        detect["hosts"] = len(requests)
        figures: dict[str, Any] = {"detect": detect}
        if not args.detect_only:
            changing = apply_requests(detected, requests, manifest["packages"])
            with sampled(spy, f"run{run}-apply", pids):
                applied, apply = timed(
                    lambda: batch.run_batch(
                        changing,
                        lambda r: batch.apply_host(r, connection.client_for, check_mode=False),
                        workers,
                    ),
                    daemon,
                )
            bad = {
                n: (r["relay"].get("msg"), (r["patch"] or {}).get("msg"))
                for n, r in applied.items()
                if r["relay"]["failed"] or (r["patch"] or {}).get("failed")
            }
            if bad:
                raise SystemExit(f"apply failed on {len(bad)} hosts: {list(bad.items())[:3]}")
            apply["hosts"] = len(changing)
            apply["patched"] = sum(1 for r in applied.values() if (r["patch"] or {}).get("changed"))
            figures["apply"] = apply
        return figures
    finally:
        subprocess.run(
            [*RELAYGUARD, "lab", "down", "--dir", str(lab)], capture_output=True, check=False
        )
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default=HOSTS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=batch.DEFAULT_WORKERS)
    parser.add_argument("--first-address", default="127.0.34.1")
    parser.add_argument("--detect-only", action="store_true")
    parser.add_argument("--py-spy", type=Path, help="sample both processes, results here")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    runs = []
    for run in range(args.runs):
        figures = one_run(args, args.py_spy, run)
        runs.append(figures)
        print(json.dumps(figures), flush=True)
    summary = {
        phase: {
            key: statistics.median(r[phase][key] for r in runs)
            for key in ("wall_s", "client_cpu_s", "daemon_cpu_s")
        }
        for phase in runs[0]
    }
    result = {"hosts": args.hosts, "workers": args.workers, "runs": runs, "median": summary}
    print(json.dumps(summary), file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
