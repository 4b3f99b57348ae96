"""The batch that once lost its result: smtp_relay_probe on two real Postfix hosts through
ansible-playbook, run twenty times (issue: "Module result deserialization failed: No end of
json char found" in one of three secure-relay.yml runs). Every run must hand Ansible the whole
result, with both verdicts. The cause and the fix (stdout made blocking before the single
write) are in docs/reliability.md; tests/ansible/test_probe_module.py shows the cut on a
non-blocking pipe without the fix. The module runs as a module here, under another interpreter
than the controller's own (a wrapper around the same Python): on the controller's own Python its
action runs it in the task's worker, with no pipe to cut (plugins/plugin_utils/
controller_module.py), and the pipe is what this guards."""

from __future__ import annotations

import json
from pathlib import Path

from support.local_playbook import as_a_module, probe_playbook, run_local_playbook

from relayguard.lab.postfix.instance import PostfixInstance

from .conftest import PROBE_SOURCE

RUNS = 20


def test_twenty_runs_of_the_batch_all_return_whole_results(
    tmp_path: Path, open_relay_server: PostfixInstance, closed_server: PostfixInstance
) -> None:
    targets = [f"{open_relay_server.address}:25", f"{closed_server.address}:25"]
    out = tmp_path / "result.json"
    playbook = probe_playbook(
        targets, out, source_address=PROBE_SOURCE, local_domain="corp.example", timeout=10
    )
    failures: list[str] = []
    for run in range(RUNS):
        out.unlink(missing_ok=True)
        proc = run_local_playbook(tmp_path, playbook, "-vvv", *as_a_module(tmp_path))
        text = proc.stdout + proc.stderr
        if "AnsiballZ_smtp_relay_probe.py" not in proc.stdout:
            failures.append(f"run {run + 1}: the probe did not run as a module")
            continue
        if proc.returncode != 0 or "deserialization failed" in text or not out.exists():
            failures.append(f"run {run + 1}: rc {proc.returncode}: {text[-1500:]}")
            continue
        verdicts = json.loads(out.read_text())["verdicts"]
        if verdicts != {targets[0]: "open", targets[1]: "closed"}:
            failures.append(f"run {run + 1}: verdicts {verdicts}")
    assert not failures, f"{len(failures)} of {RUNS} runs failed:\n" + "\n".join(failures)
