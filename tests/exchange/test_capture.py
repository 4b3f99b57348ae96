"""Offline assessment on Microsoft's captures of a real Exchange 2019 server (captures/E19,
HealthChecker's test data, MIT): the capture reader, every Exchange 2013+ rule, the CLI, and
captures that are incomplete or hostile."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from relayguard.exchange.assess import assess_capture
from relayguard.exchange.capture import (
    COLLECTOR,
    CaptureError,
    documents_from_capture,
    load_capture,
)
from relayguard.exchange.rules import MODERN_RULES
from relayguard.vocabulary import Platform, RuleResult, Verdict

from .powershell_syntax import assert_parses

E19 = Path(__file__).parent / "captures" / "E19"
TODAY = date(2026, 12, 4)
WORLD_CONNECTORS = {
    "WIN-CTD3L0RGEN4\\Default WIN-CTD3L0RGEN4": "HubTransport",
    "WIN-CTD3L0RGEN4\\Client Proxy WIN-CTD3L0RGEN4": "HubTransport",
    "WIN-CTD3L0RGEN4\\Default Frontend WIN-CTD3L0RGEN4": "FrontendTransport",
    "WIN-CTD3L0RGEN4\\Outbound Proxy Frontend WIN-CTD3L0RGEN4": "FrontendTransport",
    "WIN-CTD3L0RGEN4\\Client Frontend WIN-CTD3L0RGEN4": "FrontendTransport",
}
ANON = "NT AUTHORITY\\ANONYMOUS LOGON"


def capture_dir(tmp_path: Path, *names: str) -> Path:
    """A capture directory with some of Microsoft's files (all four by default)."""
    target = tmp_path / "capture"
    target.mkdir()
    for name in names or [p.name for p in E19.glob("*.xml")]:
        shutil.copy(E19 / name, target / name)
    return target


def ace_capture(identity: str, right: str, deny: bool = False) -> str:
    """An ADPermission.xml as the collector writes it (Select-Object of Get-ADPermission).
    Built here, not Microsoft's: HealthChecker's data has no ADPermission capture."""
    return f"""<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">
  <Obj RefId="0">
    <TN RefId="0">
      <T>Selected.Microsoft.Exchange.Management.RecipientTasks.ADAcePresentationObject</T>
      <T>System.Management.Automation.PSCustomObject</T>
      <T>System.Object</T>
    </TN>
    <MS>
      <S N="Identity">{identity}</S>
      <S N="User">{ANON}</S>
      <Obj N="ExtendedRights" RefId="1">
        <TN RefId="1"><T>System.String[]</T><T>System.Array</T><T>System.Object</T></TN>
        <LST><S>{right}</S></LST>
      </Obj>
      <Obj N="AccessRights" RefId="2">
        <TNRef RefId="1" />
        <LST><S>ExtendedRight</S></LST>
      </Obj>
      <B N="Deny">{str(deny).lower()}</B>
      <B N="IsInherited">false</B>
    </MS>
  </Obj>
</Objs>"""


# --- what the capture says ---------------------------------------------------------------------


def test_real_capture_reads_as_a_2019_cu11_mailbox_server(tmp_path: Path) -> None:
    detect, config, notes = documents_from_capture(load_capture(capture_dir(tmp_path)))
    assert detect["ComputerName"] == "SOLO-E19A"
    assert detect["Exchange15"]["ExSetup"]["FileVersion"] == "15.02.0986.005"
    assert config["ServerRole"] == "Mailbox" and config["FrontendTransport"] is True
    roles = {c["Identity"]: c["TransportRole"] for c in config["ReceiveConnectors"]}
    assert roles == WORLD_CONNECTORS
    frontend = next(c for c in config["ReceiveConnectors"] if c["Name"].startswith("Default F"))
    assert frontend["PermissionGroups"] == "AnonymousUsers, ExchangeServers, ExchangeLegacyServers"
    assert sorted(frontend["Bindings"]) == ["0.0.0.0:25", "[::]:25"]
    assert "0.0.0.0-255.255.255.255" in frontend["RemoteIPRanges"]
    assert frontend["TarpitInterval"] == "00:00:05" and frontend["Enabled"] is True
    domains = {d["DomainName"]: (d["DomainType"], d["Default"]) for d in config["AcceptedDomains"]}
    assert domains == {
        "Solo.com": ("Authoritative", True),
        "*.contoso.local": ("Authoritative", False),
        "*.com": ("InternalRelay", False),
    }
    assert config["AnonymousPermissions"] is None  # no ADPermission.xml: unknown, not "none"
    assert any("ADPermission.xml" in n for n in notes)


