"""Hostile or malformed option values are refused before any WinRM call, naming the option and
the value: the twin (armed with faults that every op would consume) saw no command at all.
Both task functions the modules run, and one real ansible-playbook run of each module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.collection_specs import CONNECTION_SPEC, defaults

from exchange_remediation.labrun import Lab, running_lab
from relayguard.exchange.patch_task import run_patch_task
from relayguard.exchange.relay_task import TaskFailure, run_relay_task
from relayguard.lab.exchange.ops import OPS
from relayguard.lab.exchange.state import Fault, TwinState

GUARD = 1000
SPEC = "exchange55/sp2-noreroute:1,exchange2019/anon-relay:1"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(SPEC, "127.0.56.1") as running:
        for host in running.hosts:

            def arm(state: TwinState) -> None:
                state.lab.faults = [Fault(op=op, count=GUARD) for op in OPS]

            running.store(host["name"]).update(arm)
        yield running


def untouched(lab: Lab) -> bool:
    return all(
        [f.count for f in lab.state(h["name"]).lab.faults] == [GUARD] * len(OPS) for h in lab.hosts
    )


def connection(lab: Lab, host: dict[str, Any]) -> dict[str, Any]:
    params = defaults(CONNECTION_SPEC)
    params.update(
        winrm_host=host["address"],
        winrm_username=host["username"],
        winrm_password=host["password"],
        ca_path=lab.manifest["ca"],
    )
    return params


def relay_params(lab: Lab, **override: Any) -> dict[str, Any]:
    params = connection(lab, lab.hosts[1])
    params.update(
        state="present",
        platform="auto",
        relay_allowed_networks=["127.0.59.0/24"],
        relay_authenticated=False,
        inbound_domains=["corp.example"],
        reject_unknown_recipients=True,
        relay_connector_name="Relay EX19A",
        relay_connector_bindings=["0.0.0.0:25"],
        relay_domains=[],
        backup_file=None,
        reports_dir=str(lab.work / "reports"),
        run_id="hostile",
        host_name="ex19",
    )
    params.update(override)
    return params


HOSTILE_RELAY = [
    ("relay_allowed_networks", ["127.0.59.0/24'; Remove-Item C:\\ -Recurse; '"]),
    ("relay_allowed_networks", ["127.0.59.7/24"]),  # host bits set
    ("relay_allowed_networks", "127.0.59.0/24"),  # not a list
    ("inbound_domains", ["corp.example$(Stop-Computer)"]),
    ("inbound_domains", ["corp.example\nSet-ExecutionPolicy Bypass"]),
    ("inbound_domains", []),
    ("relay_domains", ["*"]),
    ("relay_connector_name", "Relay`; Remove-ReceiveConnector *"),
    ("relay_connector_name", "EX19A\\Default Frontend EX19A"),
    ("relay_connector_bindings", ["0.0.0.0:25; calc"]),
    ("relay_connector_bindings", ["0.0.0.0:99999"]),
    ("run_id", "../../etc"),
    ("host_name", "ex19/../../x"),
    ("backup_file", "/tmp/x\nrm -rf /"),
    ("winrm_host", "127.0.56.2; whoami"),
    ("winrm_port", 0),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE_RELAY)
def test_exchange_relay_refuses_before_any_winrm_call(lab: Lab, field: str, value: Any) -> None:
    with pytest.raises(TaskFailure) as refused:
        run_relay_task(relay_params(lab, **{field: value}), check_mode=False)
    assert str(refused.value).startswith(field), str(refused.value)
    assert refused.value.details["changed"] is False
    assert untouched(lab)


HOSTILE_PATCH = [
    ("package_path", "C:\\Patches\\..\\..\\Windows\\evil.msp"),
    ("package_path", 'C:\\Patches\\x.msp" & calc & "'),
    ("package_path", "Patches\\relative.msp"),
    ("package_path", "C:\\Patches\\script.ps1"),
    ("package_src", "/tmp/../x;rm.exe"),
    ("sha256", "not-a-hash'; $(calc)"),
    ("target_version", "15.2.1544"),
    ("minimum_version", "99.0.0.0"),
    ("installer_arguments", ["/quiet", "& calc"]),
    ("remote_temp_dir", "C:\\Windows\\Temp\\..\\..\\"),
]


def patch_params(lab: Lab, **override: Any) -> dict[str, Any]:
    params = connection(lab, lab.hosts[0])
    params.update(
        package_path="C:\\Patches\\IMS-Q237927-SP2-x86.exe",
        package_src=None,
        sha256="A" * 64,
        target_version="5.5.2650.1",
        minimum_version=None,
        installer_arguments=None,
        reboot=False,
        remote_temp_dir="C:\\Windows\\Temp",
    )
    if "package_src" in override:
        params["package_path"] = None
    params.update(override)
    return params


@pytest.mark.parametrize(("field", "value"), HOSTILE_PATCH)
def test_exchange_patch_refuses_before_any_winrm_call(lab: Lab, field: str, value: Any) -> None:
    with pytest.raises(TaskFailure) as refused:
        run_patch_task(patch_params(lab, **{field: value}), check_mode=False)
    assert str(refused.value).startswith(field), str(refused.value)
    assert untouched(lab)


def test_the_modules_refuse_in_a_real_playbook_run(lab: Lab) -> None:
    from exchange_remediation.labrun import run_playbook

    extra = {
        "relay_allowed_networks": ["127.0.59.0/24"],
        "relay_inbound_domains": ["corp.example'; Remove-Item -Recurse C:\\"],
        "relay_connector_names": {lab.hosts[1]["name"]: "Relay EX19A"},
        "relay_reports_dir": str(lab.work / "reports"),
        "relay_run_id": "hostile",
    }
    run = run_playbook(lab, "close_relay.yml", extra)
    assert run.returncode != 0
    for host in lab.hosts:
        result = run.results[host["name"]]
        assert result.get("changed") is False
        assert str(result["msg"]).startswith("inbound_domains[0]:"), result["msg"]
    patch = run_playbook(
        lab,
        "patch.yml",
        {
            "patch_packages": {
                lab.hosts[0]["name"]: {
                    "path": 'C:\\Patches\\x.msp" & calc & "',
                    "sha256": "A" * 64,
                    "version": "5.5.2650.1",
                }
            }
        },
    )
    assert patch.returncode != 0
    assert str(patch.results[lab.hosts[0]["name"]]["msg"]).startswith("package_path:")
    assert untouched(lab)
