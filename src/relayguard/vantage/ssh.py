"""The SSH connection to a jump host (paramiko): host keys, authentication, channels.

Host keys are checked against known_hosts (the user's and the system's by default): an
unknown key is refused unless `accept_unknown_host_key` is set (then it is trusted for this
connection only, and its fingerprint is kept in `accepted_host_key`); a key that differs
from the recorded one is always refused. Authentication uses a key file and/or ssh-agent,
never a password. Channels are `direct-tcpip`, so the destination sees the jump host's
address (RFC 4254 section 7.2).

    with SshJump(parse_vantage("ssh://probe@jump.example:2222")) as jump:
        with jump.forward("198.51.100.10", 25) as fwd:
            ...  # connect to fwd.host:fwd.port
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import paramiko

from relayguard.vantage.errors import (
    ChannelOpenFailed,
    HostKeyMismatch,
    HostKeyUnknown,
    SshAuthFailed,
    SshConnectFailed,
)
from relayguard.vantage.forward import LocalForward
from relayguard.vantage.spec import SshVantage

# paramiko logs channel failures at ERROR; without a handler Python prints them on stderr.
# They are reported as exceptions instead; users may still attach a handler to this logger.
PARAMIKO_LOG = "relayguard.vantage.paramiko"
logging.getLogger(PARAMIKO_LOG).addHandler(logging.NullHandler())
logging.getLogger(PARAMIKO_LOG).propagate = False

# RFC 4254 section 5.1 reason codes of SSH_MSG_CHANNEL_OPEN_FAILURE
OPEN_FAILURES = {
    1: "SSH_OPEN_ADMINISTRATIVELY_PROHIBITED: the jump host does not permit forwarding there "
    "(AllowTcpForwarding / PermitOpen)",
    2: "SSH_OPEN_CONNECT_FAILED: the jump host could not connect (refused, unreachable or "
    "timed out)",
    3: "SSH_OPEN_UNKNOWN_CHANNEL_TYPE: the jump host does not support direct-tcpip",
    4: "SSH_OPEN_RESOURCE_SHORTAGE: the jump host is out of channels",
}

USER_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")
KEEPALIVE_SECONDS = 30


def key_fingerprint(key: paramiko.PKey) -> str:
    """The key's fingerprint as OpenSSH prints it (ssh-keygen -l): SHA256:base64, unpadded."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class SshSettings:
    """How to reach and trust the jump host.

    `known_hosts` empty means ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts (those that
    exist). `key_file` None means ssh-agent and the default ~/.ssh/id_* keys.
    """

    known_hosts: tuple[Path, ...] = ()
    accept_unknown_host_key: bool = False
    key_file: Path | None = None
    use_agent: bool = True
    look_for_keys: bool = True
    connect_timeout: float = 15.0
    channel_timeout: float = 15.0

    def known_hosts_files(self) -> list[Path]:
        if self.known_hosts:
            return [path.expanduser() for path in self.known_hosts]
        return [path.expanduser() for path in (USER_KNOWN_HOSTS, SYSTEM_KNOWN_HOSTS)]


class _HostKeyGate(paramiko.MissingHostKeyPolicy):
    """Refuses unknown host keys, or trusts one for this connection when told to."""

    def __init__(self, vantage: SshVantage, accept: bool, files: list[str]) -> None:
        self.vantage = vantage
        self.accept = accept
        self.files = files
        self.accepted: str | None = None

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        fingerprint = f"{key.get_name()} {key_fingerprint(key)}"
        if not self.accept:
            where = ", ".join(self.files) if self.files else "no known_hosts file exists"
            raise HostKeyUnknown(
                f"host key of {self.vantage} is unknown ({hostname} is not in {where}); it "
                f"offered {fingerprint}. Check that fingerprint out of band, then add the key "
                f"to known_hosts (ssh-keyscan -p {self.vantage.port} {self.vantage.host}) or "
                "accept it explicitly for this run"
            )
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.accepted = fingerprint


