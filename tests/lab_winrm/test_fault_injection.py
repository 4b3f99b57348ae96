"""Fault injection on the endpoint: dropped requests and replies, hangs, failing commands."""

from __future__ import annotations

import threading

import pytest
import requests
from conftest import RunningTwin, payload_script

from relayguard.lab.wsman import FaultKind, InjectedFault


def test_drop_request_means_the_command_never_ran(twin: RunningTwin) -> None:
    twin.endpoint.faults.set(InjectedFault(FaultKind.DROP_REQUEST, action="Command", times=1))
    with pytest.raises(requests.exceptions.ConnectionError):
        twin.session("ntlm").run_ps(payload_script("test.echo", {"n": 1}))
    assert twin.twin.calls == []
    assert twin.endpoint.faults.active() == ()  # fired once, gone
    assert twin.session("ntlm").run_ps(payload_script("test.echo", {"n": 2})).status_code == 0


def test_drop_response_means_it_ran_but_nobody_knows(twin: RunningTwin) -> None:
    twin.endpoint.faults.set(InjectedFault(FaultKind.DROP_RESPONSE, action="Command", times=1))
    with pytest.raises(requests.exceptions.ConnectionError):
        twin.session("ntlm").run_ps(payload_script("test.echo", {"n": 1}))
    assert twin.twin.calls == [("test.echo", {"n": 1})]


def test_hang_until_cleared(twin: RunningTwin) -> None:
    twin.endpoint.faults.set(InjectedFault(FaultKind.HANG, action="Command"))
    session = twin.session("ntlm", read_timeout_sec=2, operation_timeout_sec=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.run_ps(payload_script("test.echo", {}))
    assert twin.twin.calls == []
    twin.endpoint.faults.clear()  # releases the held request
    assert twin.session("ntlm").run_ps(payload_script("test.echo", {})).status_code == 0


def test_fail_command_for_one_op_only(twin: RunningTwin) -> None:
    twin.endpoint.faults.set(
        InjectedFault(
            FaultKind.FAIL_COMMAND,
            op="test.slow",
            exit_code=5,
            message="Service 'MSExchangeIMC' cannot be started.",
        )
    )
    session = twin.session("ntlm")
    failed = session.run_ps(payload_script("test.slow", {"delay": 0}))
    assert failed.status_code == 5
    assert failed.std_err.startswith(b"Service 'MSExchangeIMC' cannot be started.")
    assert session.run_ps(payload_script("test.echo", {})).status_code == 0
    assert [op for op, _ in twin.twin.calls] == ["test.echo"]
    assert len(twin.endpoint.faults.active()) == 1  # times=None: until cleared


def test_a_hung_request_does_not_block_other_clients(twin: RunningTwin) -> None:
    twin.endpoint.faults.set(InjectedFault(FaultKind.HANG, action="Command", op="test.slow"))
    outcome: list[BaseException | int] = []

    def hung_client() -> None:
        try:
            twin.session("ntlm").run_ps(payload_script("test.slow", {"delay": 0}))
        except BaseException as exc:  # the connection is closed when the hang ends
            outcome.append(exc)

    thread = threading.Thread(target=hung_client)
    thread.start()
    try:
        # the hung client's request is held before the other client runs (on a loaded machine
        # the other could otherwise finish, and the fault be cleared, before the first arrives)
        assert twin.endpoint.faults.wait_hung(1, 30), "the hung client's request never arrived"
        assert twin.session("ntlm").run_ps(payload_script("test.echo", {})).status_code == 0
    finally:
        twin.endpoint.faults.clear()
        thread.join(30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], requests.exceptions.ConnectionError)


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="Command requests only"):
        InjectedFault(FaultKind.FAIL_COMMAND, action="Receive")
    with pytest.raises(ValueError, match="times"):
        InjectedFault(FaultKind.HANG, times=0)
