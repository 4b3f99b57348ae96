"""The remote55 payloads (channel via-management-host) as text: one for every 5.5 op the runner
maps, the Windows APIs docs/sources.md#management-host-apis cites, and the target password
handed to PSCredential only. Their behaviour runs against the lab's management-host twin in
tests/exchange_smb/test_management_host.py; their syntax in test_payloads.py."""

from __future__ import annotations

import re

from relayguard.exchange import payloads
from relayguard.exchange.management_host import LOCAL_OPS, REMOTE_OPS

TEMPLATES = payloads.TEMPLATE_DIR


def _code(name: str) -> str:
    text = (TEMPLATES / name).read_text(encoding="utf-8")
    return re.sub(r"\{#.*?#\}", "", text, flags=re.S)


def test_every_mapped_op_has_a_remote_template_and_the_file_ops_stay_local() -> None:
    ops = set(payloads.available_ops())
    assert set(REMOTE_OPS.values()) <= ops
    assert {op for op in ops if op.startswith("remote55.")} == set(REMOTE_OPS.values())
    assert ops >= LOCAL_OPS and not LOCAL_OPS & set(REMOTE_OPS)


def test_the_templates_use_the_cited_remote_apis() -> None:
    layout = _code("_remote55.ps1.j2")
    assert "[Microsoft.Win32.RegistryKey]::OpenRemoteBaseKey(" in layout
    assert "Get-Service -ComputerName $target" in layout
    assert "[System.Diagnostics.FileVersionInfo]::GetVersionInfo($unc)" in layout
    assert "New-PSDrive" in layout and "-Credential $psCredential" in layout
    patch = _code("remote55.install_patch.ps1.j2")
    assert "& sc.exe ('\\\\' + $target) create $service 'binPath=' $command" in patch
    assert "'\\\\' + $target + '\\ADMIN$\\Temp\\'" in patch
    assert "WaitForStatus" in _code("remote55.restart_service.ps1.j2")
    for name in (p.name for p in TEMPLATES.glob("remote55.*.ps1.j2")):
        assert _code(name).startswith('{% extends "_remote55.ps1.j2" %}'), name


def test_the_password_only_reaches_pscredential() -> None:
    uses = [
        line.strip()
        for path in TEMPLATES.glob("*remote55*.ps1.j2")
        for line in _code(path.name).splitlines()
        if "Password" in line
    ]
    assert uses == [
        "$secure = ConvertTo-SecureString -String ([string]$credential.Password) "
        "-AsPlainText -Force"
    ]
