#!/usr/bin/env python3
"""Fleet probe benchmark: relayguard against nmap's smtp-open-relay, side by side, same run.

Method (docs/performance.md): bring up a lab fleet on loopback (`relayguard lab up`), probe
every host from the lab's untrusted client address with relayguard (one process) and with
nmap 7.93's smtp-open-relay (one nmap process over the same targets), each as a child process
measured with wait4(): wall time, CPU time (user+sys) and peak RSS; count tests per host; and
compare verdicts host by host. Scenarios:

  a  200 closed hosts that answer at once          (Exchange 2019 compliant twins, tarpit 0)
  b  10 closed hosts that tarpit 5 s before every error reply (Exchange's TarpitInterval)
  b16 (b) with --connections-per-host 16 (the default bound is a polite 4)
  c  1,000 closed hosts (relayguard; nmap too unless --skip-nmap-c)
  m  a mixed fleet: every Exchange twin profile (5.5 and 2013..SE, open and closed) and the
     real Postfix, Exim and Sendmail instances, open and closed; relayguard and nmap compared
     test by test on nmap's 16 (tests/support/nmap_agreement.py), the raw outputs and the
     comparison written to --results (benchmarks/results)

Traffic goes only to the lab's loopback addresses. Needs root for nmap -S/-e lo (and for the
real MTAs of m). Run it in a network namespace of its own:
  unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/bench_probe.py m'
Usage: .venv/bin/python benchmarks/bench_probe.py [a b b16 c m] [--json OUT] [--skip-nmap-c]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support.nmap import NmapConclusion, nmap_pairs, parse_script_output  # noqa: E402
from support.nmap_agreement import (  # noqa: E402
    Agreement,
    compare_fleet,
    host_srvname,
    nmap_hosts_from_xml,
)

from relayguard.lab.exchange import profiles, smtp55, smtp_modern  # noqa: E402
from relayguard.lab.exchange.dialogue import SessionFacts  # noqa: E402
from relayguard.lab.exchange.mailpath import parse_path  # noqa: E402
from relayguard.vocabulary import Platform  # noqa: E402

# `python -m relayguard.cli` so that PYTHONPATH can point the benchmark at any checkout
RELAYGUARD = [sys.executable, "-m", "relayguard.cli"]
FIRST_ADDRESS = "127.0.34.1"  # clear of the demo lab (127.0.30.x); shared with test_fleet_scale
SCENARIOS: dict[str, dict[str, Any]] = {
    "a": {"hosts": "exchange2019/compliant:200", "tarpit": 0.0},
    "b": {"hosts": "exchange2019/compliant:10", "tarpit": 5.0},
    # (b) again, allowing 16 connections per host instead of the polite default of 4
    "b16": {
        "hosts": "exchange2019/compliant:10",
        "tarpit": 5.0,
        "probe_args": ["--connections-per-host", "16"],
    },
    "c": {"hosts": "exchange2019/compliant:1000", "tarpit": 0.0},
}
# (m): one host of every profile the lab plans, open and closed. Exchange twins: 5.5's four
# (three open, sp4-closed) and 2013/2016/2019/SE's four each (anon-relay and star-domain
# open, compliant and closed-unpatched closed); the real servers (root only): Postfix open,
# Debian default (4xx) and closed, Exim and Sendmail open and closed.
MIXED_PROFILES = {
    "exchange55": ("sp2-noreroute", "sp2-reroute-open", "sp3-wide-allow", "sp4-closed"),
    **{
        kind: ("anon-relay", "star-domain", "compliant", "closed-unpatched")
        for kind in ("exchange2013", "exchange2016", "exchange2019", "exchangese")
    },
    "postfix": ("open_relay", "debian_default", "closed"),
    "exim": ("open_relay", "closed"),
    "sendmail": ("open_relay", "closed"),
}
SCENARIOS["m"] = {
    "hosts": ",".join(f"{k}/{p}:1" for k, profiles in MIXED_PROFILES.items() for p in profiles),
    "tarpit": 0.0,
    "compare": True,  # test by test against nmap, raw results kept
}
RESULTS = ROOT / "benchmarks" / "results"
TWIN_DOMAIN = "corp.example"  # the Exchange twins' organisation domain (lab profiles.ORG_DOMAIN)
REAL_MTAS = ("postfix", "exim", "sendmail")


def twin_dispositions(host: dict[str, Any], source: str, srvname: str) -> dict[int, str]:
    """What an Exchange twin of this profile decides for each of nmap's 16 envelopes from
    `source`, by the lab's own SMTP model called directly: `deliver`, `ndr`, `none` (MAIL or
    RCPT refused), `relay` (passed on towards the foreign domain, example.com) or
    `relay-self` (passed on to the domain the recipient names, which for nmap's routed forms is
    the server's own address literal or name: the message comes back to the server, nothing
    goes to example.com). The twin's state is rebuilt from its profile, as `lab up` builds
    it."""
    spec = profiles.TwinSpec(name=host["name"], server=host["server"], address=host["address"])
    state = profiles.build(host["profile"], spec, Platform(host["platform"]))
    session = SessionFacts(client_ip=source, server_ip=host["address"])
    out: dict[int, str] = {}
    for number, (mail_from, rcpt_to) in nmap_pairs(host["address"], srvname).items():
        sender, _ = parse_path(f"FROM:{mail_from}", "FROM:")
        recipient, _ = parse_path(f"TO:{rcpt_to}", "TO:")
        destination = recipient.domain
        if state.exchange55 is not None:
            x = state.exchange55
            mail = smtp55.mail_reply(x, sender)
            rcpt = smtp55.rcpt_reply(x, session, recipient)
            # 5.5 reroutes an encapsulated (IMCEA, %) address at a local domain to its target
            if smtp55.is_inbound(x, x.loaded(), recipient.domain) and not recipient.route:
                target = smtp55.encapsulated_target(recipient)
                destination = target.rpartition("@")[2] if target else destination
        else:
            assert state.modern is not None
            conn = smtp_modern.select_connector(state.modern, session)
            assert conn is not None, host["name"]
            mail = smtp_modern.mail_reply(conn, session, sender)
            rcpt = smtp_modern.rcpt_reply(state.modern, conn, session, recipient)
        decision = rcpt.disposition.value if mail.ok and rcpt.ok else "none"
        if decision == "relay" and destination.lower() != "example.com":
            decision = "relay-self"
        out[number] = decision
    return out


def local_domains(hosts: list[dict[str, Any]]) -> list[str]:
    """--local-domain for the twins only: each real MTA accepts mail for its own host name,
    the name in its banner, which is the probe's default."""
    return [
        arg
        for h in hosts
        if h["platform"] not in REAL_MTAS
        for arg in ("--local-domain", f"{h['smtp']}={TWIN_DOMAIN}")
    ]


