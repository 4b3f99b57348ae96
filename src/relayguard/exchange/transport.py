"""WinRM transport: run one relayguard payload on a Windows host, over pywinrm.

The only room of `relayguard.exchange` that touches the network. Defaults are the safe
ones: HTTPS with the server certificate validated (against `ca_trust_path`, else requests'
CA bundle), NTLM. Plain HTTP needs `use_https=False` and then always uses message encryption (ntlm,
kerberos); basic over plain HTTP is refused unless `allow_basic_over_http` is set, and then
warned about; certificate and CredSSP authentication are HTTPS only
(docs/sources.md#pywinrm-transport).

A script is run as pywinrm's `Session.run_ps` runs it (`powershell -encodedcommand`, the
form the payload contract names). Bulk data goes on the command's standard input: WS-Man's
Send ([MS-WSMV] 3.1.4.13) carries stdin base64 in the SOAP body, so one request holds
hundreds of KB where a command line holds under 1 KB of a file (docs/sources.md#winrm-send).
`upload_file` writes a file with one `file.receive` command (base64 lines on stdin; length
and SHA-256 checked on the host); a script whose command line would pass cmd.exe's 8191
character limit goes gzip-compressed on the stdin of one `file.exec`, which checks it, runs
it from a temporary file and removes that (payload protocol v1,
docs/sources.md#decision-payload-protocol-v1). Each Send fits the host's MaxEnvelopeSizekb
([MS-WSMV] 2.2.4.10: 500 KB by default, 150 KB on older Windows): `max_envelope_kb` (500);
a Send the host refuses as too large (HTTP 413, nothing of it processed) is sent again in
150 KB envelopes.

Shells: each script runs in a shell of its own (Create, the command, Delete, and a new TLS
and NTLM handshake: pywinrm closes its HTTP session with the shell), except inside
`session()`, where the scripts share one shell and connection — a task's detect, reads,
writes and install. A shell that saw an error, or an `exchange.restart_computer`, is given up
and the next script opens a new one, so after any failure a session behaves as before.

Retries: only opening the shell is retried, and only on connection errors (refused, reset,
connect timeout), because no command can have run yet. Once a command was sent nothing is
retried: a command that may have run is never run again.

Every failure is one `TransportError` naming the host, the step and the cause; it carries
no traceback chain and no secret. Passwords live in `Secret`, whose str and repr are masked.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import html
import logging
import re
import time
import traceback
import uuid
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

import requests
import winrm.exceptions
from winrm.protocol import Protocol as WinRMProtocol

from relayguard.exchange import payloads

log = logging.getLogger(__name__)

# cmd.exe's command-line limit (Microsoft: "Command prompt (Cmd.exe) command-line string
# limitation", 8191 characters); pywinrm runs commands through cmd (pywinrm #184, #87).
MAX_COMMAND_CHARS = 8191
# Exactly what pywinrm's Session.run_ps sends (the form payload protocol v1 names).
POWERSHELL_PREFIX = "powershell -encodedcommand "
DEFAULT_REMOTE_TEMP_DIR = "C:\\Windows\\Temp"
_UTF8_BOM = b"\xef\xbb\xbf"
# pywinrm opens every shell with WINRS_CODEPAGE 437, so the host encodes stdout and stderr
# in that OEM code page; payload scripts escape everything beyond ASCII in their JSON anyway.
OUTPUT_CODEC = "cp437"
# MaxEnvelopeSizekb ([MS-WSMV] 2.2.4.10): "The default value SHOULD be 500 but MAY be 150";
# it also bounds the requests the service processes. 150 is the floor we fall back to.
DEFAULT_MAX_ENVELOPE_KB = 500
FALLBACK_MAX_ENVELOPE_KB = 150
# What a Send envelope holds besides its stream (pywinrm's headers are about 1.6 KB).
SEND_ENVELOPE_OVERHEAD = 4096
HTTP_REQUEST_TOO_LARGE = 413
# Payloads after which no shell of the host survives: a session opens a new one.
SHELL_ENDING_OPS = frozenset({"exchange.restart_computer"})


class Secret:
    """A password or key passphrase: str and repr never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


