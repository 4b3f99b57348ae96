#!/usr/bin/env python3
"""The report step of secure-relay.yml ("Write the report", relayguard.mail.relay_report) on a
100-host run: in process, and as the module process Ansible starts.

Records: the host records the playbook passes as `hosts` (roles/relay/tasks/report.yml,
"Close this host's record"), built from benchmarks/data/report-records.json.gz (three records
of a 100-host lab audit run, one per lab profile, each replicated to its share of the fleet
with the host's name, address and server name renumbered: 40 open Exchange 2019, 20 open
Exchange 2016, 40 compliant Exchange 2019), or with --sample from a report.json written by
the playbook (its hosts, findings dropped: the module computes them).

Measured, each the fastest of --repeat runs, CPU time (user+sys of this process) beside wall
time (the machine is shared: CPU time is the steadier figure):
  inproc.module   the module's main() in this process (AnsibleModule argument handling, the
                  report built, validated and written into a reports directory that already
                  holds a previous run, so report.html carries the drift, as in a real run)
  inproc.<step>   build_report, validate_report, scrub, write_report, and each format alone
  process         `python plugins/modules/relay_report.py ARGS` (the module's own process:
                  interpreter, imports, the ~2.5 MB of arguments decoded, exit_json), wall
                  and children's CPU
  ansible         (--ansible) ansible-playbook on localhost: the relay_report task with the
                  records as `hosts` (templated and sent through AnsiballZ as in the role),
                  its time from benchmarks/callback_plugins/relayguard_timing.py, beside the
                  same play with a no-op task (Ansible's own floor for one local task);
                  task_cpu_s: the CPU of the whole run (ansible-playbook, its workers, the
                  module) beyond the no-op play's, the figure a busy machine leaves steady;
                  report_json: the same task given the records as one JSON text (hosts_json)
--outputs DIR writes every format of a fixed run (fixed run id, times, versions and user) so
that two checkouts can be compared byte for byte (`cmp -r`).

Usage: .venv/bin/python benchmarks/bench_report.py [--sample REPORT_JSON] [--hosts N]
           [--repeat N] [--ansible] [--outputs DIR] [--json OUT]
Nothing listens and nothing is sent: no network namespace needed.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from timed_ansible import timed_env

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
MODULE = ROOT / "plugins" / "modules" / "relay_report.py"
RECORDS = HERE / "data" / "report-records.json.gz"
FIELDS = ("host", "platform", "build", "patch", "before", "after", "changes", "rules")
FIELDS += ("status", "timings", "error")
# A fixed run for --outputs: the same bytes from every checkout given the same records.
FIXED_RUN = {
    "run_id": "20261205T042208Z-bench1",
    "started": "2026-12-05T04:22:08Z",
    "finished": "2026-12-05T04:23:42Z",
    "check_mode": False,
    "inventory": ["inventory/lab"],
    "relayguard_version": "0.0.0-bench",
    "ansible_version": "0.0.0-bench",
    "user": "bench",
}
PREVIOUS_RUN_ID = "20261205T041618Z-bench0"


def renumbered(record: dict[str, Any], index: int, address: str) -> dict[str, Any]:
    """`record` as fleet host number `index` (1-based) at `address`."""
    text = json.dumps(record)
    old_name, old_address = record["host"], record["before"]["address"]
    old_number = old_name.rsplit("-", 1)[1]
    text = text.replace(old_name, f"{old_name.rsplit('-', 1)[0]}-{index:04d}")
    text = text.replace(f'{old_address}"', f'{address}"').replace(f"{old_address}:", f"{address}:")
    for server in ("N", "n"):
        text = text.replace(f"{server}{old_number}", f"{server}{index:04d}")
    found: dict[str, Any] = json.loads(text)
    return found


def fleet_records(count: int) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """mode, probe_options and `count` host records from the committed sample."""
    data = json.loads(gzip.decompress(RECORDS.read_bytes()))
    profiles = data["profiles"]
    total = sum(p["count"] for p in profiles)
    records: list[dict[str, Any]] = []
    for position, profile in enumerate(profiles):
        share = count - len(records) if position == len(profiles) - 1 else None
        share = share if share is not None else round(count * profile["count"] / total)
        for _ in range(share):
            index = len(records) + 1
            address = f"127.0.{34 + (index - 1) // 250}.{(index - 1) % 250 + 1}"
            records.append(renumbered(profile["record"], index, address))
    return data["mode"], data["probe_options"], records


def sample_records(path: Path) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """mode, probe_options and host records of a report.json the playbook wrote."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    records = []
    for host in doc["hosts"]:
        record = {k: host[k] for k in FIELDS}
        record["timings"] = {k: host["timings"][k] for k in ("started", "finished")}
        records.append(record)
    return doc["run"]["mode"], doc["run"]["probe_options"], records


