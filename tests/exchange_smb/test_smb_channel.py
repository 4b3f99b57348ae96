"""Exchange 5.5 over SMB against the twin, checked with a client nobody here wrote (Samba).

Samba's `net rpc registry getvalue` and `smbclient` read the same IMS values and the same
msexcimc.exe version as relayguard's SMB channel, from every 5.5 profile of the lab; all three
are refused with a wrong password; a write plus an MSExchangeIMC restart over SMB changes what
the twin's SMTP listener answers (one state document); the relay apply room (backup, plan,
rollback) and the patch op run over SMB unchanged. Tests send traffic only to 127.0.130.0/24.
"""

from __future__ import annotations

import base64
import json
import smtplib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from impacket import nmb
from impacket.smbconnection import SMBConnection
from support.realserver import require_root, require_tool

from relayguard.exchange import payloads
from relayguard.exchange.apply import ApplyError, SmtpWait, apply_relay
from relayguard.exchange.desired import RelayDesired
from relayguard.exchange.smb_channel import (
    SmbChannel,
    SmbOptions,
    SmbRunner,
    collect_facts_smb,
    file_version_of,
    temp_path,
)
from relayguard.exchange.transport import FailureCause, Secret, TransportError
from relayguard.lab.exchange import profiles
from relayguard.lab.exchange.packages import DEFAULT_PACKAGES
from relayguard.lab.exchange.state import Fault, TwinState
from relayguard.lab.exchange.store import StateStore
from relayguard.lab.smb.server import SmbTwin

from .conftest import PASSWORD, TRUSTED, UNTRUSTED, USER, Twin, spec, wait_port

Make = Callable[[TwinState], Twin]
PARAMETERS = "HKLM\\SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC\\Parameters"
SETUP = "HKLM\\SOFTWARE\\Microsoft\\Exchange\\Setup"
IMC = "exchsrvr\\connect\\msexcimc\\bin\\msexcimc.exe"
# NT 4.0 / 2000 speak SMB1 only, without signing on the twin: Samba must be allowed to.
SAMBA_SMB1 = [
    "--option=client min protocol=NT1",
    "--option=client signing=disabled",
    "--option=client ipc signing=disabled",
]
PROFILES = {
    "sp2-noreroute": profiles.ex55_sp2_noreroute,
    "sp2-reroute-open": profiles.ex55_sp2_reroute_open,
    "sp3-wide-allow": profiles.ex55_sp3_wide_allow,
    "sp4-closed": profiles.ex55_sp4_closed,
}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def net_getvalue(twin: Twin, key: str, name: str, password: str = PASSWORD) -> Any:
    """What Samba's `net rpc registry getvalue` prints, parsed: int, list, or None."""
    done = run(
        ["net", "rpc", "registry", "getvalue", key, name, "-I", twin.address,
         "-p", str(twin.smb_port), "-U", f"{USER}%{password}", *SAMBA_SMB1]
    )  # fmt: skip
    if done.returncode != 0:
        return None
    lines = done.stdout.splitlines()
    kind = lines[0].split("=", 1)[1].strip()
    if kind == "REG_DWORD":
        return int(lines[1].split("=", 1)[1])
    values = [line.split("=", 1)[1].strip() for line in lines[1:] if line.startswith("Value[")]
    return [v[1:-1] for v in values]  # each printed in double quotes


def smbclient_get(twin: Twin, remote: str, local: Path, password: str = PASSWORD) -> int:
    done = run(
        ["smbclient", f"//{twin.address}/C$", "-p", str(twin.smb_port),
         "-U", f"{USER}%{password}", *SAMBA_SMB1, "-c", f'get "{remote}" "{local}"']
    )  # fmt: skip
    return done.returncode


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_samba_and_relayguard_read_the_same_ims_values(
    smb_twin: Make, profile: str, tmp_path: Path
) -> None:
    require_tool("net", "smbclient")
    state = PROFILES[profile](spec(profile))
    twin = smb_twin(state)
    x = state.exchange55
    assert x is not None
    runner = SmbRunner(SmbChannel(twin.options()))
    config = runner.read_config({})
    detect = runner.detect({})
    params = config["Parameters"]
    for name in ("RelayFlags", "RelayAllowList", "RelayDenyList", "RelayLocalIPList"):
        assert net_getvalue(twin, PARAMETERS, name) == params[name], name
        assert params[name] == getattr(x.Parameters, name), name  # and both are the twin's
    assert (
        net_getvalue(twin, SETUP, "NewestBuild") == detect["Exchange55"]["SetupKey"]["NewestBuild"]
    )
    local = tmp_path / "msexcimc.exe"
    assert smbclient_get(twin, IMC, local) == 0
    parts = file_version_of(local.read_bytes())
    assert parts is not None
    assert ".".join(map(str, parts)) == config["ImcFileVersion"] == x.ImcFileVersion
    assert detect["Exchange55"]["Imc"]["FileVersion"] == x.ImcFileVersion
    assert config["Service"]["Status"] == "Running"