def test_real_capture_is_judged_open_for_its_star_dot_com_domain(tmp_path: Path) -> None:
    result = assess_capture(capture_dir(tmp_path), as_of=TODAY)
    assert result.error is None and result.facts is not None and result.exposure is not None
    assert result.facts.platform is Platform.EXCHANGE2019
    assert result.facts.version == "15.2.986.5"
    assert result.exposure.verdict is Verdict.OPEN
    [finding] = result.exposure.findings
    assert finding.id == "accepted-domain-public-wildcard" and finding.opens_relay
    assert finding.subject == "Wild .com" and finding.result is RuleResult.FAIL
    results = {(c.id, c.result) for c in result.exposure.checks}
    assert ("accepted-domain-star", RuleResult.PASS) in results
    assert (
        "external-authoritative",
        RuleResult.PASS,
    ) in results  # "ExchangeServer", not "External..."
    assert ("anonymous-accept-any-recipient", RuleResult.UNKNOWN) in results
    assert ("recipient-validation-off", RuleResult.UNKNOWN) in results
    assert result.patch is not None and result.patch.state.value == "missing"  # CU11


def test_every_rule_has_a_result_on_the_real_capture(tmp_path: Path) -> None:
    result = assess_capture(capture_dir(tmp_path), as_of=TODAY)
    assert result.exposure is not None
    assert {c.id for c in result.exposure.checks} == {r.id for r in MODERN_RULES}


@pytest.mark.parametrize(
    ("connector", "right", "deny", "opens"),
    [
        ("Default Frontend WIN-CTD3L0RGEN4", "ms-Exch-SMTP-Accept-Any-Recipient", False, True),
        ("Default Frontend WIN-CTD3L0RGEN4", "ms-Exch-SMTP-Accept-Any-Recipient", True, False),
        ("Default Frontend WIN-CTD3L0RGEN4", "ms-Exch-SMTP-Submit", False, False),
    ],
)
def test_anonymous_relay_right_on_a_real_world_connector(
    tmp_path: Path, connector: str, right: str, deny: bool, opens: bool
) -> None:
    directory = capture_dir(tmp_path, "GetReceiveConnector.xml", "ExSetup.xml")
    identity = f"WIN-CTD3L0RGEN4\\{connector}"
    (directory / "ADPermission.xml").write_text(ace_capture(identity, right, deny))
    result = assess_capture(directory, as_of=TODAY)
    assert result.exposure is not None
    opened = [f for f in result.exposure.findings if f.id == "anonymous-accept-any-recipient"]
    assert bool(opened) is opens
    if opens:
        assert opened[0].subject == identity and opened[0].opens_relay
    else:
        checks = {c.id: c.result for c in result.exposure.checks}
        assert checks["anonymous-accept-any-recipient"] is RuleResult.PASS


def test_a_capture_without_accepted_domains_is_inconclusive_not_closed(tmp_path: Path) -> None:
    directory = capture_dir(tmp_path, "GetReceiveConnector.xml", "ExSetup.xml")
    (directory / "ADPermission.xml").write_text(
        ace_capture("WIN-CTD3L0RGEN4\\Default WIN-CTD3L0RGEN4", "ms-Exch-SMTP-Submit")
    )
    result = assess_capture(directory, as_of=TODAY)
    assert result.exposure is not None and result.facts is not None
    assert result.exposure.verdict is Verdict.INCONCLUSIVE
    assert any("AcceptedDomain.xml" in n for n in result.facts.notes)


def test_recipient_filter_agent_absent_is_a_failed_note(tmp_path: Path) -> None:
    directory = capture_dir(tmp_path, "GetAcceptedDomain.xml")
    (directory / "TransportAgent.xml").write_text(
        """<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">
  <Obj RefId="0"><TN RefId="0"><T>Microsoft.Exchange.Data.TransportAgent</T></TN>
    <Props><S N="Identity">Transport Rule Agent</S><B N="Enabled">true</B></Props></Obj>
</Objs>"""
    )
    result = assess_capture(directory, as_of=TODAY)
    assert result.exposure is not None
    [check] = [c for c in result.exposure.checks if c.id == "recipient-validation-off"]
    assert check.result is RuleResult.FAIL and not check.opens_relay
    assert "Install-AntiSpamAgents.ps1" in check.reason


