"""The WinRS shell lifecycle through pywinrm's Protocol: states, exit codes, signals, faults."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import xmltodict  # type: ignore[import-untyped]
from conftest import PASSWORD, RunningTwin, TwinFactory, payload_script
from winrm.exceptions import WinRMOperationTimeoutError, WSManFaultError
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


def test_stdin_send_is_not_supported(twin: RunningTwin) -> None:
    protocol = protocol_of(twin)
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, "hostname")
    with pytest.raises(WSManFaultError) as excinfo:
        protocol.send_command_input(shell_id, command_id, "data", end=True)
    assert excinfo.value.fault_subcode == "a:ActionNotSupported"
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
