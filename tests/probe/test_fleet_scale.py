"""A 1,000-host lab fleet probed in one process without errors (functional, not timed), and a
500-host batch result read through Ansible itself (the module's output is never cut)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.local_playbook import as_a_module, probe_playbook, run_local_playbook

from relayguard.probe import ProbeOptions, probe_targets
from relayguard.probe.targets import parse_target
from relayguard.vocabulary import Outcome, Verdict

FIRST = "127.0.34.1"
RELAYGUARD = [sys.executable, "-m", "relayguard.cli"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    lab_dir = tmp_path_factory.mktemp("fleet") / "lab"
    up = subprocess.run(
        [*RELAYGUARD, "lab", "up", "--dir", str(lab_dir), "--json", "--first-address", FIRST,
         "--hosts", "exchange2019/compliant:990,exchange2019/anon-relay:10", "--tarpit", "0",
         "--timeout", "300"],
        capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        yield dict(json.loads(up.stdout))
    finally:
        subprocess.run(
            [*RELAYGUARD, "lab", "down", "--dir", str(lab_dir)],
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip


def test_a_thousand_hosts_in_one_process(fleet: dict[str, object]) -> None:
    hosts = fleet["hosts"]
    assert isinstance(hosts, list)
    targets = [parse_target(str(h["smtp"])) for h in hosts]
    assert len(targets) == 1000
    options = ProbeOptions(
        source_address=str(fleet["untrusted_client"]), local_domain="corp.example"
    )
    results = probe_targets(targets, options)
    verdicts = [r.verdict for r in results]
    assert verdicts.count(Verdict.OPEN) == 10
    assert verdicts.count(Verdict.CLOSED) == 990
    assert not any(t.outcome in (Outcome.ERROR, Outcome.SKIPPED) for r in results for t in r.tests)
    assert all(r.connections >= 1 for r in results)


def test_a_500_host_batch_result_reaches_ansible_whole(
    fleet: dict[str, object], tmp_path: Path
) -> None:
    """The batch result of 500 hosts (megabytes of JSON) through ansible-playbook: Ansible must
    read the module's whole document ("No end of json char found" when cut) — run as a module,
    through its stdout pipe."""
    hosts = fleet["hosts"]
    assert isinstance(hosts, list)
    targets = [str(h["smtp"]) for h in hosts[-500:]]  # the ten open twins are at the end
    out = tmp_path / "result.json"
    playbook = probe_playbook(
        targets, out, source_address=fleet["untrusted_client"], local_domain="corp.example"
    )
    proc = run_local_playbook(tmp_path, playbook, *as_a_module(tmp_path), timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert out.stat().st_size > 1_000_000
    verdicts = json.loads(out.read_text())["verdicts"]
    assert len(verdicts) == 500
    assert sorted(set(verdicts.values())) == ["closed", "open"]
    assert list(verdicts.values()).count("open") == 10