@dataclass
class Measure:
    tool: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    tests_per_host: float
    verdicts: dict[str, str]
    server_cpu_s: float = 0.0  # CPU the lab's SMTP servers spent answering this tool
    raw: str = ""  # the tool's own output (relayguard's JSON, nmap's XML)

    def figures(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("verdicts", "raw")}


def process_cpu(pid: int) -> float:
    """User+system CPU seconds of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_server_cpu(lab_pid: int, run: Any, *args: Any) -> Measure:
    before = process_cpu(lab_pid)
    measure: Measure = run(*args)
    measure.server_cpu_s = round(process_cpu(lab_pid) - before, 2)
    return measure


def measured(
    command: list[str], timeout: float, env: dict[str, str] | None = None
) -> tuple[str, float, float, float]:
    """Run `command`, return stdout, wall, CPU (user+sys) and peak RSS in MiB (wait4)."""
    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL, env=env)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"{command[0]} exceeded {timeout}s")
            time.sleep(0.02)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return (
            out.read().decode(),
            wall,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024,
        )


def lab(command: str, lab_dir: Path, *extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [*RELAYGUARD, "lab", command, "--dir", str(lab_dir), "--json", *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"relayguard lab {command} failed: {proc.stderr.strip()}")
    return dict(json.loads(proc.stdout)) if proc.stdout.strip() else {}


def run_relayguard(
    targets: list[str], source: str, extra: list[str], event_loop: str = "default"
) -> Measure:
    """One probe over all targets; `extra` without --local-domain means the twins' domain for
    every target."""
    local = [] if "--local-domain" in extra else ["--local-domain", TWIN_DOMAIN]
    command = [
        *RELAYGUARD,
        "probe",
        "--json",
        "--source-address",
        source,
        *local,
        "--timeout",
        "30",
        *extra,
        *targets,
    ]
    # RELAYGUARD_EVENT_LOOP=asyncio: the standard loop instead of uvloop, as a peer
    env = {
        **os.environ,
        **({"RELAYGUARD_EVENT_LOOP": "asyncio"} if event_loop == "asyncio" else {}),
    }
    out, wall, cpu, rss = measured(command, timeout=1800, env=env)
    hosts = json.loads(out)["hosts"]
    tests = sum(len(h["tests"]) for h in hosts) / max(1, len(hosts))
    verdicts = {h["address"]: h["verdict"] for h in hosts}
    name = "relayguard" if event_loop == "default" else f"relayguard ({event_loop} loop)"
    return Measure(name, wall, cpu, rss, tests, verdicts, raw=out)


def run_nmap(addresses: list[str], source: str, normal: Path | None = None) -> Measure:
    """nmap over all addresses; `normal`: also write nmap's normal output (-oN) there."""
    command = [
        "nmap", "-Pn", "-n", "-p", "25", "-S", source, "-e", "lo",
        "--script", "smtp-open-relay", "--script-args", "smtp-open-relay.domain=example.com",
        "-vv", "-oX", "-", *(["-oN", str(normal)] if normal else []), *addresses,
    ]  # fmt: skip
    out, wall, cpu, rss = measured(command, timeout=7200)
    verdicts: dict[str, str] = {}
    for host in ET.fromstring(out).iterfind("host"):  # noqa: S314 - nmap's own output
        address = host.find("address")
        script = host.find("ports/port/script[@id='smtp-open-relay']")
        if address is None:
            continue
        conclusion, _, _ = parse_script_output(
            script.get("output", "") if script is not None else ""
        )
        verdicts[address.get("addr", "")] = {
            NmapConclusion.OPEN: "open",
            NmapConclusion.CLOSED: "closed",
            NmapConclusion.AUTH_REQUIRED: "closed",
        }.get(conclusion, "inconclusive")
    return Measure("nmap", wall, cpu, rss, 16.0, verdicts, raw=out)


