"""Callback plugin relayguard_timing (benchmarks only): wall time of each task and phase.

Enabled by benchmarks/bench_playbook.py alone (ANSIBLE_CALLBACK_PLUGINS pointing here and
ANSIBLE_CALLBACKS_ENABLED=relayguard_timing); the product never loads it. A task's time runs
from its start to the next task's start (or the play's end), so it includes the forked
workers of every host the task runs on, skipped or not. The phase is the task file the task
comes from (preflight.yml, probe.yml, exchange_detect/main.yml, ...). On the playbook's end
it writes JSON to $RELAYGUARD_TIMING_OUT: per task (name, phase, seconds, how many times it
started, hosts run/skipped) and per phase.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: relayguard_timing
    type: aggregate
    short_description: wall time of each task and phase, as JSON (relayguard benchmarks)
    description: Writes per-task and per-phase wall time to $RELAYGUARD_TIMING_OUT.
    requirements: [enable in ANSIBLE_CALLBACKS_ENABLED]
"""


def _phase(path: str) -> str:
    """roles/<role>/tasks/<file>.yml:<line> → <role>/<file> ('' for a playbook's own task)."""
    file = path.rsplit(":", 1)[0]
    parts = Path(file).parts
    if "roles" in parts:
        role = parts[parts.index("roles") + 1]
        return f"{role}/{Path(file).stem}"
    return Path(file).stem


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "relayguard_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._tasks: dict[str, dict[str, Any]] = {}
        self._current: str | None = None
        self._started = 0.0
        self._playbook_started = time.monotonic()

    def _close(self) -> None:
        if self._current is not None:
            self._tasks[self._current]["seconds"] += time.monotonic() - self._started
            self._current = None

    def _start(self, task: Any) -> None:
        self._close()
        path = task.get_path() or ""
        key = f"{_phase(path)} | {task.get_name()}"
        entry = self._tasks.setdefault(
            key,
            {"task": task.get_name(), "phase": _phase(path), "seconds": 0.0, "starts": 0,
             "ok": 0, "changed": 0, "skipped": 0, "failed": 0},
        )  # fmt: skip
        entry["starts"] += 1
        self._current = key
        self._started = time.monotonic()

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self._start(task)

    def _count(self, what: str) -> None:
        if self._current is not None:
            self._tasks[self._current][what] += 1

    def v2_runner_on_ok(self, result: Any) -> None:
        self._count("changed" if result._result.get("changed") else "ok")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._count("skipped")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._count("failed")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._close()
        out = os.environ.get("RELAYGUARD_TIMING_OUT")
        if not out:
            return
        phases: dict[str, float] = {}
        for entry in self._tasks.values():
            entry["seconds"] = round(entry["seconds"], 2)
            phases[entry["phase"]] = round(phases.get(entry["phase"], 0.0) + entry["seconds"], 2)
        Path(out).write_text(
            json.dumps(
                {"wall_s": round(time.monotonic() - self._playbook_started, 2),
                 "phases": phases, "tasks": list(self._tasks.values())},
                indent=1,
            )
        )  # fmt: skip