def module_args(
    mode: str, probe_options: dict[str, Any], records: list[dict[str, Any]], reports: Path
) -> dict[str, Any]:
    return {
        "reports_dir": str(reports),
        "mode": mode,
        "check_mode": False,
        "started": FIXED_RUN["started"],
        "inventory": FIXED_RUN["inventory"],
        "probe_options": probe_options,
        "hosts": records,
    }


def timed(fn: Callable[[], Any], repeat: int) -> tuple[dict[str, float], Any]:
    """The fastest of `repeat` runs of `fn`: CPU and wall seconds, and its last result."""
    best = {"cpu_s": float("inf"), "wall_s": float("inf")}
    result = None
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        result = fn()
        best["cpu_s"] = min(best["cpu_s"], time.process_time() - cpu)
        best["wall_s"] = min(best["wall_s"], time.perf_counter() - wall)
    return {k: round(v, 3) for k, v in best.items()}, result


def fixed_run(mode: str, probe_options: dict[str, Any], run_id: str) -> dict[str, Any]:
    return {**FIXED_RUN, "run_id": run_id, "mode": mode, "probe_options": probe_options}


def seed_previous(reports: Path, mode: str, probe_options: dict[str, Any], hosts: Any) -> None:
    """A previous run under `reports`, so that the next write shows the drift since it."""
    from relayguard.report import build_report, write_report

    write_report(build_report(fixed_run(mode, probe_options, PREVIOUS_RUN_ID), hosts), reports)


def run_module_main(args: dict[str, Any]) -> dict[str, Any]:
    """plugins/modules/relay_report.py main() in this process; its JSON result."""
    import ansible.module_utils.basic as basic

    sys.path.insert(0, str(MODULE.parent))
    try:
        import relay_report
    finally:
        sys.path.pop(0)
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
    basic._ANSIBLE_PROFILE = "legacy"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        relay_report.main()
    result: dict[str, Any] = json.loads(out.getvalue())
    if result.get("failed"):
        raise RuntimeError(result.get("msg"))
    return result


def fresh_reports(base: Path, mode: str, probe_options: dict[str, Any], hosts: Any) -> Path:
    """A new reports directory holding one previous run."""
    reports = Path(tempfile.mkdtemp(prefix="reports-", dir=base))
    seed_previous(reports, mode, probe_options, hosts)
    return reports