def scenario(name: str, skip_nmap: bool, results_dir: Path = RESULTS) -> dict[str, Any]:
    spec = SCENARIOS[name]
    compare = bool(spec.get("compare"))
    with tempfile.TemporaryDirectory(prefix=f"rg-bench-{name}-") as tmp:
        # The real MTAs' daemons drop root: they must be able to reach their instance dirs.
        os.chmod(tmp, 0o755)  # noqa: S103 - a lab directory, no secrets of anyone else
        lab_dir = Path(tmp) / "lab"
        started = time.monotonic()
        up = lab(
            "up", lab_dir, "--hosts", str(spec["hosts"]), "--tarpit", str(spec["tarpit"]),
            "--first-address", FIRST_ADDRESS, "--timeout", "600",
        )  # fmt: skip
        lab_up_s = time.monotonic() - started
        try:
            targets = [h["smtp"] for h in up["hosts"]]
            addresses = [t.rsplit(":", 1)[0] for t in targets]
            source = str(up["untrusted_client"])
            lab_pid = int((lab_dir / "daemon.pid").read_text())
            extra = list(spec.get("probe_args", []))
            if compare:
                extra += local_domains(up["hosts"])
            ours = with_server_cpu(lab_pid, run_relayguard, targets, source, extra)
            normal = Path(tmp) / "nmap.txt" if compare else None
            theirs = (
                None if skip_nmap else with_server_cpu(lab_pid, run_nmap, addresses, source, normal)
            )
            standard = (
                with_server_cpu(lab_pid, run_relayguard, targets, source, extra, "asyncio")
                if spec["tarpit"] == 0 and not compare
                else None
            )
            nmap_normal = normal.read_text() if normal and normal.exists() else ""
        finally:
            lab("down", lab_dir)
    result: dict[str, Any] = {
        "scenario": name,
        "hosts": len(targets),
        "tarpit_s": spec["tarpit"],
        "lab_up_s": round(lab_up_s, 2),
        "relayguard": ours.figures(),
        "relayguard_verdicts": _count(ours.verdicts),
    }
    if standard is not None:  # the same probe on the standard event loop, same run
        result["relayguard_asyncio_loop"] = standard.figures()
    if theirs is not None:
        agree = sum(1 for a in addresses if ours.verdicts.get(a) == theirs.verdicts.get(a))
        result["nmap"] = theirs.figures()
        result["nmap_verdicts"] = _count(theirs.verdicts)
        result["verdict_agreement"] = f"{agree}/{len(addresses)}"
        result["wall_ratio_relayguard_over_nmap"] = round(ours.wall_s / theirs.wall_s, 3)
        result["cpu_ratio_relayguard_over_nmap"] = round(ours.cpu_s / max(theirs.cpu_s, 1e-6), 3)
        if compare:
            lab_hosts = [
                {k: h[k] for k in ("name", "platform", "profile", "expected", "address")}
                for h in up["hosts"]
            ]  # no credentials: the lab's answer carries each host's passwords
            by_address = {h["address"]: h for h in json.loads(ours.raw)["hosts"]}
            for lab_host, full in zip(lab_hosts, up["hosts"], strict=True):
                if lab_host["platform"] not in REAL_MTAS:
                    srvname = host_srvname(by_address[lab_host["address"]])
                    full_host = {**lab_host, "server": full["server"]}
                    lab_host["dispositions"] = twin_dispositions(full_host, source, srvname)
            result["comparison"] = keep_results(
                name, results_dir, ours.raw, theirs.raw, nmap_normal, lab_hosts, result
            )
    return result