class AuthMethod(StrEnum):
    NTLM = "ntlm"
    KERBEROS = "kerberos"
    CREDSSP = "credssp"
    CERTIFICATE = "certificate"
    BASIC = "basic"


class FailureCause(StrEnum):
    """Why a step failed, in words an operator acts on."""

    AUTH_REFUSED = "auth refused"
    CERTIFICATE_INVALID = "certificate invalid"
    TLS_ERROR = "TLS error"
    TIMEOUT = "timeout"
    CONNECTION_FAILED = "connection failed"
    SCRIPT_FAILED = "script failed"
    OUTPUT_INVALID = "output invalid"
    PROTOCOL_ERROR = "WinRM protocol error"
    CONFIGURATION = "configuration"


class TransportError(Exception):
    """A WinRM step failed. `str()` is one line: host, step, cause, detail."""

    def __init__(
        self,
        host: str,
        step: str,
        cause: FailureCause,
        detail: str,
        *,
        stderr: str = "",
        exit_code: int | None = None,
    ) -> None:
        self.host = host
        self.step = step
        self.cause = cause
        self.detail = detail
        self.stderr = stderr
        self.exit_code = exit_code
        super().__init__(f"{host}: {step}: {cause.value}: {detail}")


@dataclass(frozen=True)
class WinRMOptions:
    """How to reach one host. The password is a `Secret` and is left out of the repr."""

    host: str
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    auth: AuthMethod = AuthMethod.NTLM
    use_https: bool = True
    port: int | None = None  # default 5986 (HTTPS) or 5985 (HTTP)
    ca_trust_path: str | None = None  # CA bundle (PEM); None: requests' default bundle
    validate_certificate: bool = True
    cert_pem: str | None = None  # client certificate for AuthMethod.CERTIFICATE
    cert_key_pem: str | None = None
    allow_basic_over_http: bool = False
    connect_timeout: float = 10.0
    operation_timeout: int = 20  # WS-Management OperationTimeout of each request
    read_timeout: int | None = None  # HTTP read timeout; default operation_timeout + 10
    command_timeout: float = 300.0  # bound on waiting for one command's output
    connect_retries: int = 2
    retry_delay: float = 1.0
    proxy: str | None = None  # None: no proxy, environment proxies ignored
    remote_temp_dir: str = DEFAULT_REMOTE_TEMP_DIR
    max_command_chars: int = MAX_COMMAND_CHARS
    max_envelope_kb: int = DEFAULT_MAX_ENVELOPE_KB  # the host's MaxEnvelopeSizekb

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 5986 if self.use_https else 5985

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.use_https else "http"
        return f"{scheme}://{host}:{self.effective_port}/wsman"

    @property
    def effective_read_timeout(self) -> int:
        # pywinrm requires the HTTP read timeout to exceed the WS-Management operation timeout.
        return self.read_timeout if self.read_timeout is not None else self.operation_timeout + 10


def check_options(options: WinRMOptions) -> list[str]:
    """Refuse unsafe or incomplete settings (TransportError); return warnings to show."""

    def refuse(detail: str) -> TransportError:
        return TransportError(options.host, "configure", FailureCause.CONFIGURATION, detail)

    notes: list[str] = []
    auth = options.auth
    if not options.use_https:
        if auth is AuthMethod.BASIC:
            if not options.allow_basic_over_http:
                raise refuse(
                    "basic authentication over plain HTTP sends the password in clear; "
                    "use HTTPS or allow it explicitly"
                )
            notes.append("basic authentication over plain HTTP: the password crosses in clear")
        if auth in (AuthMethod.CERTIFICATE, AuthMethod.CREDSSP):
            raise refuse(f"{auth.value} authentication needs HTTPS")
    elif not options.validate_certificate:
        notes.append("server certificate validation is off: the host is not authenticated")
    if auth is AuthMethod.CERTIFICATE:
        if not options.cert_pem or not options.cert_key_pem:
            raise refuse("certificate authentication needs cert_pem and cert_key_pem")
    elif auth is not AuthMethod.KERBEROS and (not options.username or options.password is None):
        raise refuse(f"{auth.value} authentication needs a username and a password")
    if options.operation_timeout < 1 or options.connect_timeout <= 0:
        raise refuse("timeouts must be positive")
    if options.effective_read_timeout <= options.operation_timeout:
        raise refuse("read_timeout must exceed operation_timeout")
    if options.command_timeout <= 0 or options.connect_retries < 0:
        raise refuse("command_timeout must be positive and connect_retries not negative")
    if options.max_envelope_kb < 32:  # [MS-WSMV] 2.2.4.10: the minimum is 32
        raise refuse("max_envelope_kb must be at least 32 (MaxEnvelopeSizekb's minimum)")
    return notes


