"""The real pywinrm client against a twin: TLS validation, NTLM, Basic, message encryption."""

from __future__ import annotations

import base64
import logging
import ssl

import pytest
import requests
import spnego
import winrm
from conftest import PASSWORD, USER, RunningTwin, TwinFactory, payload_script
from cryptography import x509
from spnego.channel_bindings import GssChannelBindings
from winrm.exceptions import InvalidCredentialsError

from relayguard.lab.ca import LabCA
from relayguard.lab.wsman import WinRMAccount
from relayguard.lab.wsman.auth import tls_server_end_point


@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_https_with_certificate_validation(twin: RunningTwin, transport: str) -> None:
    session = twin.session(transport)
    result = session.run_ps(payload_script("test.echo", {"x": 1}))
    assert result.status_code == 0, result.std_err
    assert result.std_out == b'{"params":{"x":1},"twin":"twin0"}\r\n'


def test_validation_needs_the_lab_ca(twin: RunningTwin) -> None:
    # With the system trust store only, the same client refuses the twin's certificate.
    with pytest.raises(requests.exceptions.SSLError):
        twin.session("ntlm", ca_trust_path=None).run_cmd("hostname")


def test_ntlm_principal_and_local_account_spellings(twin: RunningTwin) -> None:
    host = twin.endpoint.host_name
    for username in (USER, f".\\{USER}", f"{host}\\{USER}", f"{host.lower()}\\{USER.upper()}"):
        result = twin.session("ntlm", username=username).run_cmd("whoami")
        assert result.std_out == f"{host.lower()}\\{USER}\r\n".encode(), username


def test_domain_account(start_twin: TwinFactory) -> None:
    twin = start_twin(accounts=(WinRMAccount("svc-relay", PASSWORD, domain="LAB"),))
    assert twin.session("ntlm", username="LAB\\svc-relay").run_cmd("whoami").std_out == (
        b"lab\\svc-relay\r\n"
    )
    with pytest.raises(InvalidCredentialsError):
        twin.session("ntlm", username="svc-relay").run_cmd("whoami")


@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_wrong_password_is_401_and_a_clear_client_error(
    twin: RunningTwin, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Not-The-Password-42"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(InvalidCredentialsError) as excinfo:
        twin.session(transport, password=wrong).run_ps(payload_script("test.echo", {}))
    assert "rejected" in str(excinfo.value)
    assert wrong not in str(excinfo.value)
    assert wrong not in caplog.text and PASSWORD not in caplog.text
    assert twin.twin.calls == []


def test_unknown_user_is_refused(twin: RunningTwin) -> None:
    with pytest.raises(InvalidCredentialsError):
        twin.session("ntlm", username="administrator").run_cmd("hostname")


def test_certificate_from_another_ca_fails_tls(
    twin: RunningTwin, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = LabCA.create(tmp_path_factory.mktemp("other") / "ca")
    session = twin.session("ntlm", ca_trust_path=str(other.cert_path))
    with pytest.raises(requests.exceptions.SSLError) as excinfo:
        session.run_cmd("hostname")
    assert "CERTIFICATE_VERIFY_FAILED" in str(excinfo.value)


def test_certificate_names_the_twin(twin: RunningTwin) -> None:
    pem = ssl.get_server_certificate((twin.endpoint.config.address, twin.endpoint.port))
    certificate = x509.load_pem_x509_certificate(pem.encode())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [
        twin.endpoint.config.address
    ]
    assert san.get_values_for_type(x509.DNSName) == ["twin0.lab.test"]


def test_http_ntlm_with_message_encryption(start_twin: TwinFactory) -> None:
    twin = start_twin(tls=False)
    assert twin.endpoint.url.startswith("http://") and twin.endpoint.url.endswith(":5985/wsman")
    session = twin.session("ntlm")
    result = session.run_ps(payload_script("test.echo", {"sealed": True}))
    assert result.std_out == b'{"params":{"sealed":true},"twin":"twin0"}\r\n'
    assert session.protocol.transport.encryption is not None  # pywinrm did seal the messages


def test_https_ntlm_with_forced_message_encryption(twin: RunningTwin) -> None:
    session = twin.session("ntlm", message_encryption="always")
    assert session.run_cmd("hostname").std_out == b"TWIN0\r\n"
    assert session.protocol.transport.encryption is not None


def test_http_refuses_unencrypted_messages_and_basic(start_twin: TwinFactory) -> None:
    twin = start_twin(tls=False)
    with pytest.raises(InvalidCredentialsError):
        twin.session("ntlm", message_encryption="never").run_cmd("hostname")
    with pytest.raises(InvalidCredentialsError):
        twin.session("basic").run_cmd("hostname")


def test_basic_can_be_switched_off(start_twin: TwinFactory) -> None:
    twin = start_twin(allow_basic=False)
    with pytest.raises(InvalidCredentialsError):
        twin.session("basic").run_cmd("hostname")
    assert twin.session("ntlm").run_cmd("hostname").status_code == 0


def _ntlm_handshake(twin: RunningTwin, bindings: GssChannelBindings | None) -> int:
    """Authenticate with an NTLM client given explicit channel bindings; the final status."""
    http = requests.Session()
    http.verify = str(twin.ca.cert_path)
    http.trust_env = False
    client = spnego.client(USER, PASSWORD, protocol="ntlm", channel_bindings=bindings)
    headers = {"Content-Type": "application/soap+xml;charset=UTF-8"}
    first = http.post(twin.endpoint.url, data=b"", headers=headers)
    assert first.status_code == 401
    negotiate = base64.b64encode(client.step() or b"").decode()
    second = http.post(
        twin.endpoint.url, headers={**headers, "Authorization": f"Negotiate {negotiate}"}
    )
    assert second.status_code == 401
    challenge = base64.b64decode(second.headers["WWW-Authenticate"].split()[1])
    authenticate = base64.b64encode(client.step(challenge) or b"").decode()
    third = http.post(
        twin.endpoint.url, headers={**headers, "Authorization": f"Negotiate {authenticate}"}
    )
    http.close()
    return third.status_code


def test_channel_binding_of_another_certificate_is_refused(
    twin: RunningTwin, lab_ca: LabCA, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = lab_ca.issue_server_certificate(
        tmp_path_factory.mktemp("cbt"), "elsewhere.lab.test", ["127.0.20.250"]
    )
    own = tls_server_end_point(twin.endpoint.config.certificate.cert_path.read_bytes())  # type: ignore[union-attr]
    foreign = tls_server_end_point(other.cert_path.read_bytes())
    assert _ntlm_handshake(twin, own) == 200  # empty authenticated POST: accepted
    assert _ntlm_handshake(twin, foreign) == 401  # a relayed/intercepted handshake: refused


def test_no_password_in_logs_or_reprs(twin: RunningTwin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    twin.session("ntlm").run_cmd("hostname")
    twin.session("basic").run_cmd("hostname")
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(twin.endpoint.config)
    store = twin.endpoint.credential_store
    assert store.stat().st_mode & 0o777 == 0o600
    assert store.parent == twin.endpoint.config.twin_dir


def test_session_object_is_reusable_across_commands(twin: RunningTwin) -> None:
    session: winrm.Session = twin.session("ntlm")
    outputs = [session.run_ps(payload_script("test.echo", {"n": n})).std_out for n in range(5)]
    assert outputs == [f'{{"params":{{"n":{n}}},"twin":"twin0"}}\r\n'.encode() for n in range(5)]
