"""A twin's WinRM listener: HTTPS (or HTTP) at ``/wsman``, authentication, encryption, faults.

Why a threaded ``socketserver`` and not asyncio: NTLM authenticates a *connection* (the
three-leg handshake and the sealing keys live as long as the TCP connection), which maps one
to one onto a handler object serving one connection in one thread; pyspnego and the payload
handlers are blocking code; a Receive legitimately blocks for up to the OperationTimeout. In
asyncio all of that would run in executor threads anyway, plus a hand-written HTTP/1.1
parser. Each connection gets a thread (TLS handshake included, so a slow client never blocks
the accept loop); each endpoint one accept thread. A fleet of hundreds of twins is hundreds
of mostly idle threads — fine for a lab.

Clean shutdown (``stop``): stop accepting, close the listening socket, wake every waiting
Receive and hung request, shut down every open connection, then join every thread with a
bound. Nothing is left listening and no thread outlives the endpoint.

HTTP behaviour follows Windows' WinRM service where a client can see it: ``Server:
Microsoft-HTTPAPI/2.0``; 401 with ``WWW-Authenticate: Negotiate`` (and ``Basic realm="WSMAN"``
when Basic is on, over HTTPS only) on missing or refused credentials; SOAP faults with HTTP
500; over plain HTTP only NTLM-sealed messages are accepted (``AllowUnencrypted=false``).

MaxEnvelopeSizekb ([MS-WSMV] 2.2.4.10: 500 by default, 150 on older Windows; it also limits
the size of the requests the service processes): a SOAP envelope (after unsealing) larger than
``EndpointConfig.max_envelope_kb`` KB is answered with HTTP 413 and an empty body, and nothing
of it is processed. A Windows client reports that status as
ERROR_WSMAN_HTTP_REQUEST_TOO_LARGE_STATUS (wsmerror.h 0x80338111, "... the request size
exceeded the configured MaxEnvelopeSize quota");
pywinrm and pypsrp users see "Code: 413" from Windows Server 2019/2022 at the default of 500
(ansible.windows issue #391). The body of that answer is not verified: the twin sends none.

``EndpointStats`` counts what reaches the endpoint — every HTTP request (authentication legs
included) and every SOAP action — so a test or a benchmark can count the round trips a
client makes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from relayguard.lab.ca import ServerCertificate
from relayguard.lab.wsman import encryption
from relayguard.lab.wsman.auth import (
    AuthenticationFailed,
    NtlmAcceptor,
    WinRMAccount,
    basic_account,
    find_account,
    ntlm_message_type,
    split_principal,
    tls_server_end_point,
    write_credential_store,
)
from relayguard.lab.wsman.dispatch import PayloadHandler
from relayguard.lab.wsman.faults import INTERNAL_ERROR, WsmanFault
from relayguard.lab.wsman.injection import FaultKind, FaultPlan
from relayguard.lab.wsman.scratch import ScratchStore
from relayguard.lab.wsman.service import Caller, EndpointStopping, WsmanService
from relayguard.lab.wsman.shells import DEFAULT_MAX_SHELLS_PER_USER, ShellTable
from relayguard.lab.wsman.soap import fault_envelope, parse_request

log = logging.getLogger(__name__)

CREDENTIAL_STORE_NAME = "winrm-ntlm-users"
SCRATCH_DIR_NAME = "winrm-scratch"
MAX_BODY_BYTES = 8 * 1024 * 1024  # beyond any envelope limit the lab sets: cut off, unread
DEFAULT_MAX_ENVELOPE_KB = 500  # [MS-WSMV] 2.2.4.10: "SHOULD be 500 but MAY be 150"
HANDSHAKE_TIMEOUT = 10.0
_CONNECTION_FAULTS = frozenset({FaultKind.DROP_REQUEST, FaultKind.DROP_RESPONSE, FaultKind.HANG})


class EndpointError(Exception):
    """The endpoint cannot start (address in use, not configured...)."""


@dataclass(frozen=True)
class EndpointConfig:
    """Everything a twin's WinRM endpoint needs."""

    name: str  # the twin's name (logs, thread names)
    address: str  # IP to listen on, e.g. "127.0.30.5"
    accounts: tuple[WinRMAccount, ...]
    twin_dir: Path  # holds the NTLM credential store and the scratch directory
    handler: PayloadHandler
    certificate: ServerCertificate | None  # None: plain HTTP (NTLM with sealing only)
    port: int | None = None  # None: 5986 with a certificate, 5985 without; 0: any free port
    hostname: str = ""  # the host name the twin presents; default: name upper-cased
    allow_basic: bool = True  # Basic over HTTPS (never over HTTP)
    max_shells_per_user: int = DEFAULT_MAX_SHELLS_PER_USER
    idle_timeout: float = 120.0  # close a keep-alive connection idle this long
    max_operation_timeout: float = 60.0  # cap on a Receive's wait
    max_envelope_kb: int = DEFAULT_MAX_ENVELOPE_KB  # MaxEnvelopeSizekb: larger requests get 413

    @property
    def host_name(self) -> str:
        return (self.hostname or self.name).upper()

    @property
    def listen_port(self) -> int:
        if self.port is not None:
            return self.port
        return 5986 if self.certificate is not None else 5985


