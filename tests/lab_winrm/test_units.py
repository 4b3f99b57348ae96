"""The WinRM twin's pure parts, without a network: parsing, rendering, framing, storage."""

from __future__ import annotations

import base64
import json
import struct
import threading
from pathlib import Path

import pytest
import winrm
from conftest import payload_script
from cryptography import x509

from relayguard.lab.ca import CAError, LabCA
from relayguard.lab.wsman import OpRegistry, WinRMAccount, encryption, pserror
from relayguard.lab.wsman.auth import (
    basic_account,
    credential_store_text,
    ntlm_message_type,
    write_credential_store,
)
from relayguard.lab.wsman.cmdline import (
    Builtin,
    Refused,
    RunFile,
    RunScript,
    parse_command_line,
    split_arguments,
)
from relayguard.lab.wsman.dispatch import ScriptSource, json_stdout
from relayguard.lab.wsman.faults import SCHEMA_VALIDATION, WsmanFault
from relayguard.lab.wsman.injection import FaultKind, FaultPlan, InjectedFault
from relayguard.lab.wsman.payload import PayloadError, parse_header, parse_payload
from relayguard.lab.wsman.scratch import (
    ScratchError,
    ScratchStore,
    decode_script_file,
    normalize_windows_path,
)
from relayguard.lab.wsman.shells import Command
from relayguard.lab.wsman.soap import parse_duration, parse_request

# ----------------------------------------------------------------------------- payload


def test_header() -> None:
    assert parse_header("# relayguard-payload: exchange55.read_config v1\r\nrest") is not None
    header = parse_header("\ufeff# relayguard-payload: exchange.detect v1  \n")
    assert header is not None and (header.op, header.version) == ("exchange.detect", 1)
    for not_a_header in (
        "",
        "Get-Date",
        "#relayguard-payload: exchange.detect v1",
        "# relayguard-payload: Exchange.Detect v1",
        "# relayguard-payload: detect v1",
        "\n# relayguard-payload: exchange.detect v1",
    ):
        assert parse_header(not_a_header) is None, not_a_header


def test_params_are_decoded_as_data() -> None:
    params = {"s": "'); Remove-Item C:\\ -Recurse; ('", "n": [1, None, True]}
    script = payload_script("exchange.detect", params)
    header = parse_header(script)
    assert header is not None
    assert parse_payload(script, header).params == params


def test_params_too_long_for_convertfrom_json() -> None:
    script = payload_script("exchange.detect", {"x": "y" * 2_100_000})
    header = parse_header(script)
    assert header is not None
    with pytest.raises(PayloadError, match="maxJsonLength"):
        parse_payload(script, header)


# ----------------------------------------------------------------------------- cmdline


def test_split_arguments_like_commandlinetoargvw() -> None:
    assert split_arguments('a "b c" d') == ["a", "b c", "d"]
    assert split_arguments(r'"C:\dir with\x.ps1" \\server\share') == [
        r"C:\dir with\x.ps1",
        r"\\server\share",
    ]
    assert split_arguments(r'a\"b "c\\" d') == ['a"b', "c\\", "d"]
    assert split_arguments('""') == [""]


def test_powershell_command_lines() -> None:
    script = "# relayguard-payload: a.b v1\n"
    encoded = base64.b64encode(script.encode("utf-16-le")).decode()
    for line in (
        f"powershell -encodedcommand {encoded}",
        "PowerShell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass "
        f"-EncodedCommand {encoded}",
        f"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe -e {encoded}",
        f"powershell -nop -ec {encoded}",
    ):
        assert parse_command_line(line) == RunScript(script, ScriptSource.ENCODED_COMMAND), line
    assert parse_command_line("powershell", '-NoProfile -File "C:\\a b\\x.ps1" arg') == RunFile(
        "C:\\a b\\x.ps1"
    )
    assert parse_command_line("powershell -Command Get-Date -Format o") == RunScript(
        "Get-Date -Format o", ScriptSource.COMMAND
    )
    bad = parse_command_line("powershell -EncodedCommand not!base64")
    assert isinstance(bad, Refused) and bad.exit_code == pserror.CLI_ERROR_EXIT
    missing = parse_command_line("powershell -File")
    assert isinstance(missing, Refused)


def test_cmd_lines_and_limits() -> None:
    assert parse_command_line("hostname") == Builtin("hostname", "")
    assert parse_command_line("echo", "a  b") == Builtin("echo", "a  b")
    unknown = parse_command_line("net", "stop MSExchangeIMC")
    assert isinstance(unknown, Refused) and unknown.exit_code == 9009
    long_line = "powershell -Command " + "x" * 8200
    too_long = parse_command_line(long_line)
    assert isinstance(too_long, Refused) and too_long.stderr.startswith(
        "The command line is too long."
    )
    assert isinstance(parse_command_line(long_line, skip_cmd_shell=True), RunScript)