def message_encryption(options: WinRMOptions) -> Literal["auto", "always", "never"]:
    """Over HTTP, NTLM and Kerberos always encrypt the messages; over HTTPS TLS does."""
    if not options.use_https and options.auth in (AuthMethod.NTLM, AuthMethod.KERBEROS):
        return "always"
    return "auto"


class ShellProtocol(Protocol):
    """The part of pywinrm's Protocol this module uses (tests substitute a fake)."""

    def open_shell(self) -> str: ...

    def run_command(
        self,
        shell_id: str,
        command: str,
        arguments: Iterable[str] = (),
        console_mode_stdin: bool = True,
    ) -> str: ...

    def send_command_input(
        self, shell_id: str, command_id: str, stdin_input: bytes, end: bool = False
    ) -> None: ...

    def get_command_output_raw(
        self, shell_id: str, command_id: str
    ) -> tuple[bytes, bytes, int, bool]: ...

    def cleanup_command(self, shell_id: str, command_id: str) -> None: ...

    def close_shell(self, shell_id: str) -> None: ...


def pywinrm_protocol(options: WinRMOptions) -> ShellProtocol:
    """A pywinrm Protocol for `options` (no network traffic until the first request)."""
    protocol = WinRMProtocol(
        options.endpoint,
        transport=options.auth.value,
        username=options.username,
        password=None if options.password is None else options.password.reveal(),
        ca_trust_path=options.ca_trust_path,  # type: ignore[arg-type]
        cert_pem=options.cert_pem,
        cert_key_pem=options.cert_key_pem,
        server_cert_validation="validate" if options.validate_certificate else "ignore",
        read_timeout_sec=options.effective_read_timeout,
        operation_timeout_sec=options.operation_timeout,
        message_encryption=message_encryption(options),
        proxy=options.proxy,
    )
    # pywinrm hands requests one timeout for connect and read; requests takes a
    # (connect, read) pair, which gives the connect step its own, shorter bound.
    setattr(  # noqa: B010
        protocol.transport,
        "read_timeout_sec",
        (options.connect_timeout, options.effective_read_timeout),
    )
    return protocol


@dataclass(frozen=True)
class ScriptResult:
    stdout: str
    stderr: str
    exit_code: int
    chunked: bool = False
    warnings: tuple[str, ...] = ()


# --- error classification (pure) -----------------------------------------------------------

_CERT_REASON = re.compile(r"certificate verify failed: ([^()'\"]+)")


