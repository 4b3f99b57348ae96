"""Concurrency and shutdown: several shells and twins at once; stop leaves nothing behind."""

from __future__ import annotations

import base64
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import winrm
from conftest import RunningTwin, TwinFactory, payload_script
from winrm.exceptions import WSManFaultError

from relayguard.lab.wsman import (
    EndpointConfig,
    EndpointError,
    FaultKind,
    InjectedFault,
    WinRMEndpoint,
    stop_endpoints,
)


def wsman_threads(name: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"wsman-{name}")]


def port_is_free(address: str, port: int) -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((address, port))  # fails while anything listens there
        return True
    except OSError:
        return False
    finally:
        probe.close()


def test_concurrent_shells_on_one_twin(twin: RunningTwin) -> None:
    protocols = [twin.session("ntlm").protocol for _ in range(6)]
    shells = [p.open_shell() for p in protocols]  # six connections, six open shells
    assert twin.endpoint.shells.count() == 6

    def run(index: int) -> dict[str, object]:
        protocol, shell_id = protocols[index], shells[index]
        script = payload_script("test.echo", {"i": index})
        command = (
            "powershell -encodedcommand " + base64.b64encode(script.encode("utf-16-le")).decode()
        )
        command_id = protocol.run_command(shell_id, command)
        stdout, _stderr, code = protocol.get_command_output(shell_id, command_id)
        protocol.close_shell(shell_id)
        assert code == 0
        result: dict[str, object] = json.loads(stdout)
        return result

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(run, range(6)))
    assert [r["params"] for r in results] == [{"i": i} for i in range(6)]
    assert twin.endpoint.shells.count() == 0


def test_several_twins_at_once(start_twin: TwinFactory) -> None:
    twins = [start_twin() for _ in range(3)]

    def run(twin: RunningTwin) -> bytes:
        return bytes(twin.session("ntlm").run_cmd("hostname").std_out)

    with ThreadPoolExecutor(max_workers=3) as pool:
        names = list(pool.map(run, twins))
    assert names == [b"TWIN0\r\n", b"TWIN1\r\n", b"TWIN2\r\n"]


def test_stop_leaves_no_thread_and_no_listener(start_twin: TwinFactory) -> None:
    twin = start_twin()
    endpoint, name = twin.endpoint, twin.endpoint.config.name
    address, port = endpoint.config.address, endpoint.port
    # Busy state at stop time: an idle keep-alive connection with an open shell, a Receive
    # waiting for a long command, and a request held by a hang fault.
    idle = twin.session("ntlm").protocol
    idle.open_shell()
    waiting = twin.session("ntlm", operation_timeout_sec=30, read_timeout_sec=60)
    endpoint.faults.set(InjectedFault(FaultKind.HANG, action="Command", op="test.echo"))
    errors: list[BaseException] = []

    def client(session: winrm.Session, script: str) -> None:
        try:
            session.run_ps(script)
        except BaseException as exc:
            errors.append(exc)

    clients = [
        threading.Thread(
            target=client, args=(waiting, payload_script("test.slow", {"delay": 600}))
        ),
        threading.Thread(
            target=client, args=(twin.session("ntlm"), payload_script("test.echo", {}))
        ),
    ]
    for thread in clients:
        thread.start()
    # Wait (bounded) until both requests are inside the endpoint.
    for _ in range(200):
        if len(twin.twin.calls) == 1 and len(wsman_threads(name)) >= 4:
            break
        threading.Event().wait(0.05)
    assert len(twin.twin.calls) == 1

    endpoint.stop(timeout=10)
    for thread in clients:
        thread.join(30)
    assert not any(thread.is_alive() for thread in clients)
    assert len(errors) == 2  # both clients saw the connection close
    assert wsman_threads(name) == []
    assert port_is_free(address, port)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address, port), timeout=5).close()
    assert not endpoint.credential_store.exists()  # no credentials left at rest


def test_fleet_stops_in_parallel(start_twin: TwinFactory) -> None:
    twins = [start_twin() for _ in range(4)]
    for twin in twins:
        twin.session("ntlm").protocol.open_shell()  # an open keep-alive connection each
    stop_endpoints([t.endpoint for t in twins])
    for twin in twins:
        assert not twin.endpoint.running
        assert wsman_threads(twin.endpoint.config.name) == []
        assert port_is_free(twin.endpoint.config.address, twin.endpoint.port)


def test_delete_ends_a_waiting_receive(twin: RunningTwin) -> None:
    waiting = twin.session("ntlm", operation_timeout_sec=30, read_timeout_sec=60).protocol
    shell_id = waiting.open_shell()
    script = payload_script("test.slow", {"delay": 600})
    command = "powershell -encodedcommand " + base64.b64encode(script.encode("utf-16-le")).decode()
    command_id = waiting.run_command(shell_id, command)
    outcome: list[BaseException] = []

    def receive() -> None:
        try:
            waiting.get_command_output_raw(shell_id, command_id)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=receive)
    thread.start()
    other = twin.session("ntlm").protocol
    for _ in range(100):  # bounded: until the Receive is inside the endpoint
        if len(wsman_threads(twin.endpoint.config.name)) >= 3:
            break
        threading.Event().wait(0.05)
    other.close_shell(shell_id)
    thread.join(30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], WSManFaultError)


def test_restart_after_stop(start_twin: TwinFactory) -> None:
    twin = start_twin()
    twin.endpoint.stop()
    twin.endpoint.start()
    assert twin.session("ntlm").run_cmd("hostname").status_code == 0


def test_address_in_use_is_a_clear_error(start_twin: TwinFactory) -> None:
    first = start_twin()
    blocker = socket.socket()
    blocker.bind(("127.0.20.251", 0))
    blocker.listen()
    try:
        config = first.endpoint.config
        clash = WinRMEndpoint(
            EndpointConfig(
                name="clash",
                address="127.0.20.251",
                port=blocker.getsockname()[1],
                accounts=config.accounts,
                twin_dir=config.twin_dir.parent / "clash",
                handler=config.handler,
                certificate=config.certificate,
            )
        )
        with pytest.raises(EndpointError, match=r"cannot listen on 127\.0\.20\.251"):
            clash.start()
        assert wsman_threads("clash") == []
    finally:
        blocker.close()
