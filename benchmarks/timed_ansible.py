"""The environment of an ansible-playbook run a benchmark times (bench_playbook.py,
bench_report.py): the repository's ansible.cfg, the venv's binaries, and the timing callback
(callback_plugins/relayguard_timing.py) writing its figures to `timing`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def timed_env(timing: Path, **extra: str) -> dict[str, str]:
    """os.environ with Ansible set up as the benchmarks run it, and `extra` over it."""
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ANSIBLE_CALLBACK_PLUGINS": str(HERE / "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "relayguard_timing",
        "RELAYGUARD_TIMING_OUT": str(timing),
        **extra,
    }