def test_an_empty_multi_string_reads_as_empty_not_absent(smb_twin: Make) -> None:
    state = profiles.ex55_sp4_closed(spec("empty"))
    twin = smb_twin(state)
    params = SmbRunner(SmbChannel(twin.options())).read_config({})["Parameters"]
    assert params["RelayDenyList"] == [] and params["RelayLocalIPList"] == []


def test_a_wrong_password_is_refused_by_samba_and_relayguard(
    smb_twin: Make, tmp_path: Path
) -> None:
    require_tool("net", "smbclient")
    twin = smb_twin(profiles.ex55_sp4_closed(spec("wrongpw")))
    wrong = "Not-The-Password-9"
    assert net_getvalue(twin, PARAMETERS, "RelayFlags", password=wrong) is None
    assert smbclient_get(twin, IMC, tmp_path / "x.exe", password=wrong) != 0
    with pytest.raises(TransportError) as caught:
        collect_facts_smb(twin.options(wrong))
    assert caught.value.cause is FailureCause.AUTH_REFUSED
    assert wrong not in str(caught.value)


def _rcpt(twin: Twin, source: str) -> tuple[int, bytes]:
    with smtplib.SMTP(twin.address, twin.smtp_port, source_address=(source, 0)) as client:
        client.ehlo("probe.example")
        client.mail("antispam@example.com")
        return client.rcpt("relaytest@example.com")


def test_a_write_and_a_restart_over_smb_close_the_smtp_relay(smb_twin: Make) -> None:
    """One state document: the registry write alone changes nothing (the IMS reads its
    parameters at start, KB Q193922); the MSExchangeIMC restart over svcctl does."""
    twin = smb_twin(profiles.ex55_sp2_reroute_open(spec("close")))
    runner = SmbRunner(SmbChannel(twin.options()))
    assert _rcpt(twin, UNTRUSTED)[0] == 250
    runner.write_config(
        {"Parameters": {"RelayFlags": 2, "RelayAllowList": [profiles.TRUSTED_NET_MASK]}}
    )
    assert _rcpt(twin, UNTRUSTED)[0] == 250
    service = runner.restart_service({"Name": "MSExchangeIMC"})
    assert service is not None and service["Status"] == "Running"
    wait_port(twin.address, twin.smtp_port)  # the listener follows the service state
    assert _rcpt(twin, UNTRUSTED) == (550, b"Relaying is prohibited")
    assert _rcpt(twin, TRUSTED)[0] == 250


def _smtp(twin: Twin) -> SmtpWait:
    return SmtpWait(twin.address, twin.smtp_port, timeout=30)


DESIRED = RelayDesired(
    relay_allowed_networks=("127.0.59.0/24",),
    relay_authenticated=True,
    inbound_domains=(),
    reject_unknown_recipients=False,
)


def test_apply_relay_over_smb_closes_then_finds_nothing_to_do(
    smb_twin: Make, tmp_path: Path
) -> None:
    twin = smb_twin(profiles.ex55_sp3_wide_allow(spec("apply")))
    first = apply_relay(
        SmbRunner(SmbChannel(twin.options())), DESIRED, host=twin.address,
        backup_file=tmp_path / "backup.json", smtp=_smtp(twin),
    )  # fmt: skip
    assert first.changed
    assert json.loads((tmp_path / "backup.json").read_text())  # saved before the first write
    x = twin.store.load().exchange55
    assert x is not None and x.Parameters.RelayAllowList == [profiles.TRUSTED_NET_MASK]
    again = apply_relay(
        SmbRunner(SmbChannel(twin.options())), DESIRED, host=twin.address,
        backup_file=tmp_path / "backup2.json", smtp=_smtp(twin),
    )  # fmt: skip
    assert not again.changed


@pytest.mark.parametrize("fault", ["smb.registry.set", "smb.service.start"])
def test_a_failed_write_or_restart_over_smb_is_rolled_back(
    smb_twin: Make, tmp_path: Path, fault: str
) -> None:
    state = profiles.ex55_sp3_wide_allow(spec(fault.replace(".", "-")))
    state.lab.faults = [Fault(op=fault)]
    twin = smb_twin(state)
    before = twin.store.load().exchange55
    assert before is not None
    with pytest.raises(ApplyError) as caught:
        apply_relay(
            SmbRunner(SmbChannel(twin.options())), DESIRED, host=twin.address,
            backup_file=tmp_path / "backup.json", smtp=_smtp(twin),
        )  # fmt: skip
    assert caught.value.restored
    after = twin.store.load().exchange55
    assert after is not None and after.Parameters == before.Parameters
    assert PASSWORD not in str(caught.value)


