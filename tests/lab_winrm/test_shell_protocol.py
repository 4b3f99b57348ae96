"""The WinRS shell lifecycle through pywinrm's Protocol: states, exit codes, signals, faults."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from typing import Any

import pytest
import xmltodict  # type: ignore[import-untyped]
from conftest import PASSWORD, RunningTwin, TwinFactory, payload_script
from winrm.exceptions import WinRMOperationTimeoutError, WinRMTransportError, WSManFaultError
from winrm.protocol import Protocol

from relayguard.lab.wsman import WinRMAccount

SHELL_NOT_FOUND = 2150858843
CTRL_C_EXIT = 0xC000013A


def encoded(script: str) -> str:
    return "powershell -encodedcommand " + base64.b64encode(script.encode("utf-16-le")).decode()


def protocol_of(twin: RunningTwin, **kwargs: Any) -> Protocol:
    protocol: Protocol = twin.session("ntlm", **kwargs).protocol
    return protocol


def test_lifecycle_create_command_receive_signal_delete(twin: RunningTwin) -> None:
    protocol = protocol_of(twin)
    shell_id = protocol.open_shell()
    assert twin.endpoint.shells.count() == 1
    command_id = protocol.run_command(shell_id, encoded(payload_script("test.echo", {"a": 1})))
    stdout, stderr, code = protocol.get_command_output(shell_id, command_id)
    assert (json.loads(stdout), stderr, code) == ({"params": {"a": 1}, "twin": "twin0"}, b"", 0)
    protocol.cleanup_command(shell_id, command_id)  # Signal terminate
    protocol.close_shell(shell_id)  # Delete; pywinrm checks RelatesTo
    assert twin.endpoint.shells.count() == 0


def test_large_output_is_received_in_running_chunks_then_done(twin: RunningTwin) -> None:
    protocol = protocol_of(twin)
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(
        shell_id, encoded(payload_script("test.big", {"size": 150_000}))
    )
    states, chunks = [], []
    done = False
    while not done:
        stdout, _stderr, code, done = protocol.get_command_output_raw(shell_id, command_id)
        states.append(done)
        chunks.append(stdout)
    assert states[0] is False and states[-1] is True
    assert json.loads(b"".join(chunks)) == {"data": "x" * 150_000}
    assert code == 0
    protocol.close_shell(shell_id)


def test_long_operation_times_out_receive_then_ctrl_c_ends_it(twin: RunningTwin) -> None:
    protocol = protocol_of(twin, operation_timeout_sec=1, read_timeout_sec=10)
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(
        shell_id, encoded(payload_script("test.slow", {"delay": 600}))
    )
    with pytest.raises(WinRMOperationTimeoutError):  # the w:TimedOut fault, code 2150858793
        protocol.get_command_output_raw(shell_id, command_id)
    signal = protocol.build_wsman_header(
        action="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal",
        resource_uri="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd",
        shell_id=shell_id,
    )
    signal.setdefault("env:Body", {})["rsp:Signal"] = {
        "@CommandId": command_id,
        "rsp:Code": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c",
    }
    protocol.send_message(xmltodict.unparse({"env:Envelope": signal}))
    stdout, _stderr, code, done = protocol.get_command_output_raw(shell_id, command_id)
    assert (stdout, code, done) == (b"", CTRL_C_EXIT, True)
    protocol.close_shell(shell_id)


def test_short_delay_is_waited_out_by_pywinrm(twin: RunningTwin) -> None:
    result = twin.session("ntlm").run_ps(payload_script("test.slow", {"delay": 0.3}))
    assert (result.status_code, json.loads(result.std_out)) == (0, {"slept": 0.3})


def test_unknown_shell_is_the_windows_fault(twin: RunningTwin) -> None:
    protocol = protocol_of(twin)
    with pytest.raises(WSManFaultError) as excinfo:
        protocol.run_command("11111111-2222-3333-4444-555555555555", "hostname")
    fault = excinfo.value
    assert (fault.code, fault.fault_code, fault.fault_subcode) == (
        500,
        "s:Sender",
        "w:InvalidSelectors",
    )
    assert fault.wsman_fault_code == SHELL_NOT_FOUND
    assert "shell was not found on the server" in fault.response


def test_another_users_shell_is_not_found(start_twin: TwinFactory) -> None:
    twin = start_twin(accounts=(WinRMAccount("alice", PASSWORD), WinRMAccount("bob", PASSWORD)))
    alice = twin.session("ntlm", username="alice").protocol
    bob = twin.session("ntlm", username="bob").protocol
    shell_id = alice.open_shell()
    with pytest.raises(WSManFaultError) as excinfo:
        bob.run_command(shell_id, "hostname")
    assert excinfo.value.wsman_fault_code == SHELL_NOT_FOUND
    alice.close_shell(shell_id)


def _custom(protocol: Protocol, action: str, resource_uri: str) -> bytes:
    header = protocol.build_wsman_header(action=action, resource_uri=resource_uri)
    header.setdefault("env:Body", {})
    return protocol.send_message(xmltodict.unparse({"env:Envelope": header}))


def test_unsupported_action_and_resource_are_faults(twin: RunningTwin) -> None:
    protocol = protocol_of(twin)
    with pytest.raises(WSManFaultError) as excinfo:
        _custom(
            protocol,
            "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate",
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd",
        )
    assert excinfo.value.fault_subcode == "a:ActionNotSupported"
    with pytest.raises(WSManFaultError) as excinfo:
        _custom(
            protocol,
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
            "http://schemas.microsoft.com/powershell/Microsoft.Exchange",
        )
    assert excinfo.value.fault_subcode == "w:DestinationUnreachable"


def test_stdin_to_a_command_that_does_not_read_it_is_taken(twin: RunningTwin) -> None:
    protocol = protocol_of(twin)
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, "hostname")
    protocol.send_command_input(shell_id, command_id, "data", end=True)
    stdout, _, code = protocol.get_command_output(shell_id, command_id)
    assert (stdout.strip(), code) == (b"TWIN0", 0)
    with pytest.raises(WSManFaultError):  # the stream is closed now
        protocol.send_command_input(shell_id, command_id, "more", end=True)
    protocol.close_shell(shell_id)


PIECE = 60 * 1024  # base64 twice (the lines, then Send's) stays under 150 KB


def _receive_command(data: bytes, path: str, **change: Any) -> str:
    params = {"path": path, "sha256": hashlib.sha256(data).hexdigest().upper(), "length": len(data)}
    return encoded(payload_script("file.receive", params | change))


def test_file_receive_runs_once_its_stdin_is_closed(twin: RunningTwin) -> None:
    protocol = protocol_of(twin, operation_timeout_sec=1, read_timeout_sec=5)
    data = bytes(range(256)) * 1000
    path = "C:\\Windows\\Temp\\received.msp"
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(
        shell_id, _receive_command(data, path), console_mode_stdin=False
    )
    first, rest = base64.b64encode(data[:120000]), base64.b64encode(data[120000:])
    protocol.send_command_input(shell_id, command_id, first + b"\r\n")
    with pytest.raises(WinRMOperationTimeoutError):  # still reading its stdin
        protocol.get_command_output_raw(shell_id, command_id)
    protocol.send_command_input(shell_id, command_id, rest + b"\r\n", end=True)
    stdout, stderr, code = protocol.get_command_output(shell_id, command_id)
    assert code == 0, stderr
    digest = hashlib.sha256(data).hexdigest().upper()
    assert json.loads(stdout) == {"path": path, "length": len(data), "sha256": digest}
    assert twin.endpoint.scratch.read(path) == data
    # a second upload to the same path is refused (CreateNew), the file left as it was
    again = protocol.run_command(shell_id, _receive_command(b"x", path), console_mode_stdin=False)
    protocol.send_command_input(shell_id, again, base64.b64encode(b"x") + b"\r\n", end=True)
    _, stderr, code = protocol.get_command_output(shell_id, again)
    assert code == 1 and b"already exists" in stderr
    assert twin.endpoint.scratch.read(path) == data
    protocol.close_shell(shell_id)


def test_file_receive_removes_a_file_that_does_not_match(twin: RunningTwin) -> None:
    protocol = protocol_of(twin)
    path = "C:\\Windows\\Temp\\short.msp"
    shell_id = protocol.open_shell()
    command = _receive_command(b"abcdef", path, length=7)
    command_id = protocol.run_command(shell_id, command, console_mode_stdin=False)
    protocol.send_command_input(shell_id, command_id, base64.b64encode(b"abcdef"), end=True)
    _, stderr, code = protocol.get_command_output(shell_id, command_id)
    assert code == 1 and b"not the 7 bytes" in stderr
    assert not twin.endpoint.scratch.exists(path)
    protocol.close_shell(shell_id)


def test_file_exec_runs_the_script_it_receives_once_and_removes_it(twin: RunningTwin) -> None:
    protocol = protocol_of(twin)
    path = "C:\\Windows\\Temp\\job.ps1"
    packed = gzip.compress(payload_script("test.echo", {"via": "stdin"}).encode())
    shell_id = protocol.open_shell()
    for sent, want_code in ((packed[:-1], 1), (packed, 0)):  # a short upload never runs
        digest = hashlib.sha256(packed).hexdigest().upper()
        params = {"path": path, "sha256": digest, "length": len(packed)}
        command = encoded(payload_script("file.exec", params))
        command_id = protocol.run_command(shell_id, command, console_mode_stdin=False)
        protocol.send_command_input(shell_id, command_id, base64.b64encode(sent), end=True)
        stdout, stderr, code = protocol.get_command_output(shell_id, command_id)
        assert code == want_code, stderr
    assert json.loads(stdout) == {"params": {"via": "stdin"}, "twin": "twin0"}
    assert twin.twin.calls == [("test.echo", {"via": "stdin"})]
    assert not twin.endpoint.scratch.exists(path)
    protocol.close_shell(shell_id)


def test_an_envelope_over_max_envelope_size_gets_413_and_changes_nothing(
    start_twin: TwinFactory,
) -> None:
    twin = start_twin(max_envelope_kb=150)
    protocol = protocol_of(twin)
    data = bytes(200 * 1024)
    path = "C:\\Windows\\Temp\\big.msp"
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(
        shell_id, _receive_command(data, path), console_mode_stdin=False
    )
    with pytest.raises(WinRMTransportError) as excinfo:
        protocol.send_command_input(shell_id, command_id, base64.b64encode(data), end=True)
    assert excinfo.value.code == 413
    # nothing of it was taken: the same bytes in smaller envelopes complete the upload
    for start in range(0, len(data), PIECE):
        piece = data[start : start + PIECE]
        last = start + PIECE >= len(data)
        protocol.send_command_input(
            shell_id, command_id, base64.b64encode(piece) + b"\r\n", end=last
        )
    stdout, stderr, code = protocol.get_command_output(shell_id, command_id)
    assert code == 0, stderr
    assert json.loads(stdout)["length"] == len(data)
    # the refused one never reached the shell
    assert twin.endpoint.stats.snapshot()["Send"] == -(-len(data) // PIECE)
    protocol.close_shell(shell_id)


def test_shell_quota_per_user(start_twin: TwinFactory) -> None:
    twin = start_twin(max_shells_per_user=2)
    protocol = protocol_of(twin)
    shells = [protocol.open_shell(), protocol.open_shell()]
    with pytest.raises(WSManFaultError) as excinfo:
        protocol.open_shell()
    assert excinfo.value.fault_subcode == "w:QuotaLimit"
    assert "maximum number of 2 concurrent shells" in excinfo.value.reason
    for shell_id in shells:
        protocol.close_shell(shell_id, close_session=False)
    assert protocol.open_shell()


def test_cmd_lines(twin: RunningTwin) -> None:
    session = twin.session("ntlm")
    assert session.run_cmd("hostname").std_out == b"TWIN0\r\n"
    assert session.run_cmd("echo", ["hello", "world"]).std_out == b"hello world\r\n"
    unknown = session.run_cmd("ipconfig", ["/all"])
    assert unknown.status_code == 9009
    assert unknown.std_err == (
        b"'ipconfig' is not recognized as an internal or external command,\r\n"
        b"operable program or batch file.\r\n"
    )


def test_script_over_the_command_line_limit_fails_like_windows(twin: RunningTwin) -> None:
    big = payload_script("test.echo", {"blob": "a" * 4000})
    result = twin.session("ntlm").run_ps(big)
    assert result.status_code == 1
    assert result.std_err == b"The command line is too long.\r\n"
    assert twin.twin.calls == []
