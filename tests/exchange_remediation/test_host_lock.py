"""Two runs against one Exchange host cannot interleave changes; a killed run's lock is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest
from support.collection_specs import CONNECTION_SPEC, defaults

from relayguard.exchange.hostlock import HostLocked, host_lock
from relayguard.exchange.patch_task import run_patch_task
from relayguard.exchange.relay_task import TaskFailure, run_relay_task


@pytest.fixture(autouse=True)
def private_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    locks = tmp_path / "locks"
    monkeypatch.setenv("RELAYGUARD_LOCK_DIR", str(locks))
    return locks


def params(tmp_path: Path) -> dict[str, Any]:
    p = defaults(CONNECTION_SPEC)
    p.update(
        winrm_host="ex1.corp.example",
        winrm_username="ops",
        winrm_password="lock-test-secret",
        state="present",
        platform="auto",
        relay_allowed_networks=["192.0.2.0/24"],
        relay_authenticated=False,
        inbound_domains=["corp.example"],
        reject_unknown_recipients=True,
        relay_connector_name="Relay EX1",
        relay_connector_bindings=["0.0.0.0:25"],
        relay_domains=[],
        backup_file=None,
        reports_dir=str(tmp_path / "reports"),
        run_id="locktest",
        host_name="ex1",
        sha256="A" * 64,
        target_version="5.5.2650.1",
        package_path="C:\\Patches\\IMS-Q237927-SP2-x86.exe",
    )
    return p


def no_client(options: object) -> NoReturn:
    raise AssertionError("a locked host must not be contacted")


def test_a_second_run_is_refused_before_any_remote_call(tmp_path: Path) -> None:
    with host_lock("ex1.corp.example"):
        for task in (run_relay_task, run_patch_task):
            with pytest.raises(TaskFailure) as failure:
                task(params(tmp_path), check_mode=False, client_factory=no_client)
            message = str(failure.value)
            assert "another relayguard run is changing this host" in message
            assert f"pid {os.getpid()}" in message  # names the holder
            assert "lock-test-secret" not in message
    # released: the lock is free again (another host was never blocked)
    with host_lock("ex1.corp.example"), host_lock("ex2.corp.example"):
        pass


def test_a_killed_run_leaves_no_stale_lock(private_lock_dir: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from relayguard.exchange.hostlock import host_lock\n"
            "with host_lock('ex1.corp.example'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(300)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(HostLocked), host_lock("ex1.corp.example"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    deadline = time.monotonic() + 10
    while True:  # the kernel drops the flock with the process
        try:
            with host_lock("ex1.corp.example"):
                break
        except HostLocked:
            assert time.monotonic() < deadline, "the killed run's lock was not released"
            time.sleep(0.05)