# ----------------------------------------------------------------------------- pserror


def test_first_command_skips_comments_and_assignments() -> None:
    script = "<#\n block #>\n# note\n$x = [Math]::Abs(1)\n  $y = Get-Service MSExchangeIMC\n"
    position = pserror.first_command(script)
    assert position is not None
    assert (position.text, position.line_number, position.column) == ("Get-Service", 5, 8)


def test_clixml_is_what_pywinrm_cleans() -> None:
    text = pserror.command_not_found("Get-Foo -Bar\n")
    shipped = pserror.clixml(text).encode()
    cleaned = winrm.Session("http://127.0.0.1", auth=("u", "p"))._clean_error_msg(shipped)
    assert cleaned.decode() == text.replace("\r\n", "\n").strip()


# ----------------------------------------------------------------------------- scratch


def test_windows_paths_normalise() -> None:
    assert normalize_windows_path("c:/Windows//Temp/./X.ps1") == "c:\\windows\\temp\\x.ps1"
    assert normalize_windows_path("C:\\a\\..\\..\\b.ps1") == "c:\\b.ps1"
    assert normalize_windows_path("C:\\dir.\\x.ps1 ") == normalize_windows_path("C:\\dir\\x.ps1")
    for bad in ("", "x.ps1", "\\\\server\\share\\x.ps1", "C:\\a<b"):
        with pytest.raises(ScratchError):
            normalize_windows_path(bad)


def test_scratch_store_limits(tmp_path: Path) -> None:
    store = ScratchStore(tmp_path / "s", max_file_bytes=10, max_total_bytes=15)
    assert store.append("C:\\a.ps1", b"12345") == 5
    assert store.append("c:\\A.PS1", b"67890") == 10
    with pytest.raises(ScratchError, match="not enough space"):
        store.append("C:\\a.ps1", b"x")
    with pytest.raises(ScratchError, match="not enough space"):
        store.append("C:\\b.ps1", b"123456")
    assert store.read("C:\\A.ps1") == b"1234567890"
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (tmp_path / "s").iterdir())


def test_script_files_decode_as_powershell_5_1() -> None:
    assert decode_script_file("ü".encode("utf-8-sig")) == "ü"
    assert decode_script_file(b"\xff\xfe" + "ü".encode("utf-16-le")) == "ü"
    assert decode_script_file("ü".encode()) == "Ã¼"  # no BOM: ANSI, as on Windows


# ----------------------------------------------------------------------------- encryption


def test_encrypted_framing_round_trip() -> None:
    key = 0x5A

    def wrap(data: bytes) -> bytes:
        return b"S" * 16 + bytes(b ^ key for b in data)

    def unwrap(data: bytes) -> bytes:
        assert data[:16] == b"S" * 16
        return bytes(b ^ key for b in data[16:])

    message = b"<s:Envelope>--Encrypted Boundary inside</s:Envelope>"
    body = encryption.encrypt(message, wrap)
    assert encryption.decrypt(body, unwrap) == message
    length_at = body.index(b"octet-stream\r\n") + len(b"octet-stream\r\n")
    assert struct.unpack_from("<I", body, length_at) == (16,)
    with pytest.raises(encryption.EncryptionError):
        encryption.decrypt(body[:-60], unwrap)
    assert encryption.is_encrypted(encryption.CONTENT_TYPE)
    assert not encryption.is_encrypted("application/soap+xml;charset=UTF-8")


# ----------------------------------------------------------------------------- soap


def test_durations() -> None:
    assert parse_duration("PT20S") == 20
    assert parse_duration("PT60.000S") == 60
    assert parse_duration("PT1M30S") == 90
    assert parse_duration("P1D") == 86400
    assert parse_duration("20") is None and parse_duration("P") is None


def test_requests_with_a_dtd_are_refused() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    with pytest.raises(WsmanFault) as excinfo:
        parse_request(bomb)
    assert excinfo.value.spec == SCHEMA_VALIDATION
    with pytest.raises(WsmanFault):
        parse_request(b"not xml")


# ----------------------------------------------------------------------------- auth


