"""The smtp_relay_probe module in a real ansible-playbook run, in normal and check mode."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml
from support.local_playbook import ROOT, probe_playbook, run_local_playbook
from support.scripted_smtp import Script, relay_policy, serve


def run_playbook(
    tmp_path: Path, targets: list[str], *extra: str, ports: list[int] | None = None
) -> tuple[int, dict[str, object]]:
    out = tmp_path / "result.json"
    options: dict[str, object] = {"timeout": 3, "local_domain": "test.example"}
    if ports:
        options["ports"] = ports
    proc = run_local_playbook(tmp_path, probe_playbook(targets, out, **options), *extra)
    data = json.loads(out.read_text()) if out.exists() else {}
    if proc.returncode:
        data["_stdout"] = proc.stdout + proc.stderr
    return proc.returncode, data


@pytest.mark.parametrize("check", [False, True])
def test_module_probes_and_never_changes(tmp_path: Path, check: bool) -> None:
    with (
        serve(Script(relay_policy(True)), host="127.0.2.31") as open_srv,
        serve(Script(relay_policy(False)), host="127.0.2.32") as closed_srv,
    ):
        rc, result = run_playbook(
            tmp_path, [open_srv.target, closed_srv.target], *(["--check"] if check else [])
        )
    assert rc == 0, result.get("_stdout")
    assert result["changed"] is False
    assert result["verdicts"] == {open_srv.target: "open", closed_srv.target: "closed"}
    assert result["open"] == [open_srv.target]
    probe = result["probe"]
    assert isinstance(probe, dict) and probe["schema"] == "relayguard.probe/1"
    assert probe["hosts"] == result["hosts"]  # the whole document by default


def test_module_probes_a_host_on_each_of_its_ports(tmp_path: Path) -> None:
    # one host, two listeners: the open one and the closed one each get their own verdict
    with (
        serve(Script(relay_policy(True)), host="127.0.2.33") as open_srv,
        serve(Script(relay_policy(False)), host="127.0.2.33") as closed_srv,
    ):
        rc, result = run_playbook(tmp_path, ["127.0.2.33"], ports=[open_srv.port, closed_srv.port])
    assert rc == 0, result.get("_stdout")
    assert result["verdicts"] == {open_srv.target: "open", closed_srv.target: "closed"}
    assert result["open"] == [open_srv.target]


def test_module_names_each_groups_entries_and_its_worst(tmp_path: Path) -> None:
    # secure-relay.yml's batch: targets given as groups (inventory name: its ports), each
    # group's entries and worst one named, the entries returned once (document_hosts false)
    with (
        serve(Script(relay_policy(True)), host="127.0.2.34") as open_srv,
        serve(Script(relay_policy(False)), host="127.0.2.34") as closed_srv,
        serve(Script(relay_policy(False)), host="127.0.2.35") as other_srv,
    ):
        out = tmp_path / "result.json"
        groups = {"mx1": [closed_srv.target, open_srv.target], "mx2": [other_srv.target]}
        play = probe_playbook(
            [], out, timeout=3, local_domain="test.example", document_hosts=False
        ).replace("        targets: []\n", f"        groups: {json.dumps(groups)}\n")
        proc = run_local_playbook(tmp_path, play)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(out.read_text())
    hosts = result["hosts"]
    assert sorted(h["target"] for h in hosts) == sorted(groups["mx1"] + groups["mx2"])
    mx1, mx2 = result["by_name"]["mx1"], result["by_name"]["mx2"]
    assert sorted(hosts[i]["target"] for i in mx1["entries"]) == sorted(groups["mx1"])
    assert hosts[mx1["worst"]]["target"] == open_srv.target  # the open port is the host's
    assert hosts[mx2["worst"]]["verdict"] == "closed"
    # the document's other parts, its entries once (in hosts)
    assert "hosts" not in result["probe"] and result["probe"]["options"], result["probe"]


def test_module_refuses_bad_input_naming_the_field(tmp_path: Path) -> None:
    rc, result = run_playbook(tmp_path, ["bad target;rm -rf /"])
    assert rc != 0
    assert "bad target;rm -rf /" in str(result.get("_stdout"))


def test_module_refuses_a_password_in_the_vantage_url(tmp_path: Path) -> None:
    proc = run_local_playbook(
        tmp_path,
        """
- name: Probe
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Probe through a jump host given with a password
      relayguard.mail.smtp_relay_probe:
        targets: ["127.0.2.60:25"]
        via: ["ssh://ops:hunter2secret@127.0.2.61"]