class SshJump:
    """One SSH connection to a jump host, opening direct-tcpip channels from it."""

    def __init__(self, vantage: SshVantage, settings: SshSettings | None = None) -> None:
        self.vantage = vantage
        self.settings = settings or SshSettings()
        self._client: paramiko.SSHClient | None = None
        self._forwarders: dict[tuple[str, int], LocalForward] = {}
        self._lock = threading.Lock()
        self.accepted_host_key: str | None = None
        self.host_key: str | None = None

    # -- connection --------------------------------------------------------------------

    def connect(self) -> SshJump:
        if self._client is not None:
            return self
        settings = self.settings
        client = paramiko.SSHClient()
        files = [path for path in settings.known_hosts_files() if path.is_file()]
        try:
            for path in files:
                client.load_host_keys(str(path))
        except (OSError, paramiko.SSHException) as exc:
            client.close()
            raise SshConnectFailed(f"cannot read known_hosts for {self.vantage}: {exc}") from None
        gate = _HostKeyGate(
            self.vantage, settings.accept_unknown_host_key, [str(path) for path in files]
        )
        client.set_missing_host_key_policy(gate)
        client.set_log_channel(PARAMIKO_LOG)
        try:
            client.connect(
                self.vantage.host,
                port=self.vantage.port,
                username=self.vantage.user,
                key_filename=str(settings.key_file) if settings.key_file else None,
                allow_agent=settings.use_agent,
                look_for_keys=settings.look_for_keys and settings.key_file is None,
                timeout=settings.connect_timeout,
                banner_timeout=settings.connect_timeout,
                auth_timeout=settings.connect_timeout,
                channel_timeout=settings.channel_timeout,
            )
        except BaseException as exc:
            client.close()
            raise self._connect_error(exc) from None
        transport = client.get_transport()
        if transport is None:
            client.close()
            raise SshConnectFailed(f"SSH connection to {self.vantage} closed during login")
        transport.set_keepalive(KEEPALIVE_SECONDS)
        server_key = transport.get_remote_server_key()
        self.host_key = f"{server_key.get_name()} {key_fingerprint(server_key)}"
        self.accepted_host_key = gate.accepted
        self._client = client
        return self

    def _connect_error(self, exc: BaseException) -> BaseException:
        vantage = self.vantage
        if isinstance(exc, (HostKeyUnknown, KeyboardInterrupt, SystemExit)):
            return exc
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyMismatch(
                f"host key of {vantage} does NOT match known_hosts: it offered "
                f"{exc.key.get_name()} {key_fingerprint(exc.key)}, known_hosts records "
                f"{exc.expected_key.get_name()} {key_fingerprint(exc.expected_key)} for "
                f"{vantage.known_hosts_name}. Someone may be intercepting the connection; "
                f"refusing. If the key changed legitimately, remove the old entry "
                f"(ssh-keygen -R '{vantage.known_hosts_name}') and add the new one"
            )
        if isinstance(exc, paramiko.PasswordRequiredException):
            return SshAuthFailed(
                f"the key for {vantage} is encrypted: load it into ssh-agent (ssh-add) first"
            )
        if isinstance(exc, paramiko.AuthenticationException):
            tried = []
            if self.settings.key_file:
                tried.append(f"key file {self.settings.key_file}")
            if self.settings.use_agent:
                tried.append("ssh-agent")
            if self.settings.look_for_keys and not self.settings.key_file:
                tried.append("~/.ssh/id_* keys")
            return SshAuthFailed(
                f"authentication as {vantage.user} on {vantage} failed "
                f"(tried {', '.join(tried) or 'no key'}): {exc}"
            )
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return SshConnectFailed(f"cannot reach jump host {vantage}: timed out")
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc) or type(exc).__name__
            return SshConnectFailed(f"cannot reach jump host {vantage}: {reason}")
        if isinstance(exc, paramiko.SSHException):
            return SshConnectFailed(f"SSH handshake with {vantage} failed: {exc}")
        return SshConnectFailed(f"SSH connection to {vantage} failed: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        with self._lock:
            forwarders = list(self._forwarders.values())
            self._forwarders.clear()
        for forwarder in forwarders:
            forwarder.close()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    def __enter__(self) -> SshJump:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- channels ----------------------------------------------------------------------

    def open_channel(
        self, dest_host: str, dest_port: int, origin: tuple[str, int] = ("127.0.0.1", 0)
    ) -> paramiko.Channel:
        """A direct-tcpip channel from the jump host to dest; ChannelOpenFailed says why not."""
        destination = (
            f"[{dest_host}]:{dest_port}" if ":" in dest_host else f"{dest_host}:{dest_port}"
        )
        transport = self._client.get_transport() if self._client is not None else None
        if transport is None or not transport.is_active():
            raise ChannelOpenFailed(
                f"SSH connection to {self.vantage} is closed; cannot reach {destination}"
            )
        try:
            return transport.open_channel(
                "direct-tcpip",
                dest_addr=(dest_host, dest_port),
                src_addr=origin,
                timeout=self.settings.channel_timeout,
            )
        except paramiko.ChannelException as exc:
            reason = OPEN_FAILURES.get(exc.code, f"{exc.text} (SSH open failure code {exc.code})")
            raise ChannelOpenFailed(
                f"jump host {self.vantage} could not open a channel to {destination}: {reason}"
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ChannelOpenFailed(
                f"channel through {self.vantage} to {destination} failed: "
                f"{exc or type(exc).__name__}"
            ) from None

    def forward(self, dest_host: str, dest_port: int) -> LocalForward:
        """A new (not yet started) local forwarder to dest; use it as a context manager."""
        return LocalForward(self.open_channel, dest_host, dest_port, label=str(self.vantage))

    def forwarder(self, dest_host: str, dest_port: int) -> LocalForward:
        """The started forwarder to dest, shared by every caller; closed with the jump."""
        with self._lock:
            if self._client is None:
                raise ChannelOpenFailed(f"SSH connection to {self.vantage} is not open")
            key = (dest_host, dest_port)
            found = self._forwarders.get(key)
            if found is None:
                found = self.forward(dest_host, dest_port).start()
                self._forwarders[key] = found
            return found