def test_accounts_never_show_passwords(tmp_path: Path) -> None:
    account = WinRMAccount("relayguard", "Secret-1")
    assert "Secret-1" not in repr(account)
    with pytest.raises(ValueError, match="password contains") as excinfo:
        WinRMAccount("relayguard", "has:colon")
    assert "has:colon" not in str(excinfo.value)
    store = tmp_path / "store"
    write_credential_store(store, [account, WinRMAccount("svc", "Pw-2", domain="LAB")], "EX1")
    assert store.stat().st_mode & 0o777 == 0o600
    assert store.read_text() == credential_store_text(
        [account, WinRMAccount("svc", "Pw-2", domain="LAB")], "EX1"
    )
    assert store.read_text().splitlines() == [
        ":relayguard:Secret-1",
        ".:relayguard:Secret-1",
        "EX1:relayguard:Secret-1",
        "LAB:svc:Pw-2",
    ]


def test_basic_credentials() -> None:
    accounts = (WinRMAccount("relayguard", "Secret-1"),)

    def header(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    assert basic_account(header("relayguard:Secret-1"), accounts, "EX1") == accounts[0]
    assert basic_account(header("EX1\\RelayGuard:Secret-1"), accounts, "EX1") == accounts[0]
    assert basic_account(header("relayguard:secret-1"), accounts, "EX1") is None
    assert basic_account(header("OTHER\\relayguard:Secret-1"), accounts, "EX1") is None
    assert basic_account("Basic !!!", accounts, "EX1") is None
    assert basic_account("Negotiate abc", accounts, "EX1") is None


def test_ntlm_message_types() -> None:
    assert ntlm_message_type(b"NTLMSSP\x00\x01\x00\x00\x00rest") == 1
    assert ntlm_message_type(b"NTLMSSP\x00\x03\x00\x00\x00") == 3
    assert ntlm_message_type(b"\x60\x82kerberos") is None


# ----------------------------------------------------------------------------- CA


def test_ca_files_and_server_certificate(tmp_path: Path) -> None:
    ca = LabCA.create(tmp_path / "ca")
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(CAError, match="already exists"):
        LabCA.create(tmp_path / "ca")
    assert LabCA.ensure(tmp_path / "ca").certificate == ca.certificate
    issued = ca.issue_server_certificate(tmp_path / "t", "ex.lab.test", ["127.0.30.5", "::1"])
    assert issued.key_path.stat().st_mode & 0o777 == 0o600
    certificate = x509.load_pem_x509_certificate(issued.cert_path.read_bytes())
    assert certificate.issuer == ca.certificate.subject
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.30.5", "::1"]
    basic = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False
    with pytest.raises(CAError, match="invalid address"):
        ca.issue_server_certificate(tmp_path / "t", "ex", ["not-an-ip"])
    with pytest.raises(CAError, match="no lab CA"):
        LabCA.load(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- misc


def test_output_chunks() -> None:
    command = Command("ID", stdout=b"a" * 10, stderr=b"e" * 3, exit_code=2, ready_at=0.0)
    first = command.next_chunk(limit=8)
    assert (first.stdout, first.stderr, first.done) == (b"a" * 8, b"", False)
    last = command.next_chunk(limit=8)
    assert (last.stdout, last.stderr, last.done, last.exit_code) == (b"aa", b"eee", True, 2)


def test_fault_plan_counts_and_matches() -> None:
    plan = FaultPlan(threading.Condition())
    plan.set(
        InjectedFault(FaultKind.FAIL_COMMAND, op="x.y", times=2),
        InjectedFault(FaultKind.DROP_REQUEST, action="Receive"),
    )
    fail = frozenset({FaultKind.FAIL_COMMAND})
    assert plan.take(fail, "Command", "a.b") is None
    assert plan.take(fail, "Command", "x.y") is not None
    assert plan.take(fail, "Command", "x.y") is not None
    assert plan.take(fail, "Command", "x.y") is None
    drop = frozenset({FaultKind.DROP_REQUEST})
    assert plan.take(drop, "Create") is None
    assert plan.take(drop, "Receive") is not None
    assert plan.take(drop, "Receive") is not None  # no count: until cleared


def test_registry_validation() -> None:
    registry: OpRegistry[None] = OpRegistry()
    registry.register("exchange.detect", lambda params, twin: {})
    for bad in ("exchange.detect", "file.run", "detect", "Exchange.Detect"):
        with pytest.raises(ValueError, match=r"already registered|built into|invalid op name"):
            registry.register(bad, lambda params, twin: {})
    assert "file.append_chunk" in registry.ops and "exchange.detect" in registry.ops


def test_json_output_is_compact() -> None:
    assert json_stdout({"a": [1, "b"]}) == '{"a":[1,"b"]}\r\n'
    with pytest.raises(ValueError, match="JSON compliant"):
        json_stdout({"x": float("nan")})
    assert json.loads(json_stdout({"ü": "✓"})) == {"ü": "✓"}
