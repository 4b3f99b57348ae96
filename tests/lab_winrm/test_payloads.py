"""Payload protocol v1 over real pywinrm: ops, hostile parameters, unknown scripts, big scripts."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import winrm
from conftest import RunningTwin, payload_script

TEMP = "C:\\Windows\\Temp"
MISSING_SCRIPT_EXIT = (-196608) & 0xFFFFFFFF  # powershell.exe CLI error, as a DWORD


def run_op(session: winrm.Session, op: str, params: dict[str, Any]) -> winrm.Response:
    return session.run_ps(payload_script(op, params))


def upload(session: winrm.Session, path: str, content: bytes, chunk_size: int = 1000) -> None:
    """What the client transport does for big scripts: file.append_chunk, chunk by chunk.

    1000 bytes a chunk: base64 in the params, base64 of the params, then UTF-16 and base64
    for -EncodedCommand make a 2000-byte chunk exceed cmd.exe's 8191-character line.
    """
    for start in range(0, len(content), chunk_size):
        chunk = base64.b64encode(content[start : start + chunk_size]).decode("ascii")
        result = run_op(session, "file.append_chunk", {"path": path, "chunk_b64": chunk})
        assert result.status_code == 0, result.std_err
        assert json.loads(result.std_out) == {
            "path": path,
            "length": min(start + chunk_size, len(content)),
        }


HOSTILE = [
    'it\'s "quoted"',
    "$(Remove-Item C:\\ -Recurse)",
    "`whoami`; Stop-Service MSExchangeIMC",
    "line1\nline2\r\n'); Invoke-Expression 'calc' #",
    "@{a=1} | % { $_ } ; exit 0",
    "ünïcödé ✓ \u0000 nul",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_params_arrive_as_data(twin: RunningTwin, value: str) -> None:
    result = run_op(twin.session("ntlm"), "test.echo", {"value": value, "list": [value]})
    assert result.status_code == 0, result.std_err
    # Output travels in the shell's OEM code page (437), as from Windows: the twin got the
    # exact value; characters outside 437 come back as '?'.
    assert twin.twin.calls == [("test.echo", {"value": value, "list": [value]})]
    expected = json.dumps(
        {"params": {"value": value, "list": [value]}, "twin": "twin0"},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert result.std_out == expected.encode("cp437", errors="replace") + b"\r\n"


def test_unicode_output_with_utf8_codepage(twin: RunningTwin) -> None:
    protocol = twin.session("ntlm").protocol
    shell_id = protocol.open_shell(codepage=65001)
    script = payload_script("test.echo", {"v": "ü ✓"})
    command = "powershell -encodedcommand " + base64.b64encode(script.encode("utf-16-le")).decode()
    command_id = protocol.run_command(shell_id, command)
    stdout, _stderr, code = protocol.get_command_output(shell_id, command_id)
    assert code == 0
    assert json.loads(stdout.decode("utf-8"))["params"] == {"v": "ü ✓"}
    protocol.close_shell(shell_id)


def test_unknown_script_fails_like_powershell(twin: RunningTwin) -> None:
    result = twin.session("ntlm").run_ps("Get-ItemProperty -Path HKLM:\\SOFTWARE\\Foo\n")
    assert result.status_code == 1
    assert result.std_out == b""
    stderr = result.std_err.decode()
    assert stderr.startswith(
        "Get-ItemProperty : The term 'Get-ItemProperty' is not recognized as the name of a "
        "cmdlet, function, script file, or operable program."
    )
    assert "At line:1 char:1" in stderr
    assert "CommandNotFoundException" in stderr


def test_powershell_ships_stderr_as_clixml(twin: RunningTwin) -> None:
    # run_cmd does not clean stderr: the raw stream is the CLIXML powershell.exe writes.
    command = base64.b64encode("Get-Foo".encode("utf-16-le")).decode()
    raw = twin.session("ntlm").run_cmd(f"powershell -NoProfile -NonInteractive -enc {command}")
    assert raw.status_code == 1
    assert raw.std_err.startswith(b"#< CLIXML\r\n<Objs ")
    assert b"The term 'Get-Foo' is not recognized" in raw.std_err


def test_unknown_op_and_unsupported_version_fail(twin: RunningTwin) -> None:
    session = twin.session("ntlm")
    unknown = run_op(session, "exchange.does_not_exist", {})
    assert unknown.status_code == 1
    # The first command of the script's body is what "is not recognized".
    assert b"The term 'Write-Output' is not recognized" in unknown.std_err
    v2 = session.run_ps(payload_script("test.echo", {}).replace(" v1\n", " v2\n", 1))
    assert v2.status_code == 1
    assert twin.twin.calls == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda s: s.replace("$RelayguardParams = ", "$Other = "),
            b"has no $RelayguardParams line",
        ),
        (lambda s: s + s.splitlines()[2] + "\n", b"more than one $RelayguardParams line"),
        (lambda s: s.replace("FromBase64String('", "FromBase64String('!"), b"not a valid Base-64"),
        (
            lambda s: s.replace(
                base64.b64encode(b"{}").decode(), base64.b64encode(b"{nope").decode()
            ),
            b"Invalid JSON primitive",
        ),
        (
            lambda s: s.replace(
                base64.b64encode(b"{}").decode(), base64.b64encode(b"[1]").decode()
            ),
            b"not a JSON object",
        ),
    ],
)
def test_broken_params_line(twin: RunningTwin, mutate: Any, expected: bytes) -> None:
    result = twin.session("ntlm").run_ps(mutate(payload_script("test.echo", {})))
    assert result.status_code == 1
    assert expected in result.std_err
    assert twin.twin.calls == []


def test_op_error_and_handler_bug(twin: RunningTwin) -> None:
    session = twin.session("ntlm")
    failed = run_op(session, "test.fail", {"message": "MSExchangeIMC did not stop", "exit": 7})
    assert failed.status_code == 7
    assert failed.std_err.startswith(b"MSExchangeIMC did not stop\n")
    crashed = run_op(session, "test.crash", {})
    assert crashed.status_code == 1
    assert b"failed inside the twin (RuntimeError)" in crashed.std_err


def test_script_over_8kb_through_chunks(twin: RunningTwin) -> None:
    session = twin.session("ntlm")
    blob = "Z" * 6_000
    script = payload_script("test.echo", {"blob": blob}, body="# padding\n" * 300)
    assert len(script) > 8192
    direct = session.run_ps(script)
    assert direct.std_err == b"The command line is too long.\r\n"  # why chunking exists

    path = f"{TEMP}\\relayguard-0123abcd.ps1"
    upload(session, path, script.encode("utf-8"))
    ran = run_op(session, "file.run", {"path": path})
    assert ran.status_code == 0, ran.std_err
    assert json.loads(ran.std_out) == {"params": {"blob": blob}, "twin": "twin0"}
    removed = run_op(session, "file.remove", {"path": path})
    assert json.loads(removed.std_out) == {"path": path, "removed": True}
    assert not twin.endpoint.scratch.exists(path)
    again = run_op(session, "file.remove", {"path": path})
    assert json.loads(again.std_out) == {"path": path, "removed": False}


def test_file_script_runs_by_command_line_and_fails_as_the_cli(twin: RunningTwin) -> None:
    session = twin.session("ntlm")
    path = f"{TEMP}\\relayguard dir\\job.ps1"
    upload(session, path, payload_script("test.echo", {"via": "file"}).encode())
    # Windows paths are case-insensitive; the command line quotes the space.
    ran = session.run_cmd(
        "powershell", ["-NoProfile", "-NonInteractive", "-File", f'"{path.upper()}"']
    )
    assert json.loads(ran.std_out)["params"] == {"via": "file"}

    missing = session.run_cmd("powershell", ["-NoProfile", "-File", f"{TEMP}\\nothing.ps1"])
    assert missing.status_code == MISSING_SCRIPT_EXIT
    assert b"to the -File parameter does not exist" in missing.std_err
    not_ps1 = run_op(session, "file.run", {"path": f"{TEMP}\\job.txt"})
    assert not_ps1.status_code == MISSING_SCRIPT_EXIT
    assert b"does not have a '.ps1' extension" in not_ps1.std_err


def test_file_script_errors_point_into_the_file(twin: RunningTwin) -> None:
    session = twin.session("ntlm")
    path = f"{TEMP}\\unknown.ps1"
    upload(session, path, b"# a comment\n\nSet-ItemProperty -Path x\n")
    result = run_op(session, "file.run", {"path": path})
    assert result.status_code == 1
    assert f"At {path}:3 char:1".encode() in result.std_err


def test_file_ops_keep_to_the_scratch_directory(twin: RunningTwin) -> None:
    session = twin.session("ntlm")
    escape = "C:\\..\\..\\..\\etc\\passwd.ps1"
    upload(session, escape, b"x")
    scratch = twin.endpoint.scratch.root
    assert all(p.parent == scratch for p in scratch.iterdir())
    relative = run_op(session, "file.append_chunk", {"path": "job.ps1", "chunk_b64": "eA=="})
    assert relative.status_code == 1
    illegal = run_op(session, "file.append_chunk", {"path": "C:\\a|b.ps1", "chunk_b64": "eA=="})
    assert b"Illegal characters in path." in illegal.std_err
    bad_chunk = run_op(session, "file.append_chunk", {"path": "C:\\a.ps1", "chunk_b64": "%%"})
    assert bad_chunk.status_code == 1
