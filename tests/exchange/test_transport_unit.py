"""The WinRM transport without a network: options, chunking, retries, error mapping and
secrets, against a fake pywinrm Protocol (fake_winrm.py)."""

from __future__ import annotations

import hashlib
import logging
import pickle
import uuid
import warnings
from typing import Any

import pytest
import requests
import winrm.exceptions
from winrm.protocol import Protocol as WinRMProtocol

from relayguard.exchange import payloads
from relayguard.exchange import transport as tr
from relayguard.exchange.transport import (
    AuthMethod,
    FailureCause,
    Secret,
    TransportError,
    WinRMClient,
    WinRMOptions,
)

from .fake_winrm import FakeHost

PASSWORD = "S3cr3t-Pa55w0rd!"


def _options(**changes: Any) -> WinRMOptions:
    base: dict[str, Any] = {
        "host": "ex1.lab.test",
        "username": "LAB\\relayguard",
        "password": Secret(PASSWORD),
        "retry_delay": 0.0,
        "command_timeout": 30.0,
    }
    base.update(changes)
    return WinRMOptions(**base)


def _client(host: FakeHost, **changes: Any) -> WinRMClient:
    return WinRMClient(_options(**changes), protocol_factory=host.protocol, sleep=lambda _s: None)


def _big_script(size: int = 20_000) -> str:
    # hex of a hash chain: text that gzip cannot shrink much, so it still takes several chunks
    digest, lines = b"", []
    for i in range(size // 80):
        digest = hashlib.sha256(digest).digest()
        lines.append(f"# filler line {i:05d} {digest.hex()}")
    filler = "\n".join(lines)
    return (
        "# relayguard-payload: test.big v1\n"
        "$RelayguardParams = [System.Text.Encoding]::UTF8.GetString([System.Convert]"
        "::FromBase64String('e30=')) | ConvertFrom-Json\n"
        f"{filler}\n# Ünïcödé at the end\n"
    )


# --- options -------------------------------------------------------------------------------


def test_defaults_are_https_ntlm_with_validation() -> None:
    options = _options()
    assert options.endpoint == "https://ex1.lab.test:5986/wsman"
    assert (options.auth, options.validate_certificate) == (AuthMethod.NTLM, True)
    assert tr.check_options(options) == []
    assert tr.message_encryption(options) == "auto"


def test_plain_http_ntlm_always_encrypts_messages() -> None:
    options = _options(use_https=False)
    assert options.endpoint == "http://ex1.lab.test:5985/wsman"
    assert tr.message_encryption(options) == "always"


def test_ipv6_endpoint() -> None:
    assert _options(host="::1", port=55986).endpoint == "https://[::1]:55986/wsman"


def test_basic_over_http_is_refused_unless_allowed() -> None:
    with pytest.raises(TransportError) as caught:
        WinRMClient(_options(auth=AuthMethod.BASIC, use_https=False))
    assert caught.value.cause is FailureCause.CONFIGURATION
    assert "in clear" in str(caught.value)
    with pytest.warns(UserWarning, match="password crosses in clear"):
        WinRMClient(_options(auth=AuthMethod.BASIC, use_https=False, allow_basic_over_http=True))


def test_basic_over_https_is_fine() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        WinRMClient(_options(auth=AuthMethod.BASIC))


@pytest.mark.parametrize("auth", [AuthMethod.CERTIFICATE, AuthMethod.CREDSSP])
def test_https_only_methods(auth: AuthMethod) -> None:
    with pytest.raises(TransportError, match="needs HTTPS"):
        WinRMClient(_options(auth=auth, use_https=False, cert_pem="c", cert_key_pem="k"))


@pytest.mark.parametrize(
    "changes",
    [
        {"password": None},
        {"username": None},
        {"auth": AuthMethod.CERTIFICATE},
        {"operation_timeout": 0},
        {"operation_timeout": 30, "read_timeout": 30},
        {"connect_retries": -1},
    ],
)
def test_incomplete_options_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(TransportError) as caught:
        WinRMClient(_options(**changes))
    assert caught.value.step == "configure"


def test_kerberos_may_use_the_ticket_cache() -> None:
    WinRMClient(_options(auth=AuthMethod.KERBEROS, username=None, password=None))


def test_turning_validation_off_is_warned_about() -> None:
    with pytest.warns(UserWarning, match="validation is off"):
        WinRMClient(_options(validate_certificate=False))


def test_pywinrm_protocol_settings() -> None:
    options = _options(ca_trust_path="/tmp/ca.pem", connect_timeout=3, operation_timeout=5)
    protocol: Any = tr.pywinrm_protocol(options)
    assert protocol.transport.endpoint == "https://ex1.lab.test:5986/wsman"
    assert protocol.transport.read_timeout_sec == (3, 15)
    assert protocol.transport.server_cert_validation == "validate"
    assert protocol.transport.ca_trust_path == "/tmp/ca.pem"
    assert protocol.transport.auth_method == "ntlm"
    assert protocol.transport.proxy is None


# --- running -------------------------------------------------------------------------------


def test_small_payload_runs_as_one_command() -> None:
    host = FakeHost(answer=lambda script: (b'{"answer":42}\r\n', b"", 0))
    payload = payloads.render("file.remove", {"path": "C:\\nothing"})
    client = _client(host)
    result = client.run_script("# relayguard-payload: x.y v1\n", step="probe")
    assert (result.exit_code, result.chunked) == (0, False)
    assert client.run_payload(payload) == {"path": "C:\\nothing", "removed": False}
    assert host.shells_opened == host.shells_closed == 2


def test_large_script_goes_up_on_stdin_runs_once_and_is_removed() -> None:
    script = _big_script()
    assert len(tr.command_line(script)) > tr.MAX_COMMAND_CHARS
    host = FakeHost(answer=lambda s: (b'{"big":true}', b"", 0))
    client = _client(host)
    result = client.run_script(script, step="big")
    assert result.chunked and result.exit_code == 0 and result.warnings == ()
    assert payloads.parse_output(result.stdout) == {"big": True}
    assert host.scripts.count(script) == 1  # run exactly once, from the file
    assert len(host.ran_files) == 1
    assert host.files == {}  # nothing left on the host
    ops = [payloads.script_op(s) for s in host.scripts]
    assert ops == ["file.exec", "test.big"]  # one command, whatever the size
    assert len(host.sends) == 1  # the whole script in one Send
    assert host.longest_command <= tr.MAX_COMMAND_CHARS
    assert host.shells_opened == 1
    path = host.ran_files[0]
    assert path.startswith("C:\\Windows\\Temp\\relayguard-") and path.endswith(".ps1")


def test_upload_file_sends_the_file_in_envelope_sized_pieces() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    host = FakeHost()
    client = _client(host)
    client.upload_file(data, "C:\\Windows\\Temp\\package.msp")
    assert host.files["C:\\Windows\\Temp\\package.msp"] == data
    per_send = tr.stdin_bytes_per_send(tr.DEFAULT_MAX_ENVELOPE_KB)
    assert len(host.sends) == -(-len(data) // per_send)  # one command, a few Sends
    assert [payloads.script_op(s) for s in host.scripts] == ["file.receive"]
    assert host.shells_opened == host.shells_closed == 1


def test_a_send_refused_as_too_large_is_sent_again_at_150_kb() -> None:
    data = bytes(range(256)) * 2048  # 512 KiB: two Sends at 500 KB, four at 150 KB
    too_large = winrm.exceptions.WinRMTransportError("http", 413, "")
    host = FakeHost(send_errors=[too_large])
    client = _client(host)
    client.upload_file(data, "C:\\Windows\\Temp\\a.msp")
    assert host.files["C:\\Windows\\Temp\\a.msp"] == data
    small = tr.stdin_bytes_per_send(tr.FALLBACK_MAX_ENVELOPE_KB)
    assert len(host.sends) == -(-len(data) // small)
    client.upload_file(data, "C:\\Windows\\Temp\\b.msp")  # remembered for the next upload
    assert len(host.sends) == 2 * -(-len(data) // small)
    host.send_errors = [too_large]  # at the floor already: an error naming the limit
    with pytest.raises(TransportError) as caught:
        client.upload_file(data, "C:\\Windows\\Temp\\c.msp")
    assert "MaxEnvelopeSizekb" in caught.value.detail


@pytest.mark.parametrize("kb", [tr.FALLBACK_MAX_ENVELOPE_KB, tr.DEFAULT_MAX_ENVELOPE_KB, 32])
def test_a_full_send_envelope_fits_max_envelope_size(kb: int) -> None:
    """The Send pywinrm builds for the largest piece stays within MaxEnvelopeSizekb."""
    protocol = WinRMProtocol("https://host.example:5986/wsman", username="u", password="p")
    sent: list[str] = []
    protocol.send_message = sent.append  # type: ignore[method-assign,assignment]
    per_send = tr.stdin_bytes_per_send(kb)
    line, last = next(tr.stdin_lines(bytes(per_send + 10), per_send))
    assert not last
    protocol.send_command_input(str(uuid.uuid4()).upper(), str(uuid.uuid4()).upper(), line)
    assert len(sent[0].encode()) <= kb * 1024
    assert len(sent[0].encode()) > kb * 1024 * 0.9  # and uses most of it


def test_non_ascii_script_file_gets_a_bom() -> None:
    assert tr.script_bytes("abc") == b"abc"
    assert tr.script_bytes("é").startswith(b"\xef\xbb\xbf")


def test_chunk_size_is_the_largest_that_fits() -> None:
    path = "C:\\Windows\\Temp\\relayguard-0123456789abcdef0123456789abcdef.ps1"
    size = tr.max_chunk_bytes(path)
    assert size > 500

    def command(n: int) -> str:
        chunk = payloads.render(
            "file.append_chunk", {"path": path, "chunk_b64": tr.base64.b64encode(bytes(n)).decode()}
        )
        return tr.command_line(chunk.script)

    assert len(command(size)) <= tr.MAX_COMMAND_CHARS < len(command(size + 3))


def test_a_script_the_host_does_not_hold_as_sent_never_runs() -> None:
    host = FakeHost(corrupt_append=True)
    result = _client(host).run_script(_big_script(), step="big")
    assert result.exit_code == 1 and "arrived as" in result.stderr
    assert host.ran_files == [] and host.files == {}


def test_an_upload_the_host_does_not_hold_is_an_error() -> None:
    host = FakeHost(corrupt_append=True)
    with pytest.raises(TransportError) as caught:
        _client(host).upload_file(b"package", "C:\\Windows\\Temp\\p.msp")
    assert caught.value.cause is FailureCause.OUTPUT_INVALID
    assert "upload" in caught.value.step


def test_failed_cleanup_is_logged_not_hidden(caplog: pytest.LogCaptureFixture) -> None:
    host = FakeHost(fail_remove=True, receive_errors=[requests.exceptions.ConnectionError("reset")])
    with pytest.raises(TransportError):
        _client(host).run_script(_big_script(), step="big")
    assert "temporary file left" in caplog.text


def test_script_failure_carries_stderr() -> None:
    clixml = (
        b'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/'
        b'2004/04"><S S="Error">Cannot find path &apos;HKLM:\\x&apos;_x000D__x000A_</S>'
        b'<S S="Error">second line_x000D__x000A_</S></Objs>'
    )
    host = FakeHost(answer=lambda s: (b"", clixml, 1))
    with pytest.raises(TransportError) as caught:
        _client(host).run_payload(_Op())
    error = caught.value
    assert error.cause is FailureCause.SCRIPT_FAILED and error.exit_code == 1
    assert str(error) == "ex1.lab.test: test.op: script failed: exit 1: Cannot find path 'HKLM:\\x'"
    assert error.stderr == "Cannot find path 'HKLM:\\x'\nsecond line"


class _Op(payloads.RenderedPayload):
    def __init__(self) -> None:
        super().__init__(op="test.op", script="# relayguard-payload: test.op v1\n")


def test_two_json_documents_are_invalid_output() -> None:
    host = FakeHost(answer=lambda s: (b'{"a":1}\n{"b":2}', b"", 0))
    with pytest.raises(TransportError) as caught:
        _client(host).run_payload(_Op())
    assert caught.value.cause is FailureCause.OUTPUT_INVALID


# --- retries: only before a command could have run -----------------------------------------


def test_connection_errors_at_connect_are_retried() -> None:
    host = FakeHost(open_errors=[requests.ConnectionError("refused"), requests.ConnectTimeout()])
    sleeps: list[float] = []
    client = WinRMClient(
        _options(retry_delay=0.5), protocol_factory=host.protocol, sleep=sleeps.append
    )
    assert client.run_payload(_Op()) == {"ok": True}
    assert sleeps == [0.5, 1.0]


def test_retries_are_bounded() -> None:
    host = FakeHost(open_errors=[requests.ConnectionError("Connection refused")] * 5)
    with pytest.raises(TransportError) as caught:
        _client(host, connect_retries=2).run_payload(_Op())
    assert caught.value.step == "connect"
    assert caught.value.cause is FailureCause.CONNECTION_FAILED
    assert "after 3 attempts" in str(caught.value)
    assert len(host.open_errors) == 2


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (winrm.exceptions.InvalidCredentialsError("rejected"), FailureCause.AUTH_REFUSED),
        (
            requests.exceptions.SSLError(
                "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed "
                "certificate (_ssl.c:1000)"
            ),
            FailureCause.CERTIFICATE_INVALID,
        ),
        (requests.ReadTimeout("read timed out"), FailureCause.TIMEOUT),
        (winrm.exceptions.WinRMTransportError("http", 500, "oops"), FailureCause.PROTOCOL_ERROR),
    ],
)
def test_other_connect_errors_are_not_retried(error: BaseException, cause: FailureCause) -> None:
    host = FakeHost(open_errors=[error, error])
    with pytest.raises(TransportError) as caught:
        _client(host).run_payload(_Op())
    assert (caught.value.step, caught.value.cause) == ("connect", cause)
    assert len(host.open_errors) == 1


def test_a_command_that_may_have_run_is_never_rerun() -> None:
    host = FakeHost(run_error=requests.ConnectionError("Connection reset by peer"))
    with pytest.raises(TransportError) as caught:
        _client(host).run_payload(_Op())
    assert (caught.value.step, caught.value.cause) == ("test.op", FailureCause.CONNECTION_FAILED)
    assert host.shells_opened == 1


def test_a_lost_answer_is_not_rerun_either() -> None:
    host = FakeHost(receive_errors=[requests.ReadTimeout("read timed out")])
    with pytest.raises(TransportError) as caught:
        _client(host).run_payload(_Op())
    assert caught.value.cause is FailureCause.TIMEOUT
    assert len(host.scripts) == 1


def test_command_timeout_bounds_the_wait() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 10.0
        return now[0]

    host = FakeHost(receive_errors=[winrm.exceptions.WinRMOperationTimeoutError()] * 100)
    client = WinRMClient(
        _options(command_timeout=35.0),
        protocol_factory=host.protocol,
        sleep=lambda _s: None,
        clock=clock,
    )
    with pytest.raises(TransportError) as caught:
        client.run_payload(_Op())
    assert caught.value.cause is FailureCause.TIMEOUT
    assert "may still be running" in caught.value.detail
    assert len(host.scripts) == 1


# --- classification and secrets ------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "cause", "detail"),
    [
        (
            requests.exceptions.SSLError("certificate verify failed: Hostname mismatch, x"),
            FailureCause.CERTIFICATE_INVALID,
            "Hostname mismatch, x",
        ),
        (requests.exceptions.SSLError("wrong version number"), FailureCause.TLS_ERROR, None),
        (requests.ConnectTimeout(), FailureCause.TIMEOUT, None),
        (
            winrm.exceptions.WinRMError(
                "requested auth method is kerberos, but pykerberos is not installed"
            ),
            FailureCause.CONFIGURATION,
            "requested auth method is kerberos, but pykerberos is not installed",
        ),
        (FileNotFoundError(2, "No such file", "/tmp/ca.pem"), FailureCause.CONFIGURATION, None),
        (ValueError("weird"), FailureCause.PROTOCOL_ERROR, "ValueError weird"),
    ],
)
def test_classify(error: BaseException, cause: FailureCause, detail: str | None) -> None:
    got_cause, got_detail = tr.classify(error)
    assert got_cause is cause
    if detail is not None:
        assert got_detail == detail


def test_errors_have_no_traceback_chain() -> None:
    host = FakeHost(open_errors=[winrm.exceptions.InvalidCredentialsError("x")])
    with pytest.raises(TransportError) as caught:
        _client(host).run_payload(_Op())
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = Secret(PASSWORD)
    options = _options(password=secret)
    texts = [repr(secret), str(secret), repr(options), str(options), f"{secret}"]
    host = FakeHost(open_errors=[requests.ConnectionError(f"refused for user with {PASSWORD}")] * 3)
    client = WinRMClient(options, protocol_factory=host.protocol, sleep=lambda _s: None)
    texts.append(repr(client))
    with pytest.raises(TransportError) as caught:
        client.run_payload(_Op())
    texts += [str(caught.value), repr(caught.value), caught.value.detail]
    texts += [record.getMessage() for record in caplog.records]
    assert all(PASSWORD not in text for text in texts)
    assert secret.reveal() == PASSWORD
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_scrub_removes_an_echoed_password() -> None:
    error = winrm.exceptions.WinRMError(f"bad thing with {PASSWORD}")
    host = FakeHost(open_errors=[error])
    with pytest.raises(TransportError) as caught:
        _client(host).run_payload(_Op())
    assert PASSWORD not in str(caught.value) and "***" in str(caught.value)


def test_a_session_shares_one_shell_and_starts_afresh_after_an_error() -> None:
    host = FakeHost()
    client = _client(host)
    remove = payloads.render("file.remove", {"path": "C:\\nothing"})
    with client.session():
        for _ in range(3):
            client.run_payload(remove)
        assert (host.shells_opened, host.shells_closed) == (1, 0)
        host.run_error = requests.exceptions.ConnectionError("reset")
        with pytest.raises(TransportError):
            client.run_payload(remove)  # not run again, and the shell is given up
        host.run_error = None
        assert host.shells_closed == 1
        client.run_payload(remove)
        client.run_payload(payloads.render("exchange.restart_computer", {}))
        assert host.shells_closed == 2  # the host restarts: no shell survives it
        client.run_payload(remove)
    assert host.shells_opened == host.shells_closed == 3
    client.run_payload(remove)  # outside a session: a shell of its own
    assert host.shells_opened == host.shells_closed == 4


def test_an_unexpected_error_says_where_it_was_raised_and_from_which_http_answer() -> None:
    """A KeyError inside the client library (e.g. a header missing from an error answer) is
    named with its place and the HTTP status it arose from, not as a bare "KeyError"."""

    def parse(headers: dict[str, str]) -> str:
        return headers["Content-Type"]

    answer = requests.Response()
    answer.status_code = 400
    try:
        try:
            raise requests.exceptions.HTTPError("400 Client Error", response=answer)
        except requests.exceptions.HTTPError:
            parse({})
    except KeyError as exc:
        cause, detail = tr.classify(exc)
    assert cause is FailureCause.PROTOCOL_ERROR
    assert detail.startswith("KeyError 'Content-Type' at test_transport_unit.py:"), detail
    assert " in parse, handling an HTTP 400 answer" in detail, detail