def classify(exc: BaseException) -> tuple[FailureCause, str]:
    """Map an exception from pywinrm/requests to a cause and a one-line detail."""
    if isinstance(exc, winrm.exceptions.InvalidCredentialsError):
        return FailureCause.AUTH_REFUSED, "the server refused the credentials (HTTP 401)"
    if isinstance(exc, requests.exceptions.SSLError):
        text = str(exc)
        reason = _CERT_REASON.search(text)
        if reason:
            return FailureCause.CERTIFICATE_INVALID, reason.group(1).strip()
        if "hostname mismatch" in text.lower() or "doesn't match" in text:
            return FailureCause.CERTIFICATE_INVALID, "the certificate does not name this host"
        return FailureCause.TLS_ERROR, "the TLS handshake failed"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return FailureCause.TIMEOUT, "no connection within the connect timeout"
    if isinstance(exc, requests.exceptions.Timeout):
        return FailureCause.TIMEOUT, "no answer within the read timeout"
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc).lower()
        if "refused" in text:
            return FailureCause.CONNECTION_FAILED, "connection refused"
        if "reset" in text or "aborted" in text or "remote end closed" in text:
            return FailureCause.CONNECTION_FAILED, "connection closed by the host"
        if "name or service not known" in text or "nodename nor servname" in text:
            return FailureCause.CONNECTION_FAILED, "host name does not resolve"
        return FailureCause.CONNECTION_FAILED, "cannot connect"
    if isinstance(exc, winrm.exceptions.WSManFaultError):
        return FailureCause.PROTOCOL_ERROR, f"WS-Management fault: {exc.reason}"
    if is_too_large(exc):
        return (
            FailureCause.PROTOCOL_ERROR,
            "the request exceeds the host's MaxEnvelopeSizekb (HTTP 413)",
        )
    if isinstance(exc, winrm.exceptions.WinRMTransportError):
        return FailureCause.PROTOCOL_ERROR, f"unexpected HTTP status {exc.code}"
    if isinstance(exc, winrm.exceptions.WinRMError):
        # e.g. "requested auth method is kerberos, but pykerberos is not installed"
        return FailureCause.CONFIGURATION, str(exc).splitlines()[0]
    if isinstance(exc, OSError):
        return FailureCause.CONFIGURATION, f"{type(exc).__name__}: {exc.strerror or exc}"
    if isinstance(exc, ET.ParseError | StopIteration):
        return FailureCause.PROTOCOL_ERROR, "the answer is not a WS-Management message"
    return FailureCause.PROTOCOL_ERROR, unexpected(exc)


def unexpected(exc: BaseException) -> str:
    """An exception nobody expected from pywinrm/requests, with where it was raised (the last
    frame: file name, line, function) and the HTTP status it arose from, if any — so that the
    one line names a cause to look for (a KeyError inside the client library says nothing on
    its own)."""
    detail = type(exc).__name__
    if str(exc):
        detail += f" {str(exc)[:80]}"
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if frames:
        last = frames[-1]
        detail += f" at {last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"
    response = getattr(exc.__context__, "response", None)
    if response is not None and getattr(response, "status_code", None):
        detail += f", handling an HTTP {response.status_code} answer"
    return detail


def is_too_large(exc: BaseException) -> bool:
    """The host refused a request over its MaxEnvelopeSizekb (HTTP 413: not processed)."""
    return (
        isinstance(exc, winrm.exceptions.WinRMTransportError)
        and not isinstance(exc, winrm.exceptions.WSManFaultError)
        and exc.code == HTTP_REQUEST_TOO_LARGE
    )


def is_retryable(exc: BaseException) -> bool:
    """Connection errors before any request was answered (TLS failures are not transient)."""
    return isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(
        exc, requests.exceptions.SSLError
    )


_CLIXML_ERROR = re.compile(r'<S S="Error">(.*?)</S>', re.DOTALL)
_CLIXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def clean_stderr(raw: bytes) -> str:
    """PowerShell writes stderr as CLIXML under -EncodedCommand; keep only the error text.

    Read with a regular expression, not an XML parser: the text comes from the remote host."""
    text = raw.decode(OUTPUT_CODEC)
    if not text.startswith("#< CLIXML"):
        return text.strip()
    parts = [html.unescape(part) for part in _CLIXML_ERROR.findall(text)]
    if not parts:
        return text.strip()
    joined = "".join(parts)
    decoded = _CLIXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), joined)
    return decoded.replace("\r\n", "\n").strip()


