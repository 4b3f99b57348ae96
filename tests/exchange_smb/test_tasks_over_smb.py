"""The exchange_relay and exchange_patch module tasks with `channel: smb` against the 5.5
twin: four-pass idempotence, the fault matrix (a dropped connection, a failed write, a
failed restart, a failed patch) and the password kept out of every result."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relayguard.exchange.patch_task import run_patch_task
from relayguard.exchange.relay_task import TaskFailure, run_relay_task
from relayguard.lab.exchange import profiles
from relayguard.lab.exchange.packages import DEFAULT_PACKAGES, sha256
from relayguard.lab.exchange.state import Fault, TwinState

from .conftest import PASSWORD, USER, Twin, spec

Make = Callable[[TwinState], Twin]


def relay_params(twin: Twin, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "winrm_host": twin.address,
        "winrm_username": USER,
        "winrm_password": PASSWORD,
        "channel": "smb",
        "smb_port": twin.smb_port,
        "winrm_command_timeout": 30,
        "smtp_wait": True,
        "smtp_port": twin.smtp_port,
        "smtp_timeout": 30,
        "relay_allowed_networks": ["127.0.59.0/24"],
        "relay_authenticated": True,
        "inbound_domains": ["corp.example"],
        "reject_unknown_recipients": False,
        "reports_dir": str(tmp_path / "reports"),
        **extra,
    }


def test_relay_task_over_smb_is_idempotent_over_four_passes(smb_twin: Make, tmp_path: Path) -> None:
    twin = smb_twin(profiles.ex55_sp2_reroute_open(spec("fourpass")))
    check = run_relay_task(relay_params(twin, tmp_path, run_id="check"), check_mode=True)
    assert check["changed"]
    x = twin.store.load().exchange55
    assert x is not None and x.Parameters.RelayFlags is None  # check mode wrote nothing
    changed = [
        run_relay_task(relay_params(twin, tmp_path, run_id=f"pass{n}"), check_mode=False)["changed"]
        for n in range(4)
    ]
    assert changed == [True, False, False, False]
    x = twin.store.load().exchange55
    assert x is not None and x.Parameters.RelayFlags == 2 | 8
    assert x.Running is not None and x.Running.Parameters == x.Parameters  # restarted
    for result_file in (tmp_path / "reports").rglob("*"):
        if result_file.is_file():
            assert PASSWORD not in result_file.read_text()


@pytest.mark.parametrize("fault", ["smb.registry.set", "smb.service.start", "smb.service.stop"])
def test_relay_task_over_smb_rolls_back_a_failed_step(
    smb_twin: Make, tmp_path: Path, fault: str
) -> None:
    state = profiles.ex55_sp2_reroute_open(spec(fault.replace(".", "")))
    state.lab.faults = [Fault(op=fault)]
    twin = smb_twin(state)
    with pytest.raises(TaskFailure) as caught:
        run_relay_task(relay_params(twin, tmp_path), check_mode=False)
    text = json.dumps(caught.value.details, default=str) + str(caught.value)
    assert caught.value.details.get("restored") is True, text
    assert PASSWORD not in text
    x = twin.store.load().exchange55
    assert x is not None and x.Parameters.RelayFlags is None


def test_relay_task_over_smb_with_the_host_unreachable_changes_nothing(
    smb_twin: Make, tmp_path: Path
) -> None:
    """A dropped connection: the SMB endpoint is gone before the task starts."""
    twin = smb_twin(profiles.ex55_sp2_reroute_open(spec("drop")))
    twin.smb.stop()
    with pytest.raises(TaskFailure) as caught:
        run_relay_task(relay_params(twin, tmp_path), check_mode=False)
    assert "connection failed" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def _patch_params(twin: Twin, tmp_path: Path) -> dict[str, Any]:
    package = next(p for p in DEFAULT_PACKAGES if p.AppliesTo == "5.5.2448")
    src = tmp_path / package.FileName
    src.write_bytes(package.content())
    return {
        "winrm_host": twin.address,
        "winrm_username": USER,
        "winrm_password": PASSWORD,
        "channel": "smb",
        "smb_port": twin.smb_port,
        "winrm_command_timeout": 30,
        "smtp_wait": True,
        "smtp_port": twin.smtp_port,
        "smtp_timeout": 30,
        "package_src": str(src),
        "sha256": sha256(package.content()),
        "target_version": package.FileVersion,
    }


def test_patch_task_over_smb_installs_once_then_reports_no_change(
    smb_twin: Make, tmp_path: Path
) -> None:
    twin = smb_twin(profiles.ex55_sp2_reroute_open(spec("patchtask")))
    params = _patch_params(twin, tmp_path)
    first = run_patch_task(params, check_mode=False)
    assert first["changed"]
    x = twin.store.load().exchange55
    assert x is not None and x.ImcFileVersion == params["target_version"]
    assert [run_patch_task(params, check_mode=False)["changed"] for _ in range(3)] == [False] * 3
    assert PASSWORD not in json.dumps(first, default=str)


def test_a_failed_patch_over_smb_is_reported_and_changes_nothing(
    smb_twin: Make, tmp_path: Path
) -> None:
    state = profiles.ex55_sp2_reroute_open(spec("patchfault"))
    state.lab.faults = [Fault(op="smb.patch.run")]
    twin = smb_twin(state)
    with pytest.raises(TaskFailure) as caught:
        run_patch_task(_patch_params(twin, tmp_path), check_mode=False)
    assert PASSWORD not in str(caught.value)
    x = twin.store.load().exchange55
    assert x is not None and x.ImcFileVersion == profiles.EX55_IMC_VERSIONS[2]