class EndpointStats:
    """What reached one endpoint: HTTP requests and SOAP actions (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.http_requests = 0
        self.actions: dict[str, int] = {}

    def count_http(self) -> None:
        with self._lock:
            self.http_requests += 1

    def count_action(self, name: str) -> None:
        with self._lock:
            self.actions[name] = self.actions.get(name, 0) + 1

    def snapshot(self) -> dict[str, int]:
        """``{"http": N, "Create": N, "Command": N, ...}`` so far."""
        with self._lock:
            return {"http": self.http_requests, **self.actions}

    def reset(self) -> None:
        with self._lock:
            self.http_requests = 0
            self.actions = {}


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes


class _ConnectionHandler(BaseHTTPRequestHandler):
    """One client connection: its NTLM context lives as long as the connection."""

    protocol_version = "HTTP/1.1"
    server: _Listener
    # An answer's status line, headers and body leave in one write (flushed when the request
    # is done) rather than one write each, and TCP_NODELAY sends each write at once: without
    # them the body waited behind Nagle's algorithm for the client's delayed ACK of the
    # headers, some 40 ms an answer on Linux (four answers a command), as a server that
    # writes its headers and body apart does (RFC 896; RFC 1122 4.2.3.2).
    wbufsize = 64 * 1024

    def setup(self) -> None:
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()
        self.connection.settimeout(self.server.endpoint.config.idle_timeout)
        self.ntlm: NtlmAcceptor | None = None
        self.ntlm_principal: str | None = None

    def version_string(self) -> str:
        return "Microsoft-HTTPAPI/2.0"

    def log_message(self, format: str, *args: object) -> None:
        # Never the headers (Authorization); only the request line and status.
        log.debug("%s %s", self.server.endpoint.config.name, format % args)

    # ------------------------------------------------------------------ plumbing

    def _send(
        self, status: int, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _unauthorized(self, challenge: str | None = None) -> None:
        endpoint = self.server.endpoint
        headers = [("WWW-Authenticate", challenge or "Negotiate")]
        if challenge is None and endpoint.tls and endpoint.config.allow_basic:
            headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        self._send(401, headers=headers)

    def _drop(self) -> None:
        """Close the connection without a word (a host that went away)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.connection, socket.SHUT_RDWR)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._send(411)
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(413 if length > 0 else 400)
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    # ------------------------------------------------------------------ auth

    def _authenticate(self) -> str | None:
        """The caller's principal, or None after answering 401."""
        endpoint = self.server.endpoint
        authorization = self.headers.get("Authorization")
        if not authorization:
            if self.ntlm is not None and self.ntlm.complete and self.ntlm_principal:
                return self.ntlm_principal
            self._unauthorized()
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() in ("negotiate", "ntlm"):
            return self._ntlm_step(scheme, token.strip())
        if scheme.lower() == "basic" and endpoint.tls and endpoint.config.allow_basic:
            account = basic_account(authorization, endpoint.config.accounts, endpoint.host_name)
            if account is not None:
                return account.principal
            log.info(
                "%s: Basic authentication refused from %s",
                endpoint.config.name,
                self.client_address[0],
            )
        self._unauthorized()
        return None

    def _ntlm_step(self, scheme: str, token_text: str) -> str | None:
        endpoint = self.server.endpoint
        try:
            token = base64.b64decode(token_text, validate=True)
        except binascii.Error:
            token = b""
        kind = ntlm_message_type(token)
        try:
            if kind == 1:
                self.ntlm, self.ntlm_principal = endpoint.new_ntlm_acceptor(), None
                challenge = self.ntlm.step(token) or b""
                self._unauthorized(f"{scheme} {base64.b64encode(challenge).decode('ascii')}")
                return None
            if kind == 3 and self.ntlm is not None and not self.ntlm.complete:
                self.ntlm.step(token)
                self.ntlm_principal = endpoint.resolve_principal(self.ntlm.client_principal)
                return self.ntlm_principal
        except AuthenticationFailed as exc:
            log.info("%s: %s from %s", endpoint.config.name, exc, self.client_address[0])
        self.ntlm, self.ntlm_principal = None, None
        self._unauthorized()
        return None

    # ------------------------------------------------------------------ requests

    def do_POST(self) -> None:
        endpoint = self.server.endpoint
        endpoint.stats.count_http()
        body = self._read_body()
        if body is None:
            return
        if urlsplit(self.path).path.rstrip("/").lower() != "/wsman":
            self._send(404)
            return
        principal = self._authenticate()
        if principal is None:
            return
        sealed = encryption.is_encrypted(self.headers.get("Content-Type", ""))
        if sealed:
            if self.ntlm is None or not self.ntlm.complete:
                self._send(400)
                return
            try:
                message = encryption.decrypt(body, self.ntlm.unwrap)
            except Exception:  # malformed framing or a signature that does not verify
                log.info("%s: undecryptable message", endpoint.config.name)
                self.close_connection = True
                self._send(400)
                return
        elif body and not endpoint.tls:
            # AllowUnencrypted=false: a plain SOAP body over HTTP is refused.
            self._unauthorized()
            return
        else:
            message = body
        if not message:
            # pywinrm opens its encrypted session with an empty authenticated POST.
            self._send(200)
            return
        if len(message) > endpoint.config.max_envelope_kb * 1024:
            log.info(
                "%s: a %d-byte envelope is over MaxEnvelopeSizekb %d: 413",
                endpoint.config.name,
                len(message),
                endpoint.config.max_envelope_kb,
            )
            self._send(413)
            return
        reply = endpoint.process(message, Caller(principal, self.client_address[0]))
        if reply is None:
            self._drop()
            return
        if sealed:
            assert self.ntlm is not None
            payload = encryption.encrypt(reply.body, self.ntlm.wrap)
            content_type = encryption.CONTENT_TYPE
        else:
            payload, content_type = reply.body, "application/soap+xml;charset=UTF-8"
        self._send(reply.status, payload, [("Content-Type", content_type)])

    def _method_not_allowed(self) -> None:
        self._send(405, headers=[("Allow", "POST")])

    do_GET = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _method_not_allowed