def command_line(script: str) -> str:
    """The command pywinrm's run_ps sends for `script`."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return POWERSHELL_PREFIX + encoded


def fits_command_line(script: str, limit: int = MAX_COMMAND_CHARS) -> bool:
    return len(command_line(script)) <= limit


def max_chunk_bytes(path: str, limit: int = MAX_COMMAND_CHARS) -> int:
    """The largest chunk whose file.append_chunk command still fits `limit` characters."""

    def fits(size: int) -> bool:
        chunk_b64 = base64.b64encode(bytes(size)).decode("ascii")
        payload = payloads.render("file.append_chunk", {"path": path, "chunk_b64": chunk_b64})
        return fits_command_line(payload.script, limit)

    if not fits(1):
        raise ValueError(f"no chunk fits a {limit}-character command line")
    low, high = 1, 8192
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def stdin_bytes_per_send(max_envelope_kb: int) -> int:
    """The most bytes of a file one Send carries within `max_envelope_kb`: the file goes as
    base64 lines on stdin, and Send base64-encodes stdin again in the SOAP body."""
    room = max_envelope_kb * 1024 - SEND_ENVELOPE_OVERHEAD
    line = room // 4 * 3  # stdin bytes whose base64 fits the room
    raw = (line - 2) // 4 * 3  # file bytes whose base64 line (and CRLF) fits `line`
    return max(3, raw - raw % 3)


def stdin_lines(data: bytes, per_send: int) -> Iterator[tuple[bytes, bool]]:
    """`data` as base64 lines of at most `per_send` file bytes each, and whether each is
    the last (an empty file is one empty line, so the stream is still closed)."""
    if not data:
        yield b"\r\n", True
        return
    for start in range(0, len(data), per_send):
        piece = data[start : start + per_send]
        yield base64.b64encode(piece) + b"\r\n", start + per_send >= len(data)


def script_bytes(script: str) -> bytes:
    """A script file's bytes: UTF-8, with a BOM only when it is not ASCII (Windows
    PowerShell 5.1 reads BOM-less files in the ANSI code page)."""
    data = script.encode("utf-8")
    return data if script.isascii() else _UTF8_BOM + data


# --- the client ----------------------------------------------------------------------------


class _Shell:
    """One open remote shell; runs commands and never retries them."""

    def __init__(
        self,
        protocol: ShellProtocol,
        shell_id: str,
        options: WinRMOptions,
        clock: Callable[[], float],
        envelope: _Envelope,
    ) -> None:
        self._protocol = protocol
        self._shell_id = shell_id
        self._options = options
        self._clock = clock
        self._envelope = envelope

    def _fail(self, step: str, exc: BaseException) -> TransportError:
        cause, detail = classify(exc)
        return TransportError(self._options.host, step, cause, _scrub(detail, self._options))

    def _send_stdin(self, command_id: str, data: bytes, step: str) -> None:
        """`data` as base64 lines on the command's stdin, one Send each, the last closing
        the stream. A Send refused as too large (HTTP 413) was not processed: it is sent
        again, and the rest too, in envelopes of the 150 KB floor."""
        sent = 0
        while True:
            per_send = stdin_bytes_per_send(self._envelope.kb)
            line, last = next(stdin_lines(data[sent:], per_send))
            try:
                self._protocol.send_command_input(self._shell_id, command_id, line, end=last)
            except Exception as exc:
                if is_too_large(exc) and self._envelope.kb > FALLBACK_MAX_ENVELOPE_KB:
                    log.info(
                        "%s: a %d KB envelope is too large for the host; %d KB from now on",
                        self._options.host,
                        self._envelope.kb,
                        FALLBACK_MAX_ENVELOPE_KB,
                    )
                    self._envelope.kb = FALLBACK_MAX_ENVELOPE_KB
                    continue
                raise self._fail(f"{step}: send", exc) from None
            if last:
                return
            sent += per_send

    def run(self, script: str, step: str, stdin: bytes | None = None) -> ScriptResult:
        """Run `script`; with `stdin`, send it as base64 lines on the command's standard
        input (pywinrm's console_mode_stdin off, as for a pipe) and close it."""
        host = self._options.host
        try:
            if stdin is None:
                command_id = self._protocol.run_command(self._shell_id, command_line(script))
            else:
                command_id = self._protocol.run_command(
                    self._shell_id, command_line(script), console_mode_stdin=False
                )
        except Exception as exc:
            raise self._fail(step, exc) from None
        if stdin is not None:
            self._send_stdin(command_id, stdin, step)
        deadline = self._clock() + self._options.command_timeout
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        exit_code = -1
        done = False
        while not done:
            if self._clock() > deadline:
                raise TransportError(
                    host,
                    step,
                    FailureCause.TIMEOUT,
                    f"no result within {self._options.command_timeout:g} s "
                    "(the command may still be running)",
                )
            try:
                out, err, exit_code, done = self._protocol.get_command_output_raw(
                    self._shell_id, command_id
                )
            except winrm.exceptions.WinRMOperationTimeoutError:
                continue  # the normal "no output yet" answer of a Receive
            except Exception as exc:
                raise self._fail(step, exc) from None
            stdout.append(out)
            stderr.append(err)
        with contextlib.suppress(Exception):
            self._protocol.cleanup_command(self._shell_id, command_id)
        return ScriptResult(
            stdout=b"".join(stdout).decode(OUTPUT_CODEC),
            stderr=clean_stderr(b"".join(stderr)),
            exit_code=exit_code,
        )

    def run_payload(self, payload: payloads.RenderedPayload, step: str) -> Any:
        return _parsed(self._options.host, step, self.run(payload.script, step))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._protocol.close_shell(self._shell_id)


@dataclass
class _Envelope:
    """The envelope size the client sends in, KB: the host's MaxEnvelopeSizekb as far as
    known (lowered to 150 after an HTTP 413)."""

    kb: int


def _scrub(text: str, options: WinRMOptions) -> str:
    """Defence in depth: no detail ever carries the password, even if a library echoed it."""
    if options.password is not None and options.password.reveal():
        return text.replace(options.password.reveal(), "***")
    return text


def _parsed(host: str, step: str, result: ScriptResult) -> Any:
    if result.exit_code != 0:
        first = result.stderr.strip().splitlines()[0] if result.stderr.strip() else "no stderr"
        raise TransportError(
            host,
            step,
            FailureCause.SCRIPT_FAILED,
            f"exit {result.exit_code}: {first}",
            stderr=result.stderr,
            exit_code=result.exit_code,
        )
    try:
        return payloads.parse_output(result.stdout)
    except payloads.PayloadError as exc:
        raise TransportError(host, step, FailureCause.OUTPUT_INVALID, str(exc)) from None


class WinRMClient:
    """Runs scripts and payloads on one host. Construction checks the options; nothing
    touches the network until a script is run."""

    def __init__(
        self,
        options: WinRMOptions,
        *,
        protocol_factory: Callable[[WinRMOptions], ShellProtocol] = pywinrm_protocol,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for note in check_options(options):
            warnings.warn(f"{options.host}: {note}", stacklevel=2)
            log.warning("%s: %s", options.host, note)
        self.options = options
        self._protocol_factory = protocol_factory
        self._sleep = sleep
        self._clock = clock
        self._envelope = _Envelope(options.max_envelope_kb)
        self._sessions = 0  # depth of session() blocks
        self._held: _Shell | None = None  # the shell a session's scripts share

    def __repr__(self) -> str:
        return f"WinRMClient({self.options.endpoint}, auth={self.options.auth.value})"

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Scripts run inside share one shell (and its HTTP connection), closed at the end."""
        self._sessions += 1
        try:
            yield
        finally:
            self._sessions -= 1
            if self._sessions == 0:
                self._drop_held()

    def _drop_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()

    @contextlib.contextmanager
    def _shell(self) -> Iterator[_Shell]:
        if self._sessions and self._held is not None:
            try:
                yield self._held
            except BaseException:
                self._drop_held()  # an error: the next script starts afresh
                raise
            return
        shell = self._open_shell()
        if not self._sessions:
            try:
                yield shell
            finally:
                shell.close()
            return
        self._held = shell
        try:
            yield shell
        except BaseException:
            self._drop_held()
            raise

    def _open_shell(self) -> _Shell:
        options = self.options
        attempts = options.connect_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                protocol = self._protocol_factory(options)
                shell_id = protocol.open_shell()
                break
            except Exception as exc:
                if is_retryable(exc) and attempt < attempts:
                    log.info("%s: connect attempt %d failed, retrying", options.host, attempt)
                    self._sleep(options.retry_delay * attempt)
                    continue
                cause, detail = classify(exc)
                if attempt > 1:
                    detail += f" (after {attempt} attempts)"
                raise TransportError(
                    options.host, "connect", cause, _scrub(detail, options)
                ) from None
        return _Shell(protocol, shell_id, options, self._clock, self._envelope)

    def run_script(self, script: str, *, step: str = "run") -> ScriptResult:
        """Run a PowerShell script and return its raw result (any exit code)."""
        log.debug("%s: %s", self.options.host, step)
        if fits_command_line(script, self.options.max_command_chars):
            with self._shell() as shell:
                return shell.run(script, step)
        return self._run_from_stdin(script, step)

    def run_payload(self, payload: payloads.RenderedPayload) -> Any:
        """Run a rendered payload and return the JSON document it printed."""
        result = self.run_script(payload.script, step=payload.op)
        if payload.op in SHELL_ENDING_OPS:
            self._drop_held()  # the host restarts: its shells go with it
        return _parsed(self.options.host, payload.op, result)

    def upload_file(self, data: bytes, remote: str) -> None:
        """Write `data` to the new file `remote` with one `file.receive` command, the file
        on its stdin; the host checks length and SHA-256 (and removes a file that does not
        match), and so does this side on the answer."""
        with self._shell() as shell:
            self._receive(shell, data, remote, f"upload {remote}")

    def _receive(self, shell: _Shell, data: bytes, remote: str, step: str) -> None:
        digest = hashlib.sha256(data).hexdigest().upper()
        receive = payloads.render(
            "file.receive", {"path": remote, "sha256": digest, "length": len(data)}
        )
        answer = _parsed(self.options.host, step, shell.run(receive.script, step, data))
        held = (answer.get("length"), answer.get("sha256")) if isinstance(answer, dict) else None
        if held != (len(data), digest):
            raise TransportError(
                self.options.host,
                step,
                FailureCause.OUTPUT_INVALID,
                f"the host holds {held}, expected {len(data)} bytes with SHA-256 {digest}",
            )

    def _run_from_stdin(self, script: str, step: str) -> ScriptResult:
        """A script over the command-line limit: one `file.exec` gets it gzip-compressed on
        its stdin, checks it, unpacks it into a temporary file, runs it and removes it."""
        options = self.options
        path = f"{options.remote_temp_dir.rstrip(chr(92))}\\relayguard-{uuid.uuid4().hex}.ps1"
        data = gzip.compress(script_bytes(script), mtime=0)
        digest = hashlib.sha256(data).hexdigest().upper()
        run = payloads.render("file.exec", {"path": path, "sha256": digest, "length": len(data)})
        if not fits_command_line(run.script, options.max_command_chars):
            raise TransportError(
                options.host,
                step,
                FailureCause.CONFIGURATION,
                f"remote_temp_dir {options.remote_temp_dir!r} is too long for file.exec's "
                f"{options.max_command_chars}-character command line",
            )
        notes: list[str] = []
        with self._shell() as shell:
            try:
                result = shell.run(run.script, f"{step} (from {path})", data)
            except TransportError:
                # no answer: the file may be there (file.exec removes it once it answers)
                try:
                    shell.run_payload(
                        payloads.render("file.remove", {"path": path}), f"{step}: remove {path}"
                    )
                except TransportError as exc:
                    notes.append(f"temporary file left on the host: {exc}")
                    log.warning("%s", notes[-1])
                raise
        return ScriptResult(
            stdout=result.stdout,
            stderr=result.stderr,
            exit_code=result.exit_code,
            chunked=True,
            warnings=tuple(notes),
        )