def inproc(
    base: Path, mode: str, probe_options: dict[str, Any], records: list[dict[str, Any]], repeat: int
) -> dict[str, Any]:
    from relayguard.report import build_report, scrub, validate_report, write_report
    from relayguard.report.render import FORMATS
    from relayguard.report.render.html import render_html

    figures: dict[str, Any] = {}
    reports = [fresh_reports(base, mode, probe_options, records) for _ in range(repeat)]
    queue = list(reports)

    def module() -> dict[str, Any]:
        return run_module_main(module_args(mode, probe_options, records, queue.pop()))

    figures["module"], result = timed(module, repeat)
    run = fixed_run(mode, probe_options, FIXED_RUN["run_id"])
    figures["build_report"], doc = timed(lambda: build_report(run, records), repeat)
    figures["validate_report"], _ = timed(lambda: validate_report(doc), repeat)
    figures["scrub"], _ = timed(lambda: scrub(doc), repeat)
    for name, (renderer, _file) in FORMATS.items():
        figures[f"render.{name}"], _ = timed(lambda r=renderer: r(doc), repeat)  # type: ignore[misc]
    writes = [fresh_reports(base, mode, probe_options, records) for _ in range(repeat)]
    figures["write_report"], _ = timed(lambda: write_report(doc, writes.pop()), repeat)
    from relayguard.report.drift import diff_reports

    previous = json.loads((reports[0] / PREVIOUS_RUN_ID / "report.json").read_text())
    figures["render.html_with_drift"], _ = timed(
        lambda: render_html(doc, diff_reports(previous, doc)), repeat
    )
    figures["summary"] = result["summary"]
    figures["report_json_bytes"] = len(json.dumps(doc, indent=2, ensure_ascii=False)) + 1
    return figures


def package_root() -> Path:
    """The directory this process imports relayguard from (PYTHONPATH can point elsewhere)."""
    import relayguard

    return Path(relayguard.__file__).resolve().parents[1]


def in_process_child(args_file: Path) -> tuple[float, float, dict[str, Any]]:
    """The module as its own process: wall seconds, the child's CPU seconds, its result."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)],
        capture_output=True, text=True, check=False, timeout=600,
        env={**os.environ, "PYTHONPATH": str(package_root())},
    )  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result: dict[str, Any] = json.loads(proc.stdout)
    if proc.returncode or result.get("failed"):
        raise RuntimeError(f"module failed: {result.get('msg')} {proc.stderr[-2000:]}")
    return wall, cpu, result


def process(
    base: Path, mode: str, probe_options: dict[str, Any], records: list[dict[str, Any]], repeat: int
) -> dict[str, Any]:
    best = {"cpu_s": float("inf"), "wall_s": float("inf")}
    size = 0
    for _ in range(repeat):
        reports = fresh_reports(base, mode, probe_options, records)
        args_file = base / "args.json"
        text = json.dumps(
            {"ANSIBLE_MODULE_ARGS": module_args(mode, probe_options, records, reports)}
        )
        args_file.write_text(text)
        size = len(text)
        wall, cpu, result = in_process_child(args_file)
        best = {"cpu_s": min(best["cpu_s"], cpu), "wall_s": min(best["wall_s"], wall)}
    out = {k: round(v, 3) for k, v in best.items()}
    return {**out, "args_bytes": size, "result_bytes": len(json.dumps(result))}


PLAY = """- name: relay_report as the role runs it (benchmarks/bench_report.py)
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{records}]
  tasks:
    - name: {task}
{body}
"""
REPORT_TASK = """      relayguard.mail.relay_report:
        reports_dir: "{{ bench_reports }}"
        mode: "{{ bench_mode }}"
        check_mode: "{{ ansible_check_mode }}"
        started: "{{ bench_started }}"
        inventory: "{{ ansible_inventory_sources }}"
        probe_options: "{{ bench_probe_options }}"
        hosts: "{{ bench_hosts }}"
      register: bench_written
"""
# the same records as one JSON text (the module's hosts_json option)
REPORT_JSON_TASK = REPORT_TASK.replace(
    'hosts: "{{ bench_hosts }}"', 'hosts_json: "{{ bench_hosts | to_json }}"'
)
NOOP_TASK = """      ansible.builtin.debug:
        msg: no-op
        verbosity: 1
