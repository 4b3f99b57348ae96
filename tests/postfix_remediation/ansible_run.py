"""Run ansible-playbook as a user would (real ssh connection), and read what it reported."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
_RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    output: str
    recap: dict[str, dict[str, int]]
    results: dict[str, dict[str, object]]  # host -> the last task result (tree callback)


def ansible_environment(work: Path) -> dict[str, str]:
    """The repository's ansible.cfg (library/module_utils), all state kept under `work`, no
    lingering ssh ControlMaster, host keys checked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.pop("SSH_AUTH_SOCK", None)
    env.update(
        {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_HOME": str(work / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(work / "ansible-local"),
            "ANSIBLE_REMOTE_TEMP": str(work / "ansible-remote"),
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=no -o ControlPersist=no",
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
        }
    )
    return env


def run_playbook(
    playbook: str, inventory: Path, work: Path, *args: str, timeout: float = 300.0
) -> PlaybookRun:
    tree = work / f"tree-{len(list(work.glob('tree-*')))}"
    env = ansible_environment(work)
    env["ANSIBLE_CALLBACK_TREE_DIR"] = str(tree)
    done = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(PLAYBOOKS / playbook), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = done.stdout + done.stderr
    recap = {
        m.group("host"): {k: int(v) for k, v in m.groupdict().items() if k != "host"}
        for m in _RECAP.finditer(done.stdout)
    }
    results = {}
    if tree.is_dir():
        for path in tree.iterdir():
            results[path.name] = json.loads(path.read_text())
    return PlaybookRun(done.returncode, output, recap, results)
