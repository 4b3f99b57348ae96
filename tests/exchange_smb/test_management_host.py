"""Exchange 5.5 through a Windows management host (channel via-management-host), on twins.

A WinRM twin plays the management host: its remote55.* op handlers reach the 5.5 twin over the
5.5 twin's SMB endpoint (winreg, svcctl, C$ / ADMIN$), as OpenRemoteBaseKey, Get-Service
-ComputerName, sc.exe and UNC paths do, never through its state document. Same rules, same
facts: every 5.5 profile read over SMB and through the management host gives the same facts
and verdicts. Writes, restart, rollback and the hotfix run through it; an unreachable target
and wrong credentials fail clearly, change nothing and never show a password.
Tests send traffic only to 127.0.180.0/24 (this suite's range for the management host).
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from relayguard.exchange import payloads
from relayguard.exchange.apply import ApplyError, apply_relay
from relayguard.exchange.assess import judge
from relayguard.exchange.connection import runner_for, winrm_options
from relayguard.exchange.desired import RelayDesired
from relayguard.exchange.facts import collect_facts
from relayguard.exchange.management_host import ManagementHostRunner, TargetCredential
from relayguard.exchange.smb_channel import collect_facts_smb
from relayguard.exchange.transport import (
    FailureCause,
    Secret,
    TransportError,
    WinRMClient,
    WinRMOptions,
)
from relayguard.lab.ca import LabCA, ServerCertificate
from relayguard.lab.exchange import profiles
from relayguard.lab.exchange.oplib import TwinContext
from relayguard.lab.exchange.ops import registry
from relayguard.lab.exchange.packages import DEFAULT_PACKAGES
from relayguard.lab.exchange.state import Fault, TwinState
from relayguard.lab.exchange.store import StateStore
from relayguard.lab.wsman.auth import WinRMAccount
from relayguard.lab.wsman.dispatch import PayloadDispatcher
from relayguard.lab.wsman.server import EndpointConfig, WinRMEndpoint

from .conftest import PASSWORD, SMB_PORT, USER, Twin

Make = Callable[[TwinState], Twin]
MGMT_ADDRESS = "127.0.180.1"
NOBODY = "127.0.180.254"  # nothing listens here: an unreachable 5.5 host
MGMT_USER = "mgmt-admin"
MGMT_PASSWORD = "Mgmt-Host-Pass-91c!"
AS_OF = date(2026, 12, 4)
_addresses = (f"127.0.180.{i}" for i in itertools.count(10))
PROFILES = {
    "sp2-noreroute": profiles.ex55_sp2_noreroute,
    "sp2-reroute-open": profiles.ex55_sp2_reroute_open,
    "sp3-wide-allow": profiles.ex55_sp3_wide_allow,
    "sp4-closed": profiles.ex55_sp4_closed,
}
DESIRED = RelayDesired(
    relay_allowed_networks=("127.0.59.0/24",),
    relay_authenticated=True,
    inbound_domains=(),
    reject_unknown_recipients=False,
)


def spec(name: str) -> profiles.TwinSpec:
    return profiles.TwinSpec(name=name, server="EX55M", address=next(_addresses))


@dataclass
class Management:
    endpoint: WinRMEndpoint
    certificate: ServerCertificate

    def options(self, password: str = MGMT_PASSWORD) -> WinRMOptions:
        return WinRMOptions(
            host=MGMT_ADDRESS,
            port=self.endpoint.port,
            username=MGMT_USER,
            password=Secret(password),
            ca_trust_path=str(self.certificate.ca_path),
            command_timeout=120.0,
            retry_delay=0.0,
        )

    def runner(
        self, target: str, password: str = PASSWORD, mgmt_password: str = MGMT_PASSWORD
    ) -> ManagementHostRunner:
        return ManagementHostRunner(
            WinRMClient(self.options(mgmt_password)),
            target,
            management_host=MGMT_ADDRESS,
            credential=TargetCredential(USER, Secret(password)),
        )


@pytest.fixture(scope="module")
def management(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Management]:
    root = tmp_path_factory.mktemp("mgmt")
    ca = LabCA.create(root / "ca")
    certificate = ca.issue_server_certificate(root / "server", "mgmt.lab.test", [MGMT_ADDRESS])
    # the management host is a Windows server with no Exchange of its own: any twin state
    store = StateStore(root / "mgmt.json")
    store.save(profiles.ex55_sp4_closed(profiles.TwinSpec("mgmt", "MGMT", MGMT_ADDRESS)))
    context = TwinContext(store=store, smb_port=SMB_PORT)
    endpoint = WinRMEndpoint(
        EndpointConfig(
            name="mgmt",
            address=MGMT_ADDRESS,
            accounts=(WinRMAccount(MGMT_USER, MGMT_PASSWORD),),
            twin_dir=root / "twin",
            handler=PayloadDispatcher(registry(), context),
            certificate=certificate,
            port=0,
        )
    )
    endpoint.start()
    context.scratch = endpoint.scratch
    try:
        yield Management(endpoint, certificate)
    finally:
        endpoint.stop(timeout=10)


def _facts(facts: Any) -> dict[str, Any]:
    document = facts.to_dict()
    document.pop("host")  # the name each caller gave
    return dict(document)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_smb_and_the_management_host_read_the_same_facts_and_verdicts(
    smb_twin: Make, management: Management, profile: str
) -> None:
    twin = smb_twin(PROFILES[profile](spec(profile)))
    over_smb = collect_facts_smb(twin.options(), as_of=AS_OF)
    runner = management.runner(twin.address)
    through = collect_facts(runner, as_of=AS_OF)
    assert _facts(through) == _facts(over_smb)
    assert through.exchange55 is not None and through.exchange55.imc_file_version
    smb_verdict, mgmt_verdict = judge(over_smb, as_of=AS_OF), judge(through, as_of=AS_OF)
    assert mgmt_verdict.to_dict()["exposure"] == smb_verdict.to_dict()["exposure"]
    assert mgmt_verdict.to_dict()["patch"] == smb_verdict.to_dict()["patch"]


def test_apply_through_the_management_host_closes_then_finds_nothing(
    smb_twin: Make, management: Management, tmp_path: Path
) -> None:
    twin = smb_twin(profiles.ex55_sp3_wide_allow(spec("apply")))
    first = apply_relay(
        management.runner(twin.address),
        DESIRED,
        host=twin.address,
        backup_file=tmp_path / "backup.json",
    )
    assert first.changed
    after = twin.store.load().exchange55
    assert after is not None and after.Parameters.RelayAllowList == [profiles.TRUSTED_NET_MASK]
    assert after.Service.Status == "Running"
    again = apply_relay(
        management.runner(twin.address),
        DESIRED,
        host=twin.address,
        backup_file=tmp_path / "backup.json",
    )
    assert not again.changed


def test_a_failed_restart_through_the_management_host_is_rolled_back(
    smb_twin: Make, management: Management, tmp_path: Path
) -> None:
    state = profiles.ex55_sp3_wide_allow(spec("rollback"))
    state.lab.faults = [Fault(op="smb.service.start")]
    twin = smb_twin(state)
    before = twin.store.load().exchange55
    assert before is not None
    with pytest.raises(ApplyError) as caught:
        apply_relay(
            management.runner(twin.address),
            DESIRED,
            host=twin.address,
            backup_file=tmp_path / "backup.json",
        )
    assert caught.value.restored
    after = twin.store.load().exchange55
    assert after is not None and after.Parameters == before.Parameters
    assert PASSWORD not in str(caught.value) and MGMT_PASSWORD not in str(caught.value)


def test_the_hotfix_is_copied_over_unc_and_run_as_a_one_shot_service(
    smb_twin: Make, management: Management
) -> None:
    twin = smb_twin(profiles.ex55_sp2_reroute_open(spec("patch")))
    package = next(p for p in DEFAULT_PACKAGES if p.AppliesTo == "5.5.2448")
    runner = management.runner(twin.address)
    path = "C:\\Windows\\Temp\\" + package.FileName  # on the management host
    data = package.content()
    for start in range(0, len(data), 3000):
        chunk = base64.b64encode(data[start : start + 3000]).decode()
        runner.run_payload(payloads.render("file.append_chunk", {"path": path, "chunk_b64": chunk}))
    result = runner.run_payload(payloads.render("exchange.install_patch", {"Path": path}))
    assert result["FileVersionBefore"] == profiles.EX55_IMC_VERSIONS[2]
    assert result["FileVersionAfter"] == "5.5.2650.1"
    assert result["ExitCode"] == 0
    x = twin.store.load().exchange55
    assert x is not None and x.ImcFileVersion == "5.5.2650.1"
    assert runner.run_payload(payloads.render("file.remove", {"path": path}))["removed"]


def test_an_unreachable_target_is_a_clear_error_naming_it(management: Management) -> None:
    runner = management.runner(NOBODY)
    with pytest.raises(TransportError) as caught:
        collect_facts(runner, as_of=AS_OF)
    text = str(caught.value)
    assert NOBODY in text and MGMT_ADDRESS in text
    assert "network path was not found" in text
    assert caught.value.cause is FailureCause.SCRIPT_FAILED
    assert PASSWORD not in text + caught.value.stderr


def test_wrong_credentials_fail_clearly_change_nothing_and_never_show_a_password(
    smb_twin: Make, management: Management, tmp_path: Path
) -> None:
    twin = smb_twin(profiles.ex55_sp3_wide_allow(spec("wrongpw")))
    before = twin.store.load()
    wrong_target = "Wrong-" + PASSWORD
    with pytest.raises(TransportError) as target_refused:  # at the first read: nothing written
        apply_relay(
            management.runner(twin.address, password=wrong_target),
            DESIRED,
            host=twin.address,
            backup_file=tmp_path / "backup.json",
        )
    wrong_mgmt = "Wrong-" + MGMT_PASSWORD
    with pytest.raises(TransportError) as mgmt_refused:
        collect_facts(management.runner(twin.address, mgmt_password=wrong_mgmt))
    assert "user name or password is incorrect" in str(target_refused.value)
    assert twin.address in str(target_refused.value)
    assert mgmt_refused.value.cause is FailureCause.AUTH_REFUSED
    assert twin.store.load().exchange55 == before.exchange55
    for error in (target_refused.value, mgmt_refused.value):
        text = f"{error!s} {error!r} {getattr(error, 'stderr', '')}"
        for secret in (PASSWORD, wrong_target, MGMT_PASSWORD, wrong_mgmt):
            assert secret not in text


def test_without_a_target_credential_the_second_hop_is_refused(
    smb_twin: Make, management: Management
) -> None:
    """A WinRM session without delegation has no network credentials (the lab's model)."""
    twin = smb_twin(profiles.ex55_sp4_closed(spec("nohop")))
    runner = ManagementHostRunner(
        WinRMClient(management.options()), twin.address, management_host=MGMT_ADDRESS
    )
    with pytest.raises(TransportError) as caught:
        collect_facts(runner)
    assert "Access is denied" in str(caught.value) and twin.address in str(caught.value)


def test_runner_for_builds_the_channel_from_module_options(management: Management) -> None:
    params = {
        "winrm_host": "127.0.180.20",
        "winrm_username": USER,
        "winrm_password": PASSWORD,
        "ca_path": str(management.certificate.ca_path),
        "channel": "via-management-host",
        "management_host": MGMT_ADDRESS,
        "management_port": management.endpoint.port,
        "management_username": MGMT_USER,
        "management_password": MGMT_PASSWORD,
    }
    runner = runner_for(params, winrm_options(params))
    assert isinstance(runner, ManagementHostRunner)
    assert runner.target == "127.0.180.20" and runner.management_host == MGMT_ADDRESS
    assert PASSWORD not in repr(runner) and MGMT_PASSWORD not in repr(runner)
    client = runner.management
    assert isinstance(client, WinRMClient) and client.options.username == MGMT_USER
    without = dict(params, management_host=None)
    with pytest.raises(ValueError, match="management_host"):
        runner_for(without, winrm_options(without))
    rendered = runner.remote_payload(payloads.render("exchange55.read_config", {}))
    assert rendered.op == "remote55.read_config" and PASSWORD not in repr(rendered)
    decoded = payloads.decode_params(rendered.script)
    assert decoded["Target"] == "127.0.180.20" and decoded["Credential"]["UserName"] == USER
    assert json.dumps(decoded).count(PASSWORD) == 1  # data for PSCredential, nowhere else


def test_relayguard_facts_via_the_management_host_never_prints_a_password(
    smb_twin: Make,
    management: Management,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from relayguard.cli import main

    twin = smb_twin(profiles.ex55_sp4_closed(spec("cli")))
    monkeypatch.setenv("RG_TARGET_PASSWORD", PASSWORD)
    monkeypatch.setenv("RG_MGMT_PASSWORD", MGMT_PASSWORD)
    argv = ["facts", "--channel", "via-management-host", "--management-host", MGMT_ADDRESS,
            "--management-port", str(management.endpoint.port),
            "--management-username", MGMT_USER, "--management-password-env", "RG_MGMT_PASSWORD",
            "--username", USER, "--password-env", "RG_TARGET_PASSWORD",
            "--ca-trust-path", str(management.certificate.ca_path),
            "--json", twin.address]  # fmt: skip
    status = main(argv)
    out, err = capsys.readouterr()
    host = json.loads(out)["hosts"][0]
    assert host["error"] is None, host["error"]
    assert host["facts"]["msexcimc"]["file_version"] == profiles.EX55_IMC_VERSIONS[4]
    assert host["exposure"]["verdict"] == "inconclusive" and status == 3
    monkeypatch.setenv("RG_MGMT_PASSWORD", "Wrong-" + MGMT_PASSWORD)
    assert main(argv) == 3
    out2, err2 = capsys.readouterr()
    assert "auth refused" in json.loads(out2)["hosts"][0]["error"]
    monkeypatch.setenv("RG_MGMT_PASSWORD", MGMT_PASSWORD)
    monkeypatch.setenv("RG_TARGET_PASSWORD", "Wrong-" + PASSWORD)
    assert main(argv) == 3
    out3, err3 = capsys.readouterr()
    assert "password is incorrect" in json.loads(out3)["hosts"][0]["error"]
    for text in (out, err, out2, err2, out3, err3):
        assert PASSWORD not in text and MGMT_PASSWORD not in text
