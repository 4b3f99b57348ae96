"""The WinRM transport against the lab's WinRM twin endpoint (relayguard.lab.wsman) on
loopback: real HTTPS, real NTLM (pyspnego acceptor), certificates validated against the lab
CA, and the twin's fault injection for refused logons, hangs and dropped connections.

Addresses: 127.0.20.200-127.0.20.209 (the WinRM twin range), ports chosen by the kernel.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from relayguard.exchange import payloads
from relayguard.exchange.transport import (
    FailureCause,
    Secret,
    TransportError,
    WinRMClient,
    WinRMOptions,
)
from relayguard.lab.ca import LabCA, ServerCertificate
from relayguard.lab.wsman.auth import WinRMAccount
from relayguard.lab.wsman.dispatch import OpRegistry, PayloadDispatcher
from relayguard.lab.wsman.injection import FaultKind, InjectedFault
from relayguard.lab.wsman.server import EndpointConfig, WinRMEndpoint

from .test_payloads import HOSTILE_PARAMS

ADDRESS = "127.0.20.200"
OTHER_ADDRESS = "127.0.20.201"
USER = "relayguard"
PASSWORD = "Tw1n-Pa55-w0rd"


@dataclass
class Twin:
    """Counts the op calls, so a test can tell whether a command ran and how often."""

    calls: dict[str, int] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, op: str, params: dict[str, Any]) -> None:
        with self.lock:
            self.calls[op] = self.calls.get(op, 0) + 1
            self.received.append(params)


def _registry() -> OpRegistry[Twin]:
    registry: OpRegistry[Twin] = OpRegistry()

    def echo(params: dict[str, Any], twin: Twin) -> Any:
        twin.record("test.echo", params)
        return {"echo": params}

    registry.register("test.echo", echo)
    return registry


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServerCertificate, Path]:
    root = tmp_path_factory.mktemp("pki")
    ca = LabCA.create(root / "ca")
    certificate = ca.issue_server_certificate(root / "server", "ex1.lab.test", [ADDRESS])
    stranger = LabCA.create(root / "other-ca", common_name="not the lab CA")
    return certificate, stranger.cert_path


@dataclass
class Running:
    endpoint: WinRMEndpoint
    twin: Twin
    certificate: ServerCertificate


@pytest.fixture
def running(tmp_path: Path, pki: tuple[ServerCertificate, Path]) -> Iterator[Running]:
    certificate, _ = pki
    twin = Twin()
    endpoint = WinRMEndpoint(
        EndpointConfig(
            name="ex1",
            address=ADDRESS,
            accounts=(WinRMAccount(USER, PASSWORD),),
            twin_dir=tmp_path / "twin",
            handler=PayloadDispatcher(_registry(), twin),
            certificate=certificate,
            port=0,
        )
    )
    endpoint.start()
    try:
        yield Running(endpoint, twin, certificate)
    finally:
        endpoint.faults.clear()
        endpoint.stop(timeout=10)


def _client(running: Running, **changes: Any) -> WinRMClient:
    settings: dict[str, Any] = {
        "host": ADDRESS,
        "port": running.endpoint.port,
        "username": USER,
        "password": Secret(PASSWORD),
        "ca_trust_path": str(running.certificate.ca_path),
        "connect_timeout": 5.0,
        "operation_timeout": 2,
        "read_timeout": 4,
        "command_timeout": 60.0,
        "retry_delay": 0.0,
    }
    settings.update(changes)
    return WinRMClient(WinRMOptions(**settings))


def _echo(params: dict[str, Any]) -> payloads.RenderedPayload:
    script = f"{payloads.header('test.echo')}\n{payloads.params_line(params)}\n"
    return payloads.RenderedPayload(op="test.echo", script=script)


def _scratch_files(running: Running) -> list[Path]:
    root = running.endpoint.scratch.root
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_https_ntlm_with_certificate_validation(running: Running) -> None:
    client = _client(running)
    assert client.options.endpoint.startswith("https://")
    answer = client.run_payload(payloads.render("file.remove", {"path": "C:\\Temp\\absent.ps1"}))
    assert answer == {"path": "C:\\Temp\\absent.ps1", "removed": False}
    assert client.run_payload(_echo({"x": 1})) == {"echo": {"x": 1}}


def test_hostile_parameters_arrive_as_data(running: Running) -> None:
    """What the twin decodes from the params line is exactly what was sent (the echo comes
    back through the console code page, so the twin's side is the one compared)."""
    _client(running).run_payload(_echo(HOSTILE_PARAMS))
    assert running.twin.received == [HOSTILE_PARAMS]


def test_script_over_8_kb_goes_through_a_temporary_file(running: Running) -> None:
    params = {"blob": "Zürich; $(rm -r C:\\) `n " * 600, "hostile": HOSTILE_PARAMS["nested"]}
    payload = _echo(params)
    assert len(payload.script.encode("utf-8")) > 8 * 1024
    result = _client(running).run_script(payload.script, step="test.echo")
    assert result.chunked and result.exit_code == 0 and result.warnings == ()
    assert payloads.parse_output(result.stdout) == {"echo": params}
    assert running.twin.received == [params]
    assert _scratch_files(running) == []  # the temporary file was removed


def test_refused_logon(running: Running) -> None:
    client = _client(running, password=Secret("wrong-password-123"))
    with pytest.raises(TransportError) as caught:
        client.run_payload(_echo({}))
    error = caught.value
    assert (error.host, error.step, error.cause) == (ADDRESS, "connect", FailureCause.AUTH_REFUSED)
    assert "wrong-password-123" not in str(error) and PASSWORD not in str(error)
    assert running.twin.calls == {}


def test_certificate_from_another_ca_is_refused(
    running: Running, pki: tuple[ServerCertificate, Path]
) -> None:
    _, stranger_ca = pki
    with pytest.raises(TransportError) as caught:
        _client(running, ca_trust_path=str(stranger_ca)).run_payload(_echo({}))
    assert (caught.value.step, caught.value.cause) == ("connect", FailureCause.CERTIFICATE_INVALID)
    assert running.twin.calls == {}


def test_certificate_for_another_host_is_refused(
    tmp_path: Path, pki: tuple[ServerCertificate, Path]
) -> None:
    certificate, _ = pki  # issued for ADDRESS, served on OTHER_ADDRESS
    endpoint = WinRMEndpoint(
        EndpointConfig(
            name="ex2",
            address=OTHER_ADDRESS,
            accounts=(WinRMAccount(USER, PASSWORD),),
            twin_dir=tmp_path / "twin2",
            handler=PayloadDispatcher(_registry(), Twin()),
            certificate=certificate,
            port=0,
        )
    )
    endpoint.start()
    try:
        running = Running(endpoint, Twin(), certificate)
        with pytest.raises(TransportError) as caught:
            _client(running, host=OTHER_ADDRESS).run_payload(_echo({}))
        assert caught.value.cause is FailureCause.CERTIFICATE_INVALID
    finally:
        endpoint.stop(timeout=10)


def test_a_host_that_stops_answering_times_out_and_is_not_rerun(running: Running) -> None:
    running.endpoint.faults.set(InjectedFault(FaultKind.HANG, action="Command"))
    with pytest.raises(TransportError) as caught:
        _client(running).run_payload(_echo({}))
    assert (caught.value.step, caught.value.cause) == ("test.echo", FailureCause.TIMEOUT)
    running.endpoint.faults.clear()
    assert running.twin.calls.get("test.echo", 0) <= 1


def test_dropped_connection_before_the_shell_is_retried(running: Running) -> None:
    running.endpoint.faults.set(InjectedFault(FaultKind.DROP_REQUEST, action="Create", times=2))
    assert _client(running, connect_retries=2).run_payload(_echo({"n": 1})) == {"echo": {"n": 1}}
    assert running.twin.calls == {"test.echo": 1}


def test_a_command_whose_answer_was_lost_is_not_run_again(running: Running) -> None:
    running.endpoint.faults.set(
        InjectedFault(FaultKind.DROP_RESPONSE, action="Command", op="test.echo", times=1)
    )
    with pytest.raises(TransportError) as caught:
        _client(running, connect_retries=3).run_payload(_echo({}))
    assert caught.value.step == "test.echo"
    assert caught.value.cause is FailureCause.CONNECTION_FAILED
    assert running.twin.calls == {"test.echo": 1}  # it ran once, and only once


def test_failed_script_reports_its_stderr(running: Running) -> None:
    running.endpoint.faults.set(
        InjectedFault(FaultKind.FAIL_COMMAND, op="test.echo", exit_code=5, message="disk full")
    )
    with pytest.raises(TransportError) as caught:
        _client(running).run_payload(_echo({}))
    error = caught.value
    assert (error.cause, error.exit_code) == (FailureCause.SCRIPT_FAILED, 5)
    assert "disk full" in error.stderr and "disk full" in str(error)


def test_unknown_op_fails_like_windows(running: Running) -> None:
    payload = payloads.RenderedPayload(
        op="test.unknown", script=f"{payloads.header('test.unknown')}\n{payloads.params_line({})}\n"
    )
    with pytest.raises(TransportError) as caught:
        _client(running).run_payload(payload)
    assert caught.value.cause is FailureCause.SCRIPT_FAILED
    assert "not recognized" in caught.value.stderr


def test_plain_http_uses_ntlm_message_encryption(
    tmp_path: Path,
) -> None:
    endpoint = WinRMEndpoint(
        EndpointConfig(
            name="ex3",
            address=OTHER_ADDRESS,
            accounts=(WinRMAccount(USER, PASSWORD),),
            twin_dir=tmp_path / "twin3",
            handler=PayloadDispatcher(_registry(), Twin()),
            certificate=None,
            port=0,
        )
    )
    endpoint.start()
    try:
        client = WinRMClient(
            WinRMOptions(
                host=OTHER_ADDRESS,
                port=endpoint.port,
                use_https=False,
                username=USER,
                password=Secret(PASSWORD),
                operation_timeout=2,
                read_timeout=4,
            )
        )
        assert client.run_payload(_echo({"sealed": True})) == {"echo": {"sealed": True}}
    finally:
        endpoint.stop(timeout=10)