""",
    )
    assert proc.returncode != 0
    assert "via[0]" in proc.stdout
    assert "hunter2secret" not in proc.stdout + proc.stderr


# The module run as Ansible runs it, but its stdout a pipe that is non-blocking (as an event
# loop or a child sharing the pipe may leave it) and small (4 KiB), read by a thread that
# starts draining only once the pipe is full. Without the module's blocking_stdio() its write
# fails part-way (BlockingIOError) the moment the pipe fills, and the JSON is cut short.
_NON_BLOCKING_PIPE = """
import fcntl, json, os, runpy, sys, termios, threading, time, array
args, module = sys.argv[1], sys.argv[2]
r, w = os.pipe()
fcntl.fcntl(w, 1031, 4096)  # F_SETPIPE_SZ
size = fcntl.fcntl(w, 1032)  # F_GETPIPE_SZ
os.dup2(w, 1)
os.set_blocking(1, False)
chunks = []
def drain():
    count = array.array("i", [0])
    while True:  # wait until the pipe is full (or the writer closed it), then read it all
        fcntl.ioctl(r, termios.FIONREAD, count)
        if count[0] >= size or done.is_set():
            break
        time.sleep(0.001)
    while data := os.read(r, 65536):
        chunks.append(data)
done = threading.Event()
reader = threading.Thread(target=drain)
reader.start()
sys.argv = [module, args]
try:
    runpy.run_path(module, run_name="__main__")
except SystemExit:
    pass
finally:
    sys.stdout.flush()
    os.close(1)
    os.close(w)
    done.set()
    reader.join()
    os.write(2, b"".join(chunks))
"""


def test_a_result_larger_than_a_non_blocking_pipe_is_written_whole(tmp_path: Path) -> None:
    with serve(Script(relay_policy(False)), host="127.0.2.212") as srv:
        args = tmp_path / "args.json"
        args.write_text(
            json.dumps({"ANSIBLE_MODULE_ARGS": {"targets": [srv.target], "timeout": 3}})
        )
        module = ROOT / "plugins" / "modules" / "smtp_relay_probe.py"
        done = subprocess.run(
            [sys.executable, "-c", _NON_BLOCKING_PIPE, str(args), str(module)],
            capture_output=True,
            timeout=120,
            check=False,
        )
    written = done.stderr.decode("utf-8", "replace")
    start = written.find('{"changed"')
    assert start >= 0, written[-3000:]
    result = json.loads(written[start:])  # whole: cut short, this raises
    assert result["verdicts"] == {srv.target: "closed"}
    assert len(written) - start > 4096


def test_a_large_result_reaches_ansible_whole(tmp_path: Path) -> None:
    # a dozen hosts make a result of a few hundred KB, several times a pipe's 64 KiB buffer:
    # the module's single write must not be cut short ("No end of json char found")
    with ExitStack() as stack:
        servers = [
            stack.enter_context(serve(Script(relay_policy(False)), host=f"127.0.2.{200 + i}"))
            for i in range(12)
        ]
        rc, result = run_playbook(tmp_path, [s.target for s in servers])
    assert rc == 0, str(result.get("_stdout", ""))[-3000:]
    assert len(json.dumps(result)) > 4 * 65536
    assert set(result["verdicts"].values()) == {"closed"}  # type: ignore[union-attr]


def test_role_probes_each_of_relay_probe_ports_and_keeps_the_worst(tmp_path: Path) -> None:
    # the preflight's record (relay_inputs, as written, over the role's defaults) expands
    # relay_smtp_target on one port of relay_probe_ports to the host on each of them; then
    # roles/relay/tasks/probe.yml gives the host its worst port (open)
    tasks = yaml.safe_load((ROOT / "roles/relay/tasks/preflight.yml").read_text())
    inputs = next(t for t in tasks if "relayguard.mail.relay_inputs" in t)
    defaults = yaml.safe_load((ROOT / "roles/relay/defaults/main.yml").read_text())
    with (
        serve(Script(relay_policy(False)), host="127.0.2.221") as closed_srv,
        serve(Script(relay_policy(True)), host="127.0.2.221") as open_srv,
    ):
        out = tmp_path / "record.json"
        settings = {
            **defaults,
            "relay_probe_phase": "before",
            "relay_reachability": {"hosts": {}},  # (the reachability call is not made here)
            "relay_allowed_networks": ["10.0.0.0/8"],
            "relayguard_platform": "postfix",
            "relay_smtp_target": closed_srv.target,
            "relay_probe_ports": [closed_srv.port, open_srv.port],
            "relay_probe_external_domain": "example.com",
            "relay_probe_timeout": 3,
            "relay_probe_host_timeout": 60,
            "relay_probe_connections_per_host": 1,
            # no relay_probe_local_domain: the host is probed at its first inbound domain
            "relay_inbound_domains": [".sub.example", "own.example"],
        }
        proc = run_local_playbook(
            tmp_path,
            f"""
- name: Probe as the role does
  hosts: localhost
  gather_facts: false
  vars: {json.dumps(settings)}
  tasks:
    - {json.dumps(inputs)}
    - name: The role's probe step
      ansible.builtin.import_tasks: {ROOT / "roles/relay/tasks/probe.yml"}
    - name: Save what the role recorded
      ansible.builtin.copy:
        content: >-
          {{{{ {{'targets': relay_preflight.record.probe_targets, 'before': relay_before}}
             | to_json }}}}
        dest: {out}
        mode: "0600"
""",
        )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    record = json.loads(out.read_text())
    assert record["targets"] == [closed_srv.target, open_srv.target]
    assert record["before"]["target"] == open_srv.target
    assert record["before"]["verdict"] == "open"
    assert record["before"]["local_domain"] == "own.example"  # not a leading-dot entry