"""


def ansible_play(base: Path, book: Path, reports: Path) -> tuple[float, float, float]:
    """ansible-playbook `book`: wall seconds of the whole run and of its one task, and the
    CPU seconds of the run (ansible-playbook, its workers and the module's process)."""
    timing = base / "timing.json"
    timing.unlink(missing_ok=True)
    env = timed_env(
        timing, ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING="false"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", str(book),
         "-e", json.dumps({"bench_reports": str(reports)})],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode:
        raise RuntimeError(f"{book.name} failed: {proc.stdout[-3000:]} {proc.stderr[-3000:]}")
    tasks = json.loads(timing.read_text())["tasks"]
    return wall, max(t["seconds"] for t in tasks), cpu


def ansible(
    base: Path, mode: str, probe_options: dict[str, Any], records: list[dict[str, Any]], repeat: int
) -> dict[str, Any]:
    variables = base / "records.json"
    variables.write_text(
        json.dumps(
            {
                "bench_mode": mode,
                "bench_started": FIXED_RUN["started"],
                "bench_probe_options": probe_options,
                "bench_hosts": records,
            }
        )
    )
    books = {}
    plays = [
        ("report", "Write the report", REPORT_TASK),
        ("report_json", "Write the report (hosts_json)", REPORT_JSON_TASK),
        ("floor", "Nothing (a debug shown only at -v)", NOOP_TASK),
    ]
    if "hosts_json:" not in MODULE.read_text(encoding="utf-8"):  # an older module
        plays = [p for p in plays if p[0] != "report_json"]
    for name, task, body in plays:
        books[name] = base / f"{name}.yml"
        books[name].write_text(PLAY.format(records=variables, task=task, body=body))
    figures: dict[str, Any] = {}
    for name, book in books.items():
        runs = []
        for _ in range(repeat):
            reports = fresh_reports(base, mode, probe_options, records)
            runs.append(ansible_play(base, book, reports))
        figures[name] = {
            "wall_s": round(min(r[0] for r in runs), 2),
            "task_s": round(min(r[1] for r in runs), 2),
            "cpu_s": round(min(r[2] for r in runs), 2),
        }
    # what the report task costs beyond a no-op task, in CPU (steady on a busy machine)
    for name in books:
        if name != "floor":
            extra = figures[name]["cpu_s"] - figures["floor"]["cpu_s"]
            figures[name]["task_cpu_s"] = round(extra, 2)
    return figures


def write_outputs(
    out: Path, mode: str, probe_options: dict[str, Any], records: list[dict[str, Any]]
) -> None:
    """Every format of a fixed run (with the drift since a fixed previous run) under `out`."""
    from relayguard.report import build_report, write_report

    out.mkdir(parents=True, exist_ok=True)
    seed_previous(out, mode, probe_options, records[: len(records) // 2])
    doc = build_report(fixed_run(mode, probe_options, FIXED_RUN["run_id"]), records)
    write_report(doc, out)


def main() -> int:
    global MODULE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=Path, help="a report.json the playbook wrote")
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ansible", action="store_true", help="also through ansible-playbook")
    parser.add_argument("--outputs", type=Path, help="write a fixed run's formats here")
    parser.add_argument("--module", type=Path, default=MODULE, help="relay_report.py to time")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    MODULE = args.module.resolve()
    if args.sample:
        mode, probe_options, records = sample_records(args.sample)
    else:
        mode, probe_options, records = fleet_records(args.hosts)
    if args.outputs:
        write_outputs(args.outputs, mode, probe_options, records)
        return 0
    base = Path(tempfile.mkdtemp(prefix="rg-bench-report-"))
    try:
        result: dict[str, Any] = {
            "hosts": len(records),
            "records": str(args.sample or RECORDS.relative_to(ROOT)),
            "hosts_arg_bytes": len(json.dumps(records)),
            "inproc": inproc(base, mode, probe_options, records, args.repeat),
            "process": process(base, mode, probe_options, records, args.repeat),
        }
        if args.ansible:
            result["ansible"] = ansible(base, mode, probe_options, records, args.repeat)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