def test_utf16_capture_as_windows_powershell_writes_it(tmp_path: Path) -> None:
    directory = tmp_path / "utf16"
    directory.mkdir()
    text = (E19 / "GetAcceptedDomain.xml").read_bytes().decode("utf-8-sig")
    (directory / "AcceptedDomain.xml").write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    detect, config, _ = documents_from_capture(load_capture(directory))
    assert {d["DomainName"] for d in config["AcceptedDomains"]} == {
        "Solo.com",
        "*.contoso.local",
        "*.com",
    }
    assert detect["ComputerName"] == "unknown"


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not xml at all", "AcceptedDomain.xml: not an Export-Clixml file"),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Objs>&a;</Objs>',
            "AcceptedDomain.xml: a DTD or entity declaration",
        ),
        (b"<Objs Version='1.1.0.1'><Obj><Props>", "AcceptedDomain.xml: malformed CLIXML"),
        (b"\xff\xfe\x00\xd8", "AcceptedDomain.xml: not UTF-8 or UTF-16"),
    ],
)
def test_a_bad_capture_file_is_an_error_naming_it(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / "AcceptedDomain.xml").write_bytes(content)
    with pytest.raises(CaptureError, match=message):
        load_capture(tmp_path)
    assert assess_capture(tmp_path).error is not None


def test_a_secure_string_is_refused_never_decrypted(tmp_path: Path) -> None:
    """Export-Clixml protects a SecureString with the user's DPAPI key; relayguard needs none,
    asks for none, and does not take its ciphertext for an accepted domain."""
    (tmp_path / "AcceptedDomain.xml").write_text(
        '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        "<SS>01000000d08c9ddf0115d1118c7a00c04fc297eb</SS></Objs>"
    )
    with pytest.raises(CaptureError, match=r"AcceptedDomain\.xml: a SecureString"):
        load_capture(tmp_path)
    result = assess_capture(tmp_path, as_of=TODAY)
    assert result.facts is None and result.error is not None and "SecureString" in result.error


def test_empty_and_missing_directories_are_errors(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no capture file"):
        load_capture(tmp_path)
    with pytest.raises(CaptureError, match="not a directory"):
        load_capture(tmp_path / "nowhere")


# --- the CLI and the collector -----------------------------------------------------------------


def relayguard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relayguard.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_judges_a_capture(tmp_path: Path) -> None:
    directory = capture_dir(tmp_path)
    proc = relayguard("facts", "--capture", str(directory), "--json")
    assert proc.returncode == 2, proc.stderr
    [host] = json.loads(proc.stdout)["hosts"]
    assert host["exposure"]["verdict"] == "open"
    assert {c["result"] for c in host["exposure"]["checks"]} == {"pass", "fail", "unknown"}
    text = relayguard("facts", "--capture", str(directory))
    assert "[OPEN] Wild .com" in text.stdout and "[unknown]" in text.stdout


def test_cli_refuses_hosts_and_capture_together_or_neither(tmp_path: Path) -> None:
    assert relayguard("facts", "--capture", str(tmp_path), "ex1").returncode == 1
    assert relayguard("facts").returncode == 1


def test_cli_unreadable_capture_exits_3_with_the_reason(tmp_path: Path) -> None:
    proc = relayguard("facts", "--capture", str(tmp_path / "nowhere"))
    assert proc.returncode == 3 and "not a directory" in proc.stdout


def test_collector_is_printed_and_parses_as_powershell() -> None:
    proc = relayguard("facts", "--collector")
    assert proc.returncode == 0
    assert proc.stdout == COLLECTOR.read_text(encoding="utf-8")
    assert_parses(proc.stdout)
    for name in (
        "ExSetup",
        "ExchangeServer",
        "ReceiveConnector",
        "AcceptedDomain",
        "ADPermission",
        "TransportAgent",
        "RecipientFilterConfig",
    ):
        assert f"-Name '{name}'" in proc.stdout, name
    # read-only: no Set-/New-/Remove-/Add- cmdlet, no Enable-/Disable-
    verbs = ("Set-", "Remove-", "Add-", "Enable-", "Disable-", "Install-")
    code = [line for line in proc.stdout.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if any(v in line for v in verbs)]