def _upload(runner: SmbRunner, data: bytes, path: str) -> None:
    runner.remove({"path": path})
    for start in range(0, len(data), 4096):
        chunk = base64.b64encode(data[start : start + 4096]).decode()
        runner.append_chunk({"path": path, "chunk_b64": chunk})


@pytest.mark.parametrize(("fault", "version"), [(None, "5.5.2650.1"), ("smb.patch.run", None)])
def test_the_hotfix_runs_as_a_one_shot_service_and_the_file_version_decides(
    smb_twin: Make, fault: str | None, version: str | None
) -> None:
    state = profiles.ex55_sp2_reroute_open(spec("patch" if fault is None else "patchfail"))
    if fault is not None:
        state.lab.faults = [Fault(op=fault)]
    twin = smb_twin(state)
    package = next(p for p in DEFAULT_PACKAGES if p.AppliesTo == "5.5.2448")
    runner = SmbRunner(SmbChannel(twin.options()))
    path = temp_path(package.FileName)
    _upload(runner, package.content(), path)
    result = runner.run_payload(payloads.render("exchange.install_patch", {"Path": path}))
    before = profiles.EX55_IMC_VERSIONS[2]
    assert result["FileVersionBefore"] == before
    assert result["FileVersionAfter"] == (version or before)
    assert (result["ExitCode"] == 0) is (fault is None)
    assert runner.remove({"path": path})["removed"]


def test_relayguard_facts_over_smb_never_prints_the_password(
    smb_twin: Make, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from relayguard.cli import main

    twin = smb_twin(profiles.ex55_sp4_closed(spec("cli")))
    monkeypatch.setenv("RG_SMB_PASSWORD", PASSWORD)
    argv = ["facts", "--channel", "smb", "--port", str(twin.smb_port), "--username", USER,
            "--password-env", "RG_SMB_PASSWORD", "--json", twin.address]  # fmt: skip
    status = main(argv)
    out, err = capsys.readouterr()
    host = json.loads(out)["hosts"][0]
    assert host["error"] is None
    assert host["facts"]["msexcimc"]["file_version"] == profiles.EX55_IMC_VERSIONS[4]
    # the Routing tab's storage is unknown on a real server: inconclusive, never a verdict
    assert host["exposure"]["verdict"] == "inconclusive" and status == 3
    monkeypatch.setenv("RG_SMB_PASSWORD", "Wrong-" + PASSWORD)
    assert main(argv) == 3
    out2, err2 = capsys.readouterr()
    assert "auth refused" in json.loads(out2)["hosts"][0]["error"]
    for text in (out, err, out2, err2):
        assert PASSWORD not in text


def test_nt40_is_reached_on_139_by_the_name_it_accepts(tmp_path: Path) -> None:
    """Windows NT 4.0 has SMB on 139 only, behind the NetBIOS session service, which refuses a
    session to a name that is not its own or *SMBSERVER (RFC 1002 section 4.3.4): relayguard
    and Samba's smbclient get in, a session opened to the bare address is refused."""
    require_root()
    require_tool("smbclient")
    state = profiles.ex55_sp3_wide_allow(spec("nt40"))
    x = state.exchange55
    assert x is not None
    store = StateStore(tmp_path / "nt40.json")
    store.save(state)
    smb = SmbTwin(store, state.address, 139, USER, PASSWORD, tmp_path / "nt40")
    smb.start()
    try:
        wait_port(state.address, 139)
        options = SmbOptions(state.address, USER, Secret(PASSWORD), port=139, timeout=20)
        params = SmbRunner(SmbChannel(options)).read_config({})["Parameters"]
        assert params["RelayAllowList"] == x.Parameters.RelayAllowList
        with pytest.raises(nmb.NetBIOSError):  # the address is not a NetBIOS name
            SMBConnection(state.address, state.address, sess_port=139, timeout=10)
        listed = run(
            ["smbclient", f"//{state.address}/C$", "-p", "139",
             "-U", f"{USER}%{PASSWORD}", *SAMBA_SMB1, "-c", "ls"]
        )  # fmt: skip
        assert listed.returncode == 0, listed.stdout + listed.stderr
    finally:
        smb.stop()