class _Listener(socketserver.TCPServer):
    """Accepts connections; one tracked thread per connection, TLS handshake included."""

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, endpoint: WinRMEndpoint, tls: ssl.SSLContext | None) -> None:
        self.endpoint = endpoint
        self.tls = tls
        self.address_family = socket.AF_INET6 if ":" in endpoint.config.address else socket.AF_INET
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._count = 0
        super().__init__((endpoint.config.address, endpoint.config.listen_port), _ConnectionHandler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        assert isinstance(request, socket.socket)
        with self._lock:
            self._count += 1
            thread = threading.Thread(
                target=self._serve,
                args=(request, client_address),
                name=f"wsman-{self.endpoint.config.name}-conn{self._count}",
                daemon=True,
            )
            self._threads.add(thread)
            self._open.add(request)
        thread.start()

    def _serve(self, raw: socket.socket, client_address: object) -> None:
        connection = raw
        try:
            if self.tls is not None:
                raw.settimeout(HANDSHAKE_TIMEOUT)
                connection = self.tls.wrap_socket(raw, server_side=True)
                with self._lock:
                    self._open.discard(raw)
                    self._open.add(connection)
            self.finish_request(connection, client_address)
        except (OSError, ssl.SSLError) as exc:
            log.debug("%s: connection ended: %s", self.endpoint.config.name, exc)
        except Exception:
            log.exception("%s: connection handler failed", self.endpoint.config.name)
        finally:
            with self._lock:
                self._open.discard(raw)
                self._open.discard(connection)
                self._threads.discard(threading.current_thread())
            self.shutdown_request(connection)

    def abort_connections(self) -> None:
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            # The plain socket call: works under a thread blocked in an SSL read.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def connection_threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._threads)


class WinRMEndpoint:
    """A twin's WinRM endpoint. ``start()`` returns once it listens; ``stop()`` leaves nothing."""

    def __init__(self, config: EndpointConfig) -> None:
        if not config.accounts:
            raise EndpointError(f"{config.name}: a WinRM endpoint needs at least one account")
        self.config = config
        self.host_name = config.host_name
        self.tls = config.certificate is not None
        self.credential_store = config.twin_dir / CREDENTIAL_STORE_NAME
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self.faults = FaultPlan(self._changed)
        self.shells = ShellTable(self._changed, max_shells_per_user=config.max_shells_per_user)
        self.scratch = ScratchStore(config.twin_dir / SCRATCH_DIR_NAME)
        self.stats = EndpointStats()
        self._listener: _Listener | None = None
        self._accept_thread: threading.Thread | None = None
        self._bindings = (
            tls_server_end_point(config.certificate.cert_path.read_bytes())
            if config.certificate is not None
            else None
        )
        self.service: WsmanService | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if self._listener is None:
            return self.config.listen_port
        return int(self._listener.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.config.address}]" if ":" in self.config.address else self.config.address
        return f"{scheme}://{host}:{self.port}/wsman"

    @property
    def running(self) -> bool:
        return self._accept_thread is not None and self._accept_thread.is_alive()

    def start(self) -> None:
        if self._listener is not None:
            raise EndpointError(f"{self.config.name}: WinRM endpoint already started")
        self.config.twin_dir.mkdir(parents=True, exist_ok=True)
        write_credential_store(self.credential_store, self.config.accounts, self.host_name)
        context = self._tls_context() if self.config.certificate is not None else None
        self._stopping.clear()
        try:
            listener = _Listener(self, context)
        except OSError as exc:
            self.credential_store.unlink(missing_ok=True)
            raise EndpointError(
                f"{self.config.name}: cannot listen on "
                f"{self.config.address}:{self.config.listen_port}: "
                f"{exc.strerror or exc}"
            ) from None
        self._listener = listener
        self.service = WsmanService(
            twin=self.config.name,
            hostname=self.host_name,
            endpoint_url=self.url,
            handler=self.config.handler,
            scratch=self.scratch,
            shells=self.shells,
            faults=self.faults,
            stopping=self._stopping,
            max_operation_timeout=self.config.max_operation_timeout,
        )
        self._accept_thread = threading.Thread(
            target=listener.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"wsman-{self.config.name}",
            daemon=True,
        )
        self._accept_thread.start()
        log.info("%s: WinRM endpoint listening at %s", self.config.name, self.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, end every connection and thread (each join bounded by `timeout`)."""
        listener, accept_thread = self._listener, self._accept_thread
        if listener is None:
            return
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        listener.shutdown()
        listener.server_close()
        listener.abort_connections()
        for thread in [*listener.connection_threads(), accept_thread]:
            if thread is not None:
                thread.join(timeout)
        leftover = [t.name for t in listener.connection_threads() if t.is_alive()]
        if leftover:
            log.warning("%s: threads still running after stop: %s", self.config.name, leftover)
        self.shells.clear()
        self.credential_store.unlink(missing_ok=True)
        self._listener = self._accept_thread = self.service = None
        log.info("%s: WinRM endpoint stopped", self.config.name)

    def __enter__(self) -> WinRMEndpoint:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _tls_context(self) -> ssl.SSLContext:
        certificate = self.config.certificate
        assert certificate is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(certificate.cert_path, certificate.key_path)
        except (OSError, ssl.SSLError) as exc:
            raise EndpointError(
                f"{self.config.name}: cannot load the TLS certificate: {exc}"
            ) from None
        return context

    # ------------------------------------------------------------------ per request

    def new_ntlm_acceptor(self) -> NtlmAcceptor:
        return NtlmAcceptor(self.credential_store, self._bindings)

    def resolve_principal(self, client_principal: str) -> str:
        """The account principal behind an NTLM client name (``.\\user`` → ``user``)."""
        domain, user = split_principal(client_principal)
        account = find_account(self.config.accounts, domain, user, self.host_name)
        return account.principal if account is not None else client_principal

    def process(self, message: bytes, caller: Caller) -> _Reply | None:
        """Answer one SOAP message; None means: close the connection without an answer."""
        service = self.service
        if service is None or self._stopping.is_set():
            return None
        relates_to = ""
        try:
            request = parse_request(message)
            relates_to = request.message_id
            self.stats.count_action(request.action_name)
            op = service.command_op(request) if self.faults.active() else None
            injected = self.faults.take(_CONNECTION_FAULTS, request.action_name, op)
            if injected is not None and injected.kind is FaultKind.DROP_REQUEST:
                log.info("%s: injected fault drops a %s", self.config.name, request.action_name)
                return None
            if injected is not None and injected.kind is FaultKind.HANG:
                log.info("%s: injected fault hangs a %s", self.config.name, request.action_name)
                self.faults.wait_while_hung(self._stopping)
                return None
            body = service.handle(request, caller)
            if injected is not None:  # DROP_RESPONSE: it ran; the answer is lost
                log.info(
                    "%s: injected fault drops the %s reply", self.config.name, request.action_name
                )
                return None
            return _Reply(200, body)
        except EndpointStopping:
            return None
        except WsmanFault as fault:
            return _Reply(500, fault_envelope(fault.spec, relates_to, self.host_name, fault.detail))
        except Exception:
            log.exception("%s: WS-Management request failed", self.config.name)
            return _Reply(
                500,
                fault_envelope(INTERNAL_ERROR, relates_to, self.host_name, INTERNAL_ERROR.reason),
            )


def stop_endpoints(endpoints: Iterable[WinRMEndpoint], timeout: float = 10.0) -> None:
    """Stop many endpoints at once (each stop waits for its accept loop to notice)."""
    threads = [
        threading.Thread(target=e.stop, args=(timeout,), name=f"wsman-stop-{e.config.name}")
        for e in endpoints
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout * 2)