def keep_results(
    name: str,
    results_dir: Path,
    relayguard_json: str,
    nmap_xml: str,
    nmap_normal: str,
    lab_hosts: list[dict[str, Any]],
    figures: dict[str, Any],
) -> dict[str, Any]:
    """Compare test by test, write the raw outputs and the comparison, return its summary."""
    document = json.loads(relayguard_json)
    comparison = compare_fleet(document, nmap_hosts_from_xml(nmap_xml), lab_hosts)
    results_dir.mkdir(parents=True, exist_ok=True)
    for host in document["hosts"]:
        host["transcript"] = []  # the dialogue of every test: most of the bytes, kept out
    head = json.dumps({k: v for k, v in document.items() if k != "hosts"})[:-1]
    hosts = ",\n".join(json.dumps(h) for h in document["hosts"])  # one host a line
    (results_dir / f"{name}-relayguard.json").write_text(f'{head}, "hosts": [\n{hosts}\n]}}\n')
    (results_dir / f"{name}-nmap.xml").write_text(nmap_xml)
    (results_dir / f"{name}-nmap.txt").write_text(nmap_normal)
    (results_dir / f"{name}-comparison.json").write_text(
        readable_json({"figures": figures, **comparison}) + "\n"
    )
    print(summary_table(comparison), file=sys.stderr)
    return {
        k: v for k, v in comparison.items() if k not in ("by_host", "test_differences", "reasons")
    }


_SCALAR_LIST = re.compile(r"\[\n\s+([^\[\]{}\n]+(?:,\n\s+[^\[\]{}\n]+)*)\n\s+\]")


def readable_json(value: Any) -> str:
    """Indented JSON with each list of plain values (a host's test row) on one line."""
    return _SCALAR_LIST.sub(
        lambda m: "[" + re.sub(r",\n\s+", ", ", m.group(1)) + "]", json.dumps(value, indent=1)
    )


def summary_table(comparison: dict[str, Any]) -> str:
    """One line per host: verdicts and the tally of nmap's 16 tests; then the totals."""
    columns = [a.value for a in Agreement]
    rows = [
        f"{'host':<28} {'lab':<7} {'relayguard':<12} {'nmap':<13} "
        + " ".join(f"{c:>20}" for c in columns)
    ]
    for host in comparison["by_host"]:
        agreement = comparison["test_columns"].index("agreement")
        counts = {c: sum(1 for t in host["tests"] if t[agreement] == c) for c in columns}
        mark = "" if host["agree"] else "  <- " + host["reason"]
        rows.append(
            f"{host['name']:<28} {host['expected']:<7} {host['relayguard']:<12} "
            f"{host['nmap']:<13} " + " ".join(f"{counts[c]:>20}" for c in columns) + mark
        )
    tally = comparison["per_test"]
    rows.append(
        f"tests: {comparison['tests']} ({', '.join(f'{k} {v}' for k, v in tally.items())}); "
        f"reasons for differences: {comparison['per_test_reasons']}; "
        f"host verdicts agree {comparison['host_verdicts_agree']}/{comparison['hosts']}; "
        f"lab's expected verdict: relayguard {comparison['relayguard_matches_lab']}, nmap "
        f"{comparison['nmap_matches_lab']}; unexplained {comparison['unexplained']}"
    )
    return "\n".join(rows)


def _count(verdicts: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for verdict in verdicts.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=["a", "b", "c"], choices=list(SCENARIOS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--skip-nmap-c", action="store_true", help="no nmap on 1,000 hosts")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="where m writes raw results and comparison"
    )
    args = parser.parse_args()
    results = []
    for name in args.scenarios:
        skip = name == "c" and args.skip_nmap_c
        results.append(scenario(name, skip_nmap=skip, results_dir=args.results))
        print(json.dumps(results[-1], indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
